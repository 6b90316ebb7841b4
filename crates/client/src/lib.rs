//! A typed client of a Beaufort member's HTTP API (the routes `GET /openapi.json` describes):
//! read, write, delete and list keys, fetch receipts to verify offline, and follow committed
//! changes with resumable server-sent events. The `beaufort` command line uses it.
//!
//! It speaks HTTP/1.1 through hyper-util's client (the hyper stack the node's server already
//! brings), reusing connections; bodies are read up to a bound, and a watch reads the event
//! stream frame by frame, whatever chunking the server chose. An `https://` address goes over TLS
//! (rustls through hyper-rustls), trusting the public web roots and any certificate added with
//! [`Trust`] (a member's self-signed one); host names are resolved and checked against the
//! certificate like IP addresses.
//!
//! ```no_run
//! # async fn demo() -> Result<(), beaufort_client::ClientError> {
//! use beaufort_client::{Client, Write};
//!
//! let client = Client::new("127.0.0.1:8000").with_token("operator-token");
//! if let Write::Committed(value) = client.put("points/alice", b"10").await? {
//!     println!("committed in view {}", value.view);
//! }
//! let everything = client.list_all("points/").await?;
//! println!("{} keys", everything.len());
//! # Ok(()) }
//! ```

use beaufort_node::api::{Info, OpenView, Receipt, ValueView};
use beaufort_node::digest::StoreDigest;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use serde::de::DeserializeOwned;
use serde::Deserialize;

/// Largest response body read.
const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// Values in one page of a listing (the server's maximum).
pub const PAGE: usize = 1000;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The member could not be reached or the connection broke.
    #[error("talking to {api}: {error}")]
    Io {
        /// The API address.
        api: String,
        /// What failed, with its causes.
        error: String,
    },
    /// The member answered with an error status; `message` is its `error` text.
    #[error("HTTP {status}: {message}")]
    Http {
        /// The status.
        status: u16,
        /// The member's explanation.
        message: String,
    },
    /// The answer is not HTTP or not the JSON the API documents.
    #[error("unexpected answer: {0}")]
    Protocol(String),
    /// A certificate to trust could not be read.
    #[error("{path}: {error}")]
    Trust {
        /// The certificate file.
        path: String,
        /// Why it is unusable.
        error: String,
    },
}

/// The certificates a client trusts for `https://` members: the public web roots (webpki-roots)
/// and the certificates added here, such as a member's self-signed one.
#[derive(Clone, Debug, Default)]
pub struct Trust {
    extra: Vec<CertificateDer<'static>>,
}

impl Trust {
    /// The public web roots only.
    pub fn public_roots() -> Trust {
        Trust::default()
    }

    /// Also trusts every certificate of a PEM file.
    pub fn with_pem_file(mut self, path: &std::path::Path) -> Result<Trust, ClientError> {
        let error = |error: String| ClientError::Trust {
            path: path.display().to_string(),
            error,
        };
        let pem = std::fs::read(path).map_err(|e| error(e.to_string()))?;
        let certificates = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| error(format!("not a PEM certificate file: {e}")))?;
        if certificates.is_empty() {
            return Err(error("holds no PEM certificate".into()));
        }
        self.extra.extend(certificates);
        Ok(self)
    }

    /// Also trusts a certificate (DER).
    pub fn with_certificate(mut self, certificate: CertificateDer<'static>) -> Trust {
        self.extra.push(certificate);
        self
    }

    fn client_config(&self) -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        // A certificate that is no usable trust anchor is left out; the connection then fails
        // with the verifier's reason.
        roots.add_parsable_certificates(self.extra.iter().cloned());
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        // No ALPN here: the connector offers `http/1.1` itself.
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("the ring provider supports TLS 1.2 and 1.3")
            .with_root_certificates(roots)
            .with_no_client_auth()
    }
}

/// How a write ended.
#[derive(Debug)]
pub enum Write {
    /// Committed: the value and its certificate.
    Committed(ValueView),
    /// Not committed within the member's wait (HTTP 202); it may still commit.
    Pending,
}

/// One event of a watch.
#[derive(Debug)]
pub enum WatchEvent {
    /// A committed change; `id` resumes a later watch just after it.
    Change {
        /// The event id (`Last-Event-ID`).
        id: Option<String>,
        /// The value as committed.
        value: ValueView,
    },
    /// Changes were missed here (`missed` of any key, when known): re-read what you follow.
    Lagged {
        /// How many changes were missed, when known.
        missed: Option<u64>,
    },
}

/// A member's API.
#[derive(Clone)]
pub struct Client {
    /// The address as given, for messages.
    api: String,
    /// `http://host:port` or `https://host:port`, without a trailing slash.
    base: String,
    token: Option<String>,
    http: hyper_util::client::legacy::Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("api", &self.api)
            .field("token", &self.token.as_ref().map(|_| "…"))
            .finish()
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
}

#[derive(Deserialize)]
struct Lagged {
    missed: Option<u64>,
}

impl Client {
    /// A client of the API at `api`: `host:port` or `http://host:port` (plain HTTP), or
    /// `https://host:port` (TLS, trusting the public web roots). A host name is resolved when
    /// connecting, trying each of its addresses.
    pub fn new(api: impl Into<String>) -> Client {
        Client::with_trust(api, &Trust::public_roots())
    }

    /// As [`Client::new`], trusting `trust` for `https://` addresses.
    pub fn with_trust(api: impl Into<String>, trust: &Trust) -> Client {
        let api = api.into();
        let trimmed = api.trim_end_matches('/');
        let base = if trimmed.starts_with("http://") || trimmed.starts_with("https://") {
            trimmed.to_owned()
        } else {
            format!("http://{trimmed}")
        };
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(trust.client_config())
            .https_or_http()
            .enable_http1()
            .build();
        Client {
            api,
            base,
            token: None,
            http: hyper_util::client::legacy::Client::builder(TokioExecutor::new())
                .build(connector),
        }
    }

    /// The operator token, for writes.
    pub fn with_token(mut self, token: impl Into<String>) -> Client {
        self.token = Some(token.into());
        self
    }

    /// The committed value of `key` with its certificate; `None` if it has none.
    pub async fn get(&self, key: &str) -> Result<Option<ValueView>, ClientError> {
        self.found(self.call("GET", &kv_path(key), b"").await?)
    }

    /// A receipt of `key` (its value, certificate and network id) to verify offline.
    pub async fn receipt(&self, key: &str) -> Result<Option<Receipt>, ClientError> {
        let path = format!("/v1/receipts/{}", encode_component(key, true));
        self.found(self.call("GET", &path, b"").await?)
    }

    /// Writes `value` under `key` (operator) and waits for the commit.
    pub async fn put(&self, key: &str, value: &[u8]) -> Result<Write, ClientError> {
        self.write(self.call("PUT", &kv_path(key), value).await?)
    }

    /// Deletes `key` (operator) and waits for the commit.
    pub async fn delete(&self, key: &str) -> Result<Write, ClientError> {
        self.write(self.call("DELETE", &kv_path(key), b"").await?)
    }

    /// One page of the committed keys under `prefix` in key order: at most `limit` (at most
    /// [`PAGE`]), after the key `after` when given.
    pub async fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ValueView>, ClientError> {
        let mut path = format!(
            "/v1/kv?prefix={}&limit={}",
            encode_component(prefix, false),
            limit.min(PAGE)
        );
        if let Some(after) = after {
            path.push_str(&format!("&after={}", encode_component(after, false)));
        }
        parse(&success(self.call("GET", &path, b"").await?)?)
    }

    /// Every committed key under `prefix`, page by page.
    pub async fn list_all(&self, prefix: &str) -> Result<Vec<ValueView>, ClientError> {
        let mut all: Vec<ValueView> = Vec::new();
        loop {
            let after = all.last().map(|v| v.key.clone());
            let page = self.list(prefix, after.as_deref(), PAGE).await?;
            let done = page.len() < PAGE;
            all.extend(page);
            if done {
                return Ok(all);
            }
        }
    }

    /// Follows committed changes under `prefix`, from now on or (with `resume`, the id of the
    /// last change seen) from just after that change.
    pub async fn watch(&self, prefix: &str, resume: Option<&str>) -> Result<Watch, ClientError> {
        let path = format!("/v1/watch?prefix={}", encode_component(prefix, false));
        let response = self.send(Method::GET, &path, resume, Bytes::new()).await?;
        let status = response.status().as_u16();
        if status != 200 {
            let body = self.read_body(response.into_body()).await?;
            return Err(success((status, body)).err().unwrap_or(ClientError::Http {
                status,
                message: "the watch was refused".into(),
            }));
        }
        Ok(Watch {
            api: self.api.clone(),
            body: response.into_body(),
            buffer: Vec::new(),
        })
    }

    /// Downloads a backup of the member's store (operator token) into `out`, chunk by chunk;
    /// returns the bytes written. Check the file with `beaufort_store::backup::check` before
    /// relying on it: a connection cut half-way leaves an incomplete file, which the check
    /// refuses.
    pub async fn backup(&self, out: &mut impl std::io::Write) -> Result<u64, ClientError> {
        let response = self
            .send(Method::GET, "/v1/backup", None, Bytes::new())
            .await?;
        let status = response.status().as_u16();
        if status != 200 {
            let body = self.read_body(response.into_body()).await?;
            return Err(success((status, body)).err().unwrap_or(ClientError::Http {
                status,
                message: "the backup was refused".into(),
            }));
        }
        let mut body = response.into_body();
        let mut written = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| self.io(e))?;
            if let Ok(data) = frame.into_data() {
                out.write_all(&data).map_err(|e| ClientError::Io {
                    api: self.api.clone(),
                    error: format!("writing the backup: {e}"),
                })?;
                written += data.len() as u64;
            }
        }
        Ok(written)
    }

    /// Whether the member is ready for traffic (`GET /readyz`: 200 ready, 503 not).
    pub async fn ready(&self) -> Result<bool, ClientError> {
        match self.call("GET", "/readyz", &[]).await? {
            (200, _) => Ok(true),
            (503, _) => Ok(false),
            answer => success(answer).map(|_| false),
        }
    }

    /// Which member this is: version, index, names, network id (`GET /v1/info`).
    pub async fn info(&self) -> Result<Info, ClientError> {
        parse(&success(self.call("GET", "/v1/info", &[]).await?)?)
    }

    /// The member's holdings summarised for comparison with the others (`GET /v1/digest`).
    pub async fn digest(&self) -> Result<StoreDigest, ClientError> {
        parse(&success(self.call("GET", "/v1/digest", &[]).await?)?)
    }

    /// Every key the member holds with the view it has open for it (`GET /v1/views`, all
    /// pages), in key order.
    pub async fn open_views(&self) -> Result<Vec<OpenView>, ClientError> {
        let mut all: Vec<OpenView> = Vec::new();
        loop {
            let mut path = format!("/v1/views?limit={PAGE}");
            if let Some(last) = all.last() {
                path.push_str(&format!("&after={}", last.key_hex));
            }
            let page: Vec<OpenView> = parse(&success(self.call("GET", &path, &[]).await?)?)?;
            let complete = page.len() < PAGE;
            all.extend(page);
            if complete {
                return Ok(all);
            }
        }
    }

    fn io(&self, error: impl std::error::Error) -> ClientError {
        let mut error = describe(&error);
        if error.contains("invalid peer certificate") {
            error.push_str(
                " (the member's TLS certificate is not one this client trusts: trust its \
                 certificate file, e.g. with --tls-trust or [node] tls_trust)",
            );
        } else if error.contains("invalid HTTP version") && self.base.starts_with("http://") {
            error.push_str(" (does the member serve its API over TLS? then use https://)");
        }
        ClientError::Io {
            api: self.api.clone(),
            error,
        }
    }

    fn found<T: DeserializeOwned>(
        &self,
        (status, body): (u16, Vec<u8>),
    ) -> Result<Option<T>, ClientError> {
        if status == 404 {
            return Ok(None);
        }
        parse(&success((status, body))?).map(Some)
    }

    fn write(&self, (status, body): (u16, Vec<u8>)) -> Result<Write, ClientError> {
        if status == 202 {
            return Ok(Write::Pending);
        }
        parse(&success((status, body))?).map(Write::Committed)
    }

    /// Sends one request (with the operator token when set, and `Last-Event-ID` when resuming).
    async fn send(
        &self,
        method: Method,
        path: &str,
        resume: Option<&str>,
        body: Bytes,
    ) -> Result<hyper::Response<Incoming>, ClientError> {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        if let Some(id) = resume {
            request = request.header("last-event-id", id);
        }
        let request = request
            .body(Full::new(body))
            .map_err(|e| ClientError::Protocol(format!("a request we cannot send: {e}")))?;
        self.http.request(request).await.map_err(|e| self.io(e))
    }

    /// A whole response body, up to [`MAX_RESPONSE_BYTES`].
    async fn read_body(&self, body: Incoming) -> Result<Vec<u8>, ClientError> {
        let collected = Limited::new(body, MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| ClientError::Io {
                api: self.api.clone(),
                error: e.to_string(),
            })?;
        Ok(collected.to_bytes().to_vec())
    }

    /// One request; the status and the whole body.
    async fn call(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Result<(u16, Vec<u8>), ClientError> {
        let method = Method::from_bytes(method.as_bytes())
            .map_err(|e| ClientError::Protocol(format!("method {method}: {e}")))?;
        let response = self
            .send(method, path, None, Bytes::copy_from_slice(body))
            .await?;
        let status = response.status().as_u16();
        let body = self.read_body(response.into_body()).await?;
        Ok((status, body))
    }
}

/// An open watch.
pub struct Watch {
    api: String,
    body: Incoming,
    /// Bytes received and not yet split into lines.
    buffer: Vec<u8>,
}

/// Longest event-stream line accepted (a value with its certificate is far below it).
const MAX_EVENT_LINE: usize = 1024 * 1024;

impl Watch {
    /// The next line of the stream, without its end; `None` when the stream ends.
    async fn line(&mut self) -> Result<Option<String>, ClientError> {
        loop {
            if let Some(end) = self.buffer.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                let text = String::from_utf8(line)
                    .map_err(|_| ClientError::Protocol("an event line is not UTF-8".into()))?;
                return Ok(Some(text.trim_end_matches(['\r', '\n']).to_owned()));
            }
            if self.buffer.len() > MAX_EVENT_LINE {
                return Err(ClientError::Protocol("an event line is too long".into()));
            }
            match self.body.frame().await {
                None => return Ok(None),
                Some(Err(error)) => {
                    return Err(ClientError::Io {
                        api: self.api.clone(),
                        error: describe(&error),
                    })
                }
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buffer.extend_from_slice(&data);
                    }
                }
            }
        }
    }

    /// The next event; `None` when the member ends the stream (it is shutting down).
    pub async fn next(&mut self) -> Result<Option<WatchEvent>, ClientError> {
        let (mut id, mut event, mut data) = (None, String::from("message"), None::<String>);
        loop {
            let Some(line) = self.line().await? else {
                return Ok(None);
            };
            let line = line.as_str();
            if line.is_empty() {
                let Some(data) = data.take() else {
                    continue; // a keep-alive comment or an event without data
                };
                return match event.as_str() {
                    "change" => Ok(Some(WatchEvent::Change {
                        id: id.take(),
                        value: parse(data.as_bytes())?,
                    })),
                    "lagged" => Ok(Some(WatchEvent::Lagged {
                        missed: parse::<Lagged>(data.as_bytes())?.missed,
                    })),
                    other => Err(ClientError::Protocol(format!("unknown event {other:?}"))),
                };
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "id" => id = Some(value.to_owned()),
                "event" => event = value.to_owned(),
                "data" => data = Some(value.to_owned()),
                _ => {}
            }
        }
    }
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ClientError> {
    serde_json::from_slice(body).map_err(|e| ClientError::Protocol(format!("{e}")))
}

/// The body of a 2xx answer; the member's error otherwise.
fn success((status, body): (u16, Vec<u8>)) -> Result<Vec<u8>, ClientError> {
    if (200..300).contains(&status) {
        return Ok(body);
    }
    let message = serde_json::from_slice::<ErrorBody>(&body)
        .map(|e| e.error)
        .unwrap_or_else(|_| String::from_utf8_lossy(&body).into_owned());
    Err(ClientError::Http { status, message })
}

fn kv_path(key: &str) -> String {
    format!("/v1/kv/{}", encode_component(key, true))
}

/// Percent-encodes a path or query component (keeping `/` in paths).
fn encode_component(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b'/' if keep_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// An error with its chain of causes (hyper's errors keep the reason, say "connection refused",
/// in their source).
fn describe(error: &dyn std::error::Error) -> String {
    let mut parts = vec![error.to_string()];
    let mut source = error.source();
    while let Some(cause) = source {
        parts.push(cause.to_string());
        source = cause.source();
    }
    parts.dedup();
    parts.join(": ")
}

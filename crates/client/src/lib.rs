//! A typed client of a Beaufort member's HTTP API (the routes `GET /openapi.json` describes):
//! read, write, delete and list keys, fetch receipts to verify offline, and follow committed
//! changes with resumable server-sent events. The `beaufort` command line uses it.
//!
//! It speaks plain HTTP/1.1 over a TCP stream, one connection per request: a member's API binds
//! to localhost or sits behind the operator's proxy, and this keeps a second HTTP stack out of
//! every program that embeds it.
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

use beaufort_node::api::{Receipt, ValueView};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Largest response body read.
const MAX_RESPONSE_BYTES: u64 = 16 * 1024 * 1024;

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
        /// What failed.
        error: std::io::Error,
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
#[derive(Clone, Debug)]
pub struct Client {
    api: String,
    token: Option<String>,
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
    /// A client of the API at `api` (`host:port`; a host name is resolved when connecting,
    /// trying each of its addresses).
    pub fn new(api: impl Into<String>) -> Client {
        Client {
            api: api.into(),
            token: None,
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
        let extra = resume
            .map(|id| format!("Last-Event-ID: {id}\r\n"))
            .unwrap_or_default();
        let mut reader = self.send_head("GET", &path, &extra, b"").await?;
        let (status, _) = self.read_head(&mut reader).await?;
        if status != 200 {
            return Err(ClientError::Http {
                status,
                message: "the watch was refused".into(),
            });
        }
        Ok(Watch {
            api: self.api.clone(),
            reader,
        })
    }

    fn io(&self, error: std::io::Error) -> ClientError {
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

    async fn send_head(
        &self,
        method: &str,
        path: &str,
        extra: &str,
        body: &[u8],
    ) -> Result<BufReader<TcpStream>, ClientError> {
        let mut stream = TcpStream::connect(&self.api)
            .await
            .map_err(|e| self.io(e))?;
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n{extra}",
            self.api,
            body.len()
        );
        if let Some(token) = &self.token {
            head.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        head.push_str("\r\n");
        stream
            .write_all(head.as_bytes())
            .await
            .map_err(|e| self.io(e))?;
        stream.write_all(body).await.map_err(|e| self.io(e))?;
        Ok(BufReader::new(stream))
    }

    /// Reads the status line and headers; returns the status and whether the body is chunked.
    async fn read_head(
        &self,
        reader: &mut BufReader<TcpStream>,
    ) -> Result<(u16, bool), ClientError> {
        let mut line = String::new();
        reader.read_line(&mut line).await.map_err(|e| self.io(e))?;
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| ClientError::Protocol(format!("bad HTTP status line {line:?}")))?;
        let mut chunked = false;
        loop {
            line.clear();
            if reader.read_line(&mut line).await.map_err(|e| self.io(e))? == 0 || line == "\r\n" {
                break;
            }
            let lower = line.to_ascii_lowercase();
            if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
                chunked = true;
            }
        }
        Ok((status, chunked))
    }

    /// One request; the status and the whole body.
    async fn call(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Result<(u16, Vec<u8>), ClientError> {
        let mut reader = self.send_head(method, path, "", body).await?;
        let (status, chunked) = self.read_head(&mut reader).await?;
        let mut raw = Vec::new();
        (&mut reader)
            .take(MAX_RESPONSE_BYTES)
            .read_to_end(&mut raw)
            .await
            .map_err(|e| self.io(e))?;
        let body = if chunked { dechunk(&raw)? } else { raw };
        Ok((status, body))
    }
}

/// An open watch.
pub struct Watch {
    api: String,
    reader: BufReader<TcpStream>,
}

impl Watch {
    /// The next event; `None` when the member ends the stream (it is shutting down).
    pub async fn next(&mut self) -> Result<Option<WatchEvent>, ClientError> {
        let (mut id, mut event, mut data) = (None, String::from("message"), None::<String>);
        let mut line = String::new();
        loop {
            line.clear();
            let read = self
                .reader
                .read_line(&mut line)
                .await
                .map_err(|error| ClientError::Io {
                    api: self.api.clone(),
                    error,
                })?;
            if read == 0 {
                return Ok(None);
            }
            let line = line.trim_end_matches(['\r', '\n']);
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

/// Decodes a chunked body.
fn dechunk(mut raw: &[u8]) -> Result<Vec<u8>, ClientError> {
    let bad = |why: &str| ClientError::Protocol(format!("bad chunked body: {why}"));
    let mut out = Vec::new();
    loop {
        let end = raw
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| bad("no chunk size"))?;
        let size = std::str::from_utf8(&raw[..end])
            .ok()
            .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
            .ok_or_else(|| bad("chunk size"))?;
        raw = &raw[end + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = raw.get(..size).ok_or_else(|| bad("truncated"))?;
        out.extend_from_slice(chunk);
        raw = raw.get(size + 2..).ok_or_else(|| bad("truncated"))?;
    }
}

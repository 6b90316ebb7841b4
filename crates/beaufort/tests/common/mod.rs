//! Shared by the multi-process tests: `beaufort init` a consortium on loopback, run each member as
//! its own `beaufort node` process, and drive it through the CLI client and the HTTP API.
//! Conditions are polled with a deadline; nothing depends on timing beyond that deadline.

#![allow(dead_code)] // Each test binary uses its own subset of these helpers.

use serde_json::Value as Json;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_beaufort");
/// Generous: several clusters share a loaded 2-core machine.
pub const DEADLINE: Duration = Duration::from_secs(120);
/// How long a write that cannot commit is given before it answers 202 (pending).
pub const SHORT_WAIT: &str = "2s";

/// Polls `condition` until it holds; panics with `what` after [`DEADLINE`].
pub fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A member process, killed when dropped.
pub struct Member {
    pub config: PathBuf,
    child: Option<Child>,
}

impl Member {
    pub fn start(config: &Path) -> Member {
        let child = Command::new(BIN)
            .args(["node", "--config"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn beaufort node");
        Member {
            config: config.to_path_buf(),
            child: Some(child),
        }
    }

    /// The API helpers of a member process started some other way (nothing to kill on drop).
    pub fn attach(config: &Path) -> Member {
        Member {
            config: config.to_path_buf(),
            child: None,
        }
    }

    /// SIGKILL, as a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill();
        *self = Member::start(&self.config.clone());
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .arg(args[0])
            .arg("--config")
            .arg(&self.config)
            .args(&args[1..])
            .output()
            .expect("run beaufort client")
    }

    /// One HTTP request to the member's API with its operator token: (status, body). `None` if
    /// the node does not answer (it may be down or still starting).
    pub fn http(&self, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
        let config = beaufort_node::config::Config::load(&self.config).expect("load config");
        let mut stream = TcpStream::connect(config.node.api_bind).ok()?;
        stream.set_read_timeout(Some(DEADLINE)).ok()?;
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            config.node.api_token,
            body.len()
        );
        stream.write_all(request.as_bytes()).ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let status = response.split(' ').nth(1)?.parse().ok()?;
        let body = response.split_once("\r\n\r\n")?.1.to_owned();
        Some((status, body))
    }

    /// One HTTPS request to a member started with `init --tls`, as [`Member::http`] does over
    /// plain TCP: TLS to `localhost` at its API address, trusting only its own certificate.
    /// `None` if the node does not answer.
    pub fn https(&self, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
        let config = beaufort_node::config::Config::load(&self.config).expect("load config");
        let cert = config
            .node
            .tls_cert
            .as_deref()
            .expect("the member has tls_cert");
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            config.node.api_token,
            body.len()
        );
        let answer = https_request(config.node.api_bind, "localhost", &[cert], &request).ok()?;
        let status = answer.split(' ').nth(1)?.parse().ok()?;
        let body = answer.split_once("\r\n\r\n")?.1.to_owned();
        Some((status, body))
    }

    /// One request as [`Member::https`] when the member serves TLS, else as [`Member::http`].
    pub fn request(&self, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
        let config = beaufort_node::config::Config::load(&self.config).expect("load config");
        if config.node.tls_cert.is_some() {
            self.https(method, path, body)
        } else {
            self.http(method, path, body)
        }
    }

    /// Starts a write that cannot commit (the member runs alone: it waits 3 s, then answers
    /// 202) and returns once the member counts it pending; the thread ends with its answer.
    pub fn write_in_flight(&self) -> std::thread::JoinHandle<Option<(u16, String)>> {
        let writer = Member::attach(&self.config);
        let in_flight =
            std::thread::spawn(move || writer.request("PUT", "/v1/kv/drain/1?wait=3s", "x"));
        eventually("the write to be pending", || {
            matches!(self.request("GET", "/v1/status", ""), Some((200, body))
                if body.contains("\"pending_writes\":1"))
        });
        in_flight
    }

    /// The base URL of the member's HTTP API (`https://` when it serves TLS).
    pub fn api_url(&self) -> String {
        let config = beaufort_node::config::Config::load(&self.config).expect("load config");
        let scheme = if config.node.tls_cert.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", config.node.api_bind)
    }

    /// The member's operator token.
    pub fn token(&self) -> String {
        beaufort_node::config::Config::load(&self.config)
            .expect("load config")
            .node
            .api_token
    }

    /// `GET /v1/status`, once the node answers.
    pub fn status(&self) -> Json {
        let mut status = Json::Null;
        eventually("a status answer", || {
            match self.http("GET", "/v1/status", "") {
                Some((200, body)) => {
                    status = serde_json::from_str(&body).expect("status JSON");
                    true
                }
                _ => false,
            }
        });
        status
    }

    /// The value of a counter or gauge in `GET /metrics`, as a whole number (0 if the member
    /// does not report it).
    pub fn metric(&self, name: &str) -> u64 {
        self.metric_value(name) as u64
    }

    /// The value of a counter or gauge in `GET /metrics` (0 if the member does not report it).
    pub fn metric_value(&self, name: &str) -> f64 {
        let mut text = String::new();
        eventually("a metrics answer", || {
            match self.http("GET", "/metrics", "") {
                Some((200, body)) => {
                    text = body;
                    true
                }
                _ => false,
            }
        });
        text.lines()
            .filter_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .find_map(|value| value.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    }

    /// `PUT /v1/kv/{key}?wait=..`: (status, body), retried while the node does not answer.
    pub fn put_wait(&self, key: &str, value: &str, wait: &str) -> (u16, String) {
        let mut answer = None;
        eventually("a put answer", || {
            answer = self.http("PUT", &format!("/v1/kv/{key}?wait={wait}"), value);
            answer.is_some()
        });
        answer.expect("answered")
    }

    /// The committed value of a key (`None` if it has none).
    pub fn value(&self, key: &str) -> Option<String> {
        let mut answer = None;
        eventually("a get answer", || {
            answer = self.http("GET", &format!("/v1/kv/{key}"), "");
            answer.is_some()
        });
        match answer.expect("answered") {
            (200, body) => {
                let json: Json = serde_json::from_str(&body).expect("value JSON");
                Some(json["value"].as_str().expect("text value").to_owned())
            }
            (404, _) => None,
            (status, body) => panic!("GET {key}: {status} {body}"),
        }
    }

    /// Test-only partition: this member drops all traffic to and from `members`.
    pub fn isolate(&self, members: &[usize]) {
        let body = serde_json::json!({ "members": members }).to_string();
        let answer = self.http("PUT", "/v1/test/isolate", &body);
        assert!(
            matches!(answer, Some((200, _))),
            "isolate {members:?}: {answer:?}"
        );
    }

    /// Polls `get` until the key has `value` (or the deadline passes); returns the JSON.
    pub fn wait_for(&self, key: &str, value: &str) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let out = self.cli(&["get", key]);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            if out.status.success() && text.contains(&format!("\"value\":\"{value}\"")) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "{key} never became {value} at {}: {text} {}",
                self.config.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Retries `put` until it answers success (a node may still be starting); returns the JSON.
    pub fn put(&self, key: &str, value: &str) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let out = self.cli(&["put", key, value]);
            if out.status.success() {
                return String::from_utf8_lossy(&out.stdout).into_owned();
            }
            assert!(
                Instant::now() < deadline,
                "put {key} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn consortium(dir: &Path, n: usize) -> Vec<Member> {
    consortium_with(dir, n, false)
}

/// A consortium of `n` members, optionally with the test-only controls enabled.
pub fn consortium_with(dir: &Path, n: usize, test_controls: bool) -> Vec<Member> {
    init(dir, n);
    (0..n)
        .map(|i| {
            let config = dir.join(format!("member-{i}.toml"));
            if test_controls {
                let text = std::fs::read_to_string(&config).expect("read config");
                let last_table = text.lines().rfind(|l| l.starts_with('['));
                assert_eq!(last_table, Some("[node]"), "the [node] table comes last");
                std::fs::write(&config, format!("{text}test_controls = true\n"))
                    .expect("write config");
            }
            Member::start(&config)
        })
        .collect()
}

/// Sends `request` over TLS to `api`, checking the server's certificate for `server_name`
/// against the certificates in `trusted` (PEM files) only, and reads the answer until the server
/// closes. `Err` with the reason when the connection or the handshake fails.
pub fn https_request(
    api: std::net::SocketAddr,
    server_name: &str,
    trusted: &[&Path],
    request: &str,
) -> Result<String, String> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for file in trusted {
        for cert in
            rustls::pki_types::CertificateDer::pem_file_iter(file).map_err(|e| e.to_string())?
        {
            roots
                .add(cert.map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(server_name.to_owned())
        .map_err(|e| e.to_string())?;
    let connection = rustls::ClientConnection::new(std::sync::Arc::new(config), name)
        .map_err(|e| e.to_string())?;
    let tcp = TcpStream::connect(api).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(DEADLINE))
        .map_err(|e| e.to_string())?;
    let mut tls = rustls::StreamOwned::new(connection, tcp);
    tls.write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    match tls.read_to_end(&mut answer) {
        Ok(_) => {}
        // A server that closes without TLS's close_notify after a whole answer.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !answer.is_empty() => {}
        Err(e) => return Err(e.to_string()),
    }
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

/// `beaufort init --tls` of `n` members on free loopback ports in `dir`.
pub fn init_tls(dir: &Path, n: usize) {
    init_with(dir, n, &["--tls"]);
}

/// `beaufort init` of `n` members on free loopback ports in `dir`.
pub fn init(dir: &Path, n: usize) {
    init_with(dir, n, &[]);
}

fn init_with(dir: &Path, n: usize, extra: &[&str]) {
    let out = Command::new(BIN)
        .args([
            "init",
            "--members",
            &n.to_string(),
            "--p2p-port",
            "0",
            "--api-port",
            "0",
        ])
        .args(["--write-once", "voucher/"])
        .args(extra)
        .arg("--out")
        .arg(dir)
        .output()
        .expect("run beaufort init");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Polls until every member holds `key` with one and the same value, and returns it.
pub fn agreed_value(members: &[Member], key: &str) -> String {
    let mut agreed = None;
    eventually(&format!("every member to agree on {key}"), || {
        let values: Vec<Option<String>> = members.iter().map(|m| m.value(key)).collect();
        agreed = values[0].clone();
        agreed.is_some() && values.iter().all(|v| *v == agreed)
    });
    agreed.expect("agreed")
}

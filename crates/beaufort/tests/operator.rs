//! What an operator and an outside auditor rely on, tested against real member processes: a
//! receipt check that shows only what it verified, secret files readable only by their owner,
//! keys without extra quotes in the API, a clean stop on SIGTERM and SIGINT, health endpoints,
//! JSON bodies on hyper's own errors, and the small things of a command-line tool (plain logs
//! when redirected, error messages, help, durations, host names). Conditions are polled with a
//! deadline; the one timing bound checked (exit within 10 s of SIGTERM) bounds a hang.

mod common;

use common::*;
use serde_json::Value as Json;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The API address of a member's configuration.
fn api_of(config: &Path) -> SocketAddr {
    beaufort_node::config::Config::load(config)
        .expect("load config")
        .node
        .api_bind
}

/// Sends `request` as is (no token unless it carries one) and reads the answer until the server
/// closes: (status, head, body). `None` if nothing could be read.
fn raw(api: SocketAddr, request: &[u8]) -> Option<(u16, String, Vec<u8>)> {
    let mut stream = TcpStream::connect(api).ok()?;
    stream.set_read_timeout(Some(DEADLINE)).ok()?;
    // The server may answer and close before reading all of a huge request: what it answered
    // is still read below.
    let _ = stream.write_all(request);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let split = response.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, head, response[split + 4..].to_vec()))
}

/// A GET without a token: (status, JSON body).
fn get_json(api: SocketAddr, path: &str) -> Option<(u16, Json)> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    let (status, _, body) = raw(api, request.as_bytes())?;
    Some((status, serde_json::from_slice(&body).ok()?))
}

/// Polls until the member's API answers (`/v1/info`, so that what a test checks next is what
/// fails, should it fail).
fn wait_live(api: SocketAddr) {
    eventually("the API to answer", || {
        matches!(get_json(api, "/v1/info"), Some((200, _)))
    });
}

/// Polls until the process exits; `None` if it has not within `limit`.
fn wait_exit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends the signal `name` (TERM, INT) to the process, as an operator's `kill` would.
fn signal(child: &Child, name: &str) {
    let sent = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(sent.success(), "kill -{name}");
}

/// A member process with its stderr collected by a thread (so a chatty log never blocks it),
/// killed when dropped.
struct Logged {
    child: Child,
    log: Option<std::thread::JoinHandle<String>>,
}

impl Logged {
    fn start(config: &Path) -> Logged {
        let mut child = Command::new(BIN)
            .args(["node", "--config"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn beaufort node");
        let mut err = child.stderr.take().expect("stderr");
        let log = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = err.read_to_string(&mut text);
            text
        });
        Logged {
            child,
            log: Some(log),
        }
    }

    /// Everything the process wrote to stderr; call once it has exited.
    fn stderr(&mut self) -> String {
        self.log
            .take()
            .map(|log| log.join().expect("log thread"))
            .unwrap_or_default()
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn verify_refuses_a_receipt_whose_value_was_edited_and_shows_only_verified_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let members = consortium(dir.path(), 4);
    members[0].put("points/alice", "10");
    let api = api_of(&members[3].config);
    let mut receipt = Json::Null;
    eventually("a receipt at member 3", || {
        match get_json(api, "/v1/receipts/points/alice") {
            Some((200, json)) => {
                receipt = json;
                true
            }
            _ => false,
        }
    });
    let verify = |name: &str, receipt: &Json| {
        let file = dir.path().join(name);
        std::fs::write(&file, receipt.to_string()).expect("write receipt");
        Command::new(BIN)
            .args(["verify", "--config"])
            .arg(&members[1].config)
            .arg(&file)
            .output()
            .expect("run verify")
    };

    let out = verify("receipt.json", &receipt);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("= \"10\" certified"), "{stdout}");

    // Only `value` edited: its certificate still covers `value_hex`, so the edit must be caught.
    let mut edited = receipt.clone();
    edited["value"] = Json::from("1000");
    let out = verify("edited.json", &edited);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "an edited value verified: {stdout}");
    assert!(!stdout.contains("1000"), "{stdout}");
    assert!(stderr.contains("value"), "{stderr}");

    // Claiming the certified bytes are a delete, or dropping the text, is refused as well.
    let mut deleted = receipt.clone();
    deleted["deleted"] = Json::from(true);
    assert!(!verify("deleted.json", &deleted).status.success());
    let mut hidden = receipt.clone();
    hidden["value"] = Json::Null;
    assert!(!verify("hidden.json", &hidden).status.success());

    // The writer's own status names the key without extra quotes.
    let status = members[0].status();
    assert_eq!(
        status["recent_commits"][0]["key"], "points/alice",
        "{status}"
    );
}

#[test]
fn init_writes_every_secret_file_readable_only_by_its_owner() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    init(dir.path(), 4);
    let mut checked = 0;
    for entry in std::fs::read_dir(dir.path()).expect("read dir") {
        let entry = entry.expect("entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        // Every file init writes holds a secret: the BLS and libp2p keys, and the member's
        // configuration with its operator token.
        if entry.file_type().expect("file type").is_file() {
            let mode = entry.metadata().expect("metadata").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{name} has mode {mode:o}");
            checked += 1;
        }
    }
    assert_eq!(
        checked,
        4 * 3,
        "member-N.toml, .bls and .p2p for each of 4 members"
    );
}

#[test]
fn keys_in_api_answers_have_no_extra_quotes() {
    let dir = tempfile::tempdir().expect("tempdir");
    init(dir.path(), 4);
    let member = Member::start(&dir.path().join("member-0.toml"));
    // Alone, the member cannot commit: the write stays pending and shows in its status.
    let (status, body) = member.put_wait("q/1", "v", "0s");
    assert_eq!(status, 202, "{body}");
    let json: Json = serde_json::from_str(&body).expect("JSON");
    assert_eq!(json["key"], "q/1", "{body}");
    let status = member.status();
    assert_eq!(status["in_progress"][0]["key"], "q/1", "{status}");
}

/// The gauges an operator watches are sampled when `/metrics` is read: keys held, writes
/// pending, the store's size, and the process's memory and CPU time.
#[test]
fn metrics_show_keys_pending_writes_store_size_and_the_process() {
    let dir = tempfile::tempdir().expect("tempdir");
    init(dir.path(), 4);
    let member = Member::start(&dir.path().join("member-1.toml"));
    assert_eq!(member.metric("beaufort_pending_writes"), 0);
    // Alone, the member cannot commit: both writes stay pending.
    for key in ["g/1", "g/2"] {
        let (status, body) = member.put_wait(key, "v", "0s");
        assert_eq!(status, 202, "{body}");
    }
    assert_eq!(member.metric("beaufort_keys"), 2);
    assert_eq!(member.metric("beaufort_pending_writes"), 2);
    assert!(member.metric("beaufort_store_file_bytes") > 0);
    assert!(member.metric("beaufort_process_resident_memory_bytes") > 1_000_000);
    let cpu = member.metric_value("beaufort_process_cpu_seconds");
    assert!(cpu > 0.0, "{cpu}");
}

#[test]
fn sigterm_and_sigint_drain_requests_in_flight_and_exit_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    init(dir.path(), 4);
    let config = dir.path().join("member-0.toml");
    let api = api_of(&config);

    for name in ["TERM", "INT"] {
        let mut node = Logged::start(&config);
        wait_live(api);
        // A write that cannot commit is in flight when the signal comes, and must still get
        // its whole answer.
        let in_flight = Member::attach(&config).write_in_flight();
        // A watch stream never ends by itself; it must not hold the stop up.
        let mut watch = TcpStream::connect(api).expect("connect watch");
        watch
            .write_all(b"GET /v1/watch HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .expect("send watch");
        let mut line = String::new();
        BufReader::new(&watch)
            .read_line(&mut line)
            .expect("watch answer");
        assert!(line.starts_with("HTTP/1.1 200"), "{line}");

        signal(&node.child, name);
        let signalled = Instant::now();
        let exit = wait_exit(&mut node.child, Duration::from_secs(10));
        let took = signalled.elapsed();
        let answer = in_flight.join().expect("in-flight thread");
        let exit = exit.unwrap_or_else(|| {
            let _ = node.child.kill();
            panic!("still running 10 s after SIG{name}: {}", node.stderr())
        });
        let log = node.stderr();
        assert!(exit.success(), "SIG{name}: {exit:?}\n{log}");
        assert!(
            matches!(&answer, Some((202, body)) if body.contains("pending")),
            "the request in flight at SIG{name} was cut: {answer:?}"
        );
        assert!(log.contains("stopping"), "no stopping line: {log}");
        assert!(
            log.lines().any(|l| l.trim_end().ends_with(": stopped")),
            "no clean stop (drain and runtime) logged: {log}"
        );
        assert!(
            !log.contains('\x1b'),
            "colour codes in a redirected log: {log:?}"
        );
        eprintln!("SIG{name}: exited 0 after {took:?}");
    }
}

#[test]
fn info_metrics_and_the_startup_log_name_the_version_and_the_network() {
    let dir = tempfile::tempdir().expect("tempdir");
    init(dir.path(), 4);
    let config = dir.path().join("member-2.toml");
    let api = api_of(&config);
    let mut node = Logged::start(&config);
    wait_live(api);
    let (_, info) = get_json(api, "/v1/info").expect("info");
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"), "{info}");
    assert_eq!(info["member"], 2, "{info}");
    let network_id = info["network_id"].as_str().expect("network id").to_owned();
    let metrics = raw(
        api,
        b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .map(|(_, _, body)| String::from_utf8_lossy(&body).into_owned())
    .expect("metrics");
    let build_info = format!(
        "beaufort_build_info{{version=\"{}\",network_id=\"{network_id}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    assert!(
        metrics.contains(&build_info),
        "no {build_info} in {metrics}"
    );

    signal(&node.child, "TERM");
    wait_exit(&mut node.child, Duration::from_secs(10)).expect("stopped");
    let log = node.stderr();
    let version = format!("version=\"{}\"", env!("CARGO_PKG_VERSION"));
    assert!(
        log.lines().any(|l| l.contains("starting")
            && l.contains(&version)
            && l.contains(&format!("network_id={network_id}"))),
        "no startup line with the version and the network id: {log}"
    );
}

#[test]
fn livez_and_readyz_answer_without_a_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    init(dir.path(), 4);
    let _first = Member::start(&dir.path().join("member-0.toml"));
    let api = api_of(&dir.path().join("member-0.toml"));
    wait_live(api);
    assert_eq!(
        get_json(api, "/livez"),
        Some((200, serde_json::json!({ "live": true })))
    );

    // Alone: live, not ready, and says why.
    let (status, body) = get_json(api, "/readyz").expect("readyz");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["ready"], false, "{body}");
    assert_eq!(body["reason"], "no_neighbours", "{body}");
    assert!(body["error"].is_string(), "{body}");

    // With a neighbour it is ready.
    let _second = Member::start(&dir.path().join("member-1.toml"));
    eventually(
        "readyz to answer 200",
        || matches!(get_json(api, "/readyz"), Some((200, body)) if body["ready"] == true),
    );

    let (_, openapi) = get_json(api, "/openapi.json").expect("openapi");
    for path in ["/livez", "/readyz"] {
        assert!(
            openapi["paths"][path]["get"].is_object(),
            "{path} not in the OpenAPI document"
        );
        assert!(
            openapi["paths"][path]["get"].get("security").is_none(),
            "{path} needs no token"
        );
    }
}

#[test]
fn readyz_calls_a_member_lagging_when_its_neighbours_fall_silent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let members = consortium_with(dir.path(), 2, true);
    let api = api_of(&members[0].config);
    eventually(
        "readyz to answer 200",
        || matches!(get_json(api, "/readyz"), Some((200, body)) if body["ready"] == true),
    );
    // Connected, but every message from member 1 is dropped: it hears nothing.
    members[0].isolate(&[1]);
    eventually("readyz to call it lagging", || {
        matches!(get_json(api, "/readyz"),
            Some((503, body)) if body["reason"] == "lagging" && body["error"].is_string())
    });
    members[0].isolate(&[]);
    eventually(
        "readyz to answer 200 again",
        || matches!(get_json(api, "/readyz"), Some((200, body)) if body["ready"] == true),
    );
}

#[test]
fn errors_below_the_handlers_carry_the_json_error_body() {
    let dir = tempfile::tempdir().expect("tempdir");
    init(dir.path(), 4);
    let config = dir.path().join("member-0.toml");
    let _member = Member::start(&config);
    let api = api_of(&config);
    wait_live(api);

    let huge_header = format!(
        "GET /v1/info HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\n\r\n",
        "a".repeat(1024 * 1024)
    );
    let huge_url = format!(
        "GET /v1/kv/{} HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "a".repeat(200 * 1024)
    );
    let mut raw_byte = b"GET /v1/kv/a".to_vec();
    raw_byte.push(0xFF);
    raw_byte.extend_from_slice(b" HTTP/1.1\r\nHost: localhost\r\n\r\n");
    for (what, request, expected) in [
        ("a 1 MiB header", huge_header.into_bytes(), 431),
        ("a 200 KiB URL", huge_url.into_bytes(), 414),
        ("a raw 0xFF byte in the path", raw_byte, 400),
    ] {
        let (status, head, body) =
            raw(api, &request).unwrap_or_else(|| panic!("{what}: no answer"));
        assert_eq!(status, expected, "{what}: {head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: application/json"),
            "{what}: {head}"
        );
        let json: Json = serde_json::from_slice(&body)
            .unwrap_or_else(|e| panic!("{what}: body {:?}: {e}", String::from_utf8_lossy(&body)));
        assert!(
            json["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{what}: {json}"
        );
    }

    // The API still serves after them.
    assert!(matches!(get_json(api, "/livez"), Some((200, _))));
}

#[test]
fn the_command_line_reads_well() {
    let dir = tempfile::tempdir().expect("tempdir");

    // The top-level help describes the node as here, not "later".
    let help = Command::new(BIN).arg("--help").output().expect("help");
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(!help.contains("later"), "{help}");
    assert!(help.contains("node"), "{help}");

    // A missing configuration file names its cause once.
    let missing = dir.path().join("nowhere.toml");
    let out = Command::new(BIN)
        .args(["node", "--config"])
        .arg(&missing)
        .output()
        .expect("run node");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("nowhere.toml"), "{stderr}");
    assert_eq!(stderr.matches("No such file").count(), 1, "{stderr}");

    // `sim run` takes humantime durations like every other command: "1m" parses, and the run is
    // refused only for the bogus protocol given after it (so that nothing runs for a minute).
    let out = Command::new(BIN)
        .args(["sim", "run", "--duration", "1m", "--protocol", "bogus"])
        .output()
        .expect("sim run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("--protocol"), "{stderr}");
    assert!(!stderr.contains("--duration"), "{stderr}");

    // `--api` takes a host name.
    init(dir.path(), 4);
    let config = dir.path().join("member-0.toml");
    let _member = Member::start(&config);
    let api = api_of(&config);
    wait_live(api);
    let out = Command::new(BIN)
        .args([
            "get",
            "--api",
            &format!("localhost:{}", api.port()),
            "no/such/key",
        ])
        .output()
        .expect("get");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("HTTP 404"), "{stderr}");
}

//! The API over HTTPS, against real member processes started from `beaufort init --tls`: the CLI
//! writes and reads over https (by IP address and by host name), `/livez` answers over TLS,
//! plain HTTP to the TLS port gets no answer, a client that does not trust the member's
//! certificate is refused with a clear error, a bad certificate or key stops the member at
//! start naming the file, and SIGTERM still drains and exits 0. Conditions are polled with a
//! deadline.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn config_of(path: &Path) -> beaufort_node::config::Config {
    beaufort_node::config::Config::load(path).expect("load config")
}

/// Runs the CLI with `args` and returns (success, stdout, stderr).
fn beaufort(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN).args(args).output().expect("run beaufort");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_tls_consortium_serves_the_cli_over_https_and_refuses_plain_http_and_strangers() {
    let dir = tempfile::tempdir().expect("tempdir");
    init_tls(dir.path(), 4);
    // Every key file is the owner's only; certificates are public.
    for i in 0..4 {
        let config = config_of(&dir.path().join(format!("member-{i}.toml")));
        let key = config.node.tls_key.as_deref().expect("tls_key");
        let cert = config.node.tls_cert.as_deref().expect("tls_cert");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(key)
            .expect("key file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{}", key.display());
        assert!(cert.exists(), "{}", cert.display());
        let url = config.network.members[i].api_url.clone().expect("api_url");
        assert!(url.starts_with("https://"), "{url}");
        assert_eq!(
            config.node.tls_trust.len(),
            3,
            "the other members' certificates"
        );
    }
    let members: Vec<Member> = (0..4)
        .map(|i| Member::start(&dir.path().join(format!("member-{i}.toml"))))
        .collect();

    // /livez over TLS, without a token, checked against the member's own certificate for the
    // host name `localhost`.
    eventually(
        "/livez over https",
        || matches!(members[0].https("GET", "/livez", ""), Some((200, body)) if body.contains("true")),
    );

    // The CLI over https: a write at one member, read back at another.
    let written = members[0].put("tls/one", "1");
    assert!(written.contains("\"key\":\"tls/one\""), "{written}");
    members[3].wait_for("tls/one", "1");

    // By host name: --api https://localhost:PORT with the member's certificate trusted.
    let config = config_of(&members[2].config);
    let cert = config.node.tls_cert.clone().expect("tls_cert");
    let by_name = format!("https://localhost:{}", config.node.api_bind.port());
    let (ok, out, err) = beaufort(&[
        "get",
        "--api",
        &by_name,
        "--tls-trust",
        cert.to_str().expect("utf-8 path"),
        "tls/one",
    ]);
    assert!(ok && out.contains("\"value\":\"1\""), "{out}{err}");

    // `doctor` reaches every member over https (each one's self-signed certificate is in
    // tls_trust).
    eventually("doctor to be content over https", || {
        let (ok, out, _) = beaufort(&[
            "doctor",
            "--config",
            members[1].config.to_str().expect("utf-8 path"),
        ]);
        ok && out.contains("OK: every member answers")
    });

    // A client that does not trust the certificate (public roots only) is refused, and says
    // why.
    let (ok, out, err) = beaufort(&["get", "--api", &by_name, "tls/one"]);
    assert!(!ok, "an untrusted certificate was accepted: {out}");
    assert!(
        err.contains("invalid peer certificate") && err.contains("--tls-trust"),
        "{err}"
    );
    // The same at the TLS level: a client trusting another member's certificate only.
    let other = config_of(&members[1].config)
        .node
        .tls_cert
        .expect("tls_cert");
    let refused = https_request(
        config.node.api_bind,
        "localhost",
        &[&other],
        "GET /livez HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    assert!(
        refused.is_err(),
        "a stranger's trust root was accepted: {refused:?}"
    );

    // Plain HTTP to the TLS port gets no HTTP answer at all (the handshake fails).
    let plain = members[2].http("GET", "/livez", "");
    assert!(
        !matches!(plain, Some((200, _))),
        "plain HTTP was served on the TLS port: {plain:?}"
    );
    let mut raw = TcpStream::connect(config.node.api_bind).expect("connect");
    raw.set_read_timeout(Some(DEADLINE)).expect("timeout");
    raw.write_all(b"GET /livez HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .expect("send");
    let mut answer = Vec::new();
    let _ = raw.read_to_end(&mut answer);
    assert!(
        !answer.starts_with(b"HTTP/"),
        "plain HTTP got an HTTP answer: {:?}",
        String::from_utf8_lossy(&answer)
    );
    // And the CLI pointed at it over plain HTTP says what to do.
    let (ok, _, err) = beaufort(&["get", "--api", &config.node.api_bind.to_string(), "tls/one"]);
    assert!(!ok && err.contains("https://"), "{err}");
}

#[test]
fn a_bad_certificate_or_key_stops_the_member_at_start_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    init_tls(dir.path(), 2);
    let path = dir.path().join("member-0.toml");
    let text = std::fs::read_to_string(&path).expect("read config");
    let cases = [
        // Another member's key: the pair does not match.
        (
            "tls_key = \"member-0.key\"",
            "tls_key = \"member-1.key\"",
            "member-1.key",
        ),
        // A file that is not there.
        (
            "tls_cert = \"member-0.crt\"",
            "tls_cert = \"gone.crt\"",
            "gone.crt",
        ),
        // A key where the certificate should be.
        (
            "tls_cert = \"member-0.crt\"",
            "tls_cert = \"member-0.key\"",
            "member-0.key",
        ),
    ];
    for (from, to, named) in cases {
        assert!(text.contains(from), "{from} in\n{text}");
        let broken = dir.path().join("broken.toml");
        std::fs::write(&broken, text.replace(from, to)).expect("write config");
        let out = Command::new(BIN)
            .args(["node", "--config"])
            .arg(&broken)
            .stdin(Stdio::null())
            .output()
            .expect("run node");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "started with {to}: {err}");
        assert!(
            err.contains(named),
            "{to}: the error does not name {named}: {err}"
        );
    }
}

#[test]
fn sigterm_drains_a_tls_member_and_exits_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    init_tls(dir.path(), 4);
    let config = dir.path().join("member-0.toml");
    let mut node = Command::new(BIN)
        .args(["node", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn node");
    let member = Member::attach(&config);
    eventually("/livez over https", || {
        matches!(member.https("GET", "/livez", ""), Some((200, _)))
    });
    // A write that cannot commit is in flight when the signal comes, and must still get its
    // whole answer (202 after its 3 s wait).
    let in_flight = member.write_in_flight();
    let sent = Command::new("kill")
        .args(["-TERM", &node.id().to_string()])
        .status()
        .expect("run kill");
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(status) = node.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = node.kill();
            panic!("still running 10 s after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut log = String::new();
    let _ = node.stderr.take().expect("stderr").read_to_string(&mut log);
    assert!(exit.success(), "{exit:?}\n{log}");
    let answer = in_flight.join().expect("in-flight thread");
    assert!(
        matches!(&answer, Some((202, body)) if body.contains("pending")),
        "the request in flight at SIGTERM was cut: {answer:?}"
    );
    assert!(log.contains("scheme=\"https\""), "{log}");
}

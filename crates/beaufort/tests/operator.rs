//! What an operator and an outside auditor rely on, tested against real member processes: a
//! receipt check that shows only what it verified, secret files readable only by their owner,
//! keys without extra quotes in the API, a clean stop on SIGTERM and SIGINT, health endpoints,
//! JSON bodies on hyper's own errors, and the small things of a command-line tool (plain logs
//! when redirected, error messages, help, durations, host names). Conditions are polled with a
//! deadline; the one timing bound checked (exit within 10 s of SIGTERM) bounds a hang.

mod common;

use common::*;
use serde_json::Value as Json;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;

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

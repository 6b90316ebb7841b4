//! A consortium set up the way parties on different hosts do it: each runs `beaufort keygen`
//! with its own addresses and keeps its secrets, hands over only the printed member entry,
//! `beaufort assemble` builds the `[network]` table from the entries, and each party writes its
//! own `[node]` table under it. The four members then decide together. An entry whose proof of
//! possession is not its key's is refused.

mod common;

use common::{agreed_value, Member, BIN};
use std::net::TcpListener;
use std::process::Command;

fn run(args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).output().expect("run beaufort")
}

fn text(path: &std::path::Path) -> &str {
    path.to_str().expect("utf-8 path")
}

#[test]
fn parties_keygen_on_their_own_hosts_assemble_the_network_and_decide_together() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Ports held until every file is written, so no two parties get the same one.
    let probes: Vec<(TcpListener, TcpListener)> = (0..4)
        .map(|_| {
            (
                TcpListener::bind("127.0.0.1:0").expect("p2p port"),
                TcpListener::bind("127.0.0.1:0").expect("api port"),
            )
        })
        .collect();
    let ports: Vec<(u16, u16)> = probes
        .iter()
        .map(|(p2p, api)| {
            (
                p2p.local_addr().expect("addr").port(),
                api.local_addr().expect("addr").port(),
            )
        })
        .collect();
    let mut entries = Vec::new();
    for (i, (p2p, api)) in ports.iter().enumerate() {
        let out = run(&[
            "keygen",
            "--out",
            text(&dir.path().join(format!("party-{i}.bls"))),
            "--p2p-out",
            text(&dir.path().join(format!("party-{i}.p2p"))),
            "--address",
            &format!("/ip4/127.0.0.1/tcp/{p2p}"),
            "--name",
            &format!("Shop {i}"),
            "--api-url",
            &format!("http://127.0.0.1:{api}"),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let entry = dir.path().join(format!("party-{i}.json"));
        std::fs::write(&entry, &out.stdout).expect("write entry");
        entries.push(entry);
    }

    // An entry carrying another key's proof of possession is refused.
    let mut forged: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&entries[1]).expect("read")).expect("JSON");
    let other: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&entries[0]).expect("read")).expect("JSON");
    forged["pop"] = other["pop"].clone();
    let forged_path = dir.path().join("forged.json");
    std::fs::write(&forged_path, forged.to_string()).expect("write");
    let refused = run(&[
        "assemble",
        "--name",
        "multi",
        "--out",
        text(&dir.path().join("refused.toml")),
        text(&entries[0]),
        text(&forged_path),
    ]);
    assert!(!refused.status.success());
    assert!(
        !dir.path().join("native.bls").exists(),
        "a refused keygen writes no key"
    );
    assert!(!dir.path().join("refused.toml").exists());

    let network = dir.path().join("network.toml");
    let mut args = vec!["assemble", "--name", "multi", "--out", text(&network)];
    args.extend(entries.iter().map(|e| text(e)));
    let out = run(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("network id"));

    let table = std::fs::read_to_string(&network).expect("read network");
    let mut configs = Vec::new();
    for (i, (p2p, api)) in ports.iter().enumerate() {
        let config = dir.path().join(format!("member-{i}.toml"));
        let node = format!(
            "\n[node]\nindex = {i}\nbls_key_file = \"party-{i}.bls\"\np2p_key_file = \
             \"party-{i}.p2p\"\ndata_dir = \"data-{i}\"\nlisten = [\"/ip4/127.0.0.1/tcp/{p2p}\"]\n\
             api_bind = \"127.0.0.1:{api}\"\napi_token = \"party-{i}-operator-token-0123456789\"\n"
        );
        std::fs::write(&config, format!("{table}{node}")).expect("write config");
        configs.push(config);
    }
    drop(probes);
    let members: Vec<Member> = configs.iter().map(|c| Member::start(c)).collect();
    members[2].put("points/alice", "10");
    assert_eq!(agreed_value(&members, "points/alice"), "10");
}

/// A member that will run in a browser gets keys and an entry without addresses (no one can dial
/// a page) with `--browser`; a native member's keys without `--address` are refused, since no
/// one could reach it.
#[test]
fn a_browser_member_is_keyed_without_addresses_and_a_native_one_needs_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bls = dir.path().join("browser.bls");
    let p2p = dir.path().join("browser.p2p");
    let out = run(&[
        "keygen",
        "--out",
        text(&bls),
        "--p2p-out",
        text(&p2p),
        "--browser",
        "--name",
        "Shop in a tab",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let entry: serde_json::Value = serde_json::from_slice(&out.stdout).expect("an entry");
    assert_eq!(entry["addresses"], serde_json::json!([]));
    assert!(entry["peer_id"].as_str().is_some_and(|id| !id.is_empty()));

    let refused = run(&[
        "keygen",
        "--out",
        text(&dir.path().join("native.bls")),
        "--p2p-out",
        text(&dir.path().join("native.p2p")),
    ]);
    assert!(!refused.status.success());
    assert!(
        !dir.path().join("native.bls").exists(),
        "a refused keygen writes no key"
    );
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--p2p-out needs --address"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}

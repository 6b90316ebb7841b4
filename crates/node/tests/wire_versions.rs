//! The wire encoding's version range: a member reads every version in
//! `MIN_WIRE_VERSION..=WIRE_VERSION`, writes the one its configuration pins (the newest by
//! default), and refuses to be configured to write one it cannot read. Members writing
//! different versions in the range form one consortium; this build's range is a single version
//! (see docs/OPERATING.md, "Upgrading"), so the mixed consortium below pins the oldest it reads.

use beaufort_core::types::{Key, Value};
use beaufort_core::wire::{
    decode, encode_as, SyncMessage, WireError, MIN_WIRE_VERSION, WIRE_VERSION,
};
use beaufort_node::config::{init_local, Config, InitOptions, DEFAULT_NEIGHBOURS};
use beaufort_node::{NodeHandle, StartOptions};
use std::time::Duration;

#[test]
fn every_version_in_the_range_is_written_and_read_and_none_outside() {
    let message = SyncMessage::NeedState {
        keys: vec![Key::new("points/alice").expect("key")],
    };
    for version in MIN_WIRE_VERSION..=WIRE_VERSION {
        let bytes = encode_as(&message, version).expect("in range");
        assert_eq!(bytes[0], version as u8, "the header names the version");
        assert_eq!(decode(&bytes, 4), Ok(message.clone()));
    }
    for outside in [MIN_WIRE_VERSION - 1, WIRE_VERSION + 1] {
        assert_eq!(
            encode_as(&message, outside),
            Err(WireError::Version(outside))
        );
        let mut bytes = encode_as(&message, WIRE_VERSION).expect("in range");
        bytes[0] = outside as u8;
        let refused = decode(&bytes, 4).expect_err("outside the range");
        assert_eq!(refused, WireError::Version(outside));
        assert!(refused
            .to_string()
            .contains(&format!("reads {MIN_WIRE_VERSION} to {WIRE_VERSION}")));
    }
}

fn consortium(dir: &std::path::Path) -> Vec<Config> {
    let consortium = init_local(
        dir,
        &InitOptions {
            members: 4,
            name: "wire-test".into(),
            p2p_base_port: 0,
            api_base_port: 0,
            write_once_prefixes: Vec::new(),
            neighbours: DEFAULT_NEIGHBOURS,
            aggregate_wait_ms: None,
        },
    )
    .expect("init");
    consortium
        .config_files
        .iter()
        .map(|path| Config::load(path).expect("configuration"))
        .collect()
}

#[test]
fn a_member_cannot_be_configured_to_write_a_version_it_does_not_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = consortium(dir.path()).remove(0);
    assert_eq!(
        config.node.writes_wire(),
        WIRE_VERSION,
        "the newest by default"
    );
    config.node.wire_version = Some(WIRE_VERSION + 1);
    let refused = config.validate().expect_err("refused");
    assert!(
        refused.to_string().contains("node.wire_version"),
        "{refused}"
    );
    config.node.wire_version = Some(MIN_WIRE_VERSION);
    config.validate().expect("the oldest it reads");
    assert_eq!(config.node.writes_wire(), MIN_WIRE_VERSION);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_pinned_to_the_oldest_version_and_members_writing_the_newest_decide_together() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut nodes = Vec::new();
    for (index, mut config) in consortium(dir.path()).into_iter().enumerate() {
        if index % 2 == 0 {
            config.node.wire_version = Some(MIN_WIRE_VERSION);
        }
        nodes.push(NodeHandle::start(config, StartOptions::default()).expect("start"));
    }
    let key = Key::new("points/alice").expect("key");
    let written = tokio::time::timeout(
        Duration::from_secs(120),
        nodes[1].set(key.clone(), Value::data("10").expect("value")),
    )
    .await
    .expect("commits within the deadline")
    .expect("commits");
    for node in &nodes {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            // Each member may hold its own certificate of the decision (another quorum of
            // signers): the decision is the view and the value.
            let held = node.get(key.clone()).await.expect("get");
            if held.is_some_and(|c| (c.view, &c.value) == (written.view, &written.value)) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "a member never learnt it"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

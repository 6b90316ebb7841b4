//! The node runs the program the simulator checks: a real member's recorded inputs (messages
//! with their arrival order, proposals, ticks with their times, link readiness, peers coming and
//! going), replayed into a fresh replica with the same key by the simulator's replay driver, give
//! the messages the member sent, byte for byte. If the node's runtime ever decides something on
//! its own again (when to push, whom to relay to, when to re-send evidence), this fails.

use beaufort_core::types::{Key, Value};
use beaufort_core::wire::{decode, SyncMessage};
use beaufort_node::config::{init_local, Config, InitOptions};
use beaufort_node::{fresh_replica, NodeHandle, StartOptions};
use beaufort_sim::conformance::replay_inputs;
use std::time::Duration;

#[test]
fn a_recorded_member_replays_to_the_same_messages_byte_for_byte() {
    let sent = record_and_replay(None);
    assert!(!sent.iter().any(carries_pieces), "single shares by default");
}

/// With `aggregate_wait_ms` in the network section the node sends votes as pieces on the key's
/// tree, and its replay, built from the same configuration, does the same.
#[test]
fn a_member_sending_pieces_replays_to_the_same_messages_byte_for_byte() {
    let sent = record_and_replay(Some(100));
    assert!(
        sent.iter().any(carries_pieces),
        "the network's wait makes votes travel as pieces"
    );
}

fn carries_pieces(message: &SyncMessage) -> bool {
    matches!(message, SyncMessage::Updates { updates, .. } if updates.iter().any(|u| !u.pieces.is_empty()))
}

/// Runs a four-member consortium with member 0 recording, writes at every member (two racing
/// for one key), replays member 0's inputs into a fresh replica built from its configuration,
/// checks the replay sent the same bytes, and returns what member 0 sent.
fn record_and_replay(aggregate_wait_ms: Option<u64>) -> Vec<SyncMessage> {
    let runtime = tokio::runtime::Runtime::new().expect("tokio");
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let members = 4;
        let consortium = init_local(
            dir.path(),
            &InitOptions {
                members,
                name: "conformance".into(),
                p2p_base_port: 0,
                api_base_port: 0,
                write_once_prefixes: vec![],
                neighbours: beaufort_node::config::DEFAULT_NEIGHBOURS,
                aggregate_wait_ms,
            },
        )
        .expect("init");
        let configs: Vec<Config> = consortium
            .config_files
            .iter()
            .map(|path| Config::load(path).expect("config"))
            .collect();
        let nodes: Vec<NodeHandle> = configs
            .iter()
            .map(|config| {
                NodeHandle::start(
                    config.clone(),
                    StartOptions {
                        latency: Duration::ZERO,
                        record: true,
                    },
                )
                .expect("start")
            })
            .collect();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        for node in &nodes {
            while node.status().await.expect("status").neighbours.len() < members - 1 {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "members never connected"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }

        // Writes at every member, two of them racing for one key: votes, relays, a split
        // round perhaps, and decisions all pass through member 0.
        let mut writes = Vec::new();
        for (m, node) in nodes.iter().enumerate() {
            for i in 0..5 {
                let key = Key::new(format!("conformance/{m}/{i}")).expect("key");
                let node = node.clone();
                writes.push(tokio::spawn(async move {
                    node.set(key, Value::data(b"1".to_vec()).expect("value"))
                        .await
                }));
            }
        }
        let race = Key::new("conformance/race").expect("key");
        for (m, node) in nodes.iter().enumerate().take(2) {
            let (node, race) = (node.clone(), race.clone());
            writes.push(tokio::spawn(async move {
                node.set(
                    race,
                    Value::data(format!("{m}").into_bytes()).expect("value"),
                )
                .await
            }));
        }
        let mut committed = Vec::new();
        for write in writes {
            committed.push(write.await.expect("join").is_ok());
        }
        let (own, racers) = committed.split_at(4 * 5);
        assert!(own.iter().all(|&ok| ok), "every uncontended write commits");
        assert!(racers.contains(&true), "a racer commits");

        let recording = nodes[0]
            .recording()
            .await
            .expect("the node answers")
            .expect("member 0 records");
        assert!(!recording.truncated);
        let mut replica = fresh_replica(&configs[0]).expect("replica");
        let replayed = replay_inputs(&mut replica, recording.inputs.clone()).expect("replay");
        assert_eq!(
            replayed.len(),
            recording.sent.len(),
            "as many messages replayed as were sent"
        );
        for (i, (replayed, sent)) in replayed.iter().zip(&recording.sent).enumerate() {
            assert!(
                replayed == sent,
                "message {i} differs from what the node sent"
            );
        }

        // The node really runs the relay trees and the core's anti-entropy: it sent both.
        let kinds: Vec<SyncMessage> = recording
            .sent
            .iter()
            .map(|(_, bytes)| decode(bytes, members).expect("decodes"))
            .collect();
        assert!(kinds
            .iter()
            .any(|m| matches!(m, SyncMessage::Routes { .. })));
        assert!(kinds
            .iter()
            .any(|m| matches!(m, SyncMessage::MerkleRoot { .. })));
        assert!(kinds
            .iter()
            .any(|m| matches!(m, SyncMessage::Updates { .. })));
        kinds
    })
}

//! The peer manager over real libp2p on loopback: peer exchange finds members whose addresses a
//! member was not configured with, and re-wiring replaces neighbours. Waits on events with an
//! overall deadline only.

mod common;

use beaufort_net::{MemberPeer, NetConfig, NetEvent, Network};
use common::{address, free_port, DEADLINE};
use libp2p::identity;
use std::collections::BTreeSet;
use std::time::Duration;
use tokio::sync::mpsc;

/// Starts member `me`, knowing the addresses of the members in `knows`, keeping `neighbours`.
fn start(
    me: usize,
    keys: &[identity::Keypair],
    ports: &[u16],
    knows: &[usize],
    neighbours: usize,
) -> (Network, mpsc::Receiver<NetEvent>) {
    let members = keys
        .iter()
        .enumerate()
        .map(|(i, key)| MemberPeer {
            peer_id: key.public().to_peer_id(),
            addresses: if knows.contains(&i) || i == me {
                vec![address(ports[i])]
            } else {
                Vec::new()
            },
        })
        .collect();
    Network::start(NetConfig {
        keypair: keys[me].clone(),
        me: me as u16,
        members,
        listen: vec![address(ports[me])],
        neighbours,
        latency: Duration::ZERO,
        discovery: Vec::new(),
        namespace: "beaufort-peers-test".into(),
        mdns: false,
    })
    .expect("start network")
}

/// Waits until `peer` is up, keeping track of every member seen up meanwhile.
async fn wait_up(
    events: &mut mpsc::Receiver<NetEvent>,
    up: &mut BTreeSet<u16>,
    until: impl Fn(&BTreeSet<u16>) -> bool,
) {
    tokio::time::timeout(DEADLINE, async {
        while !until(up) {
            match events.recv().await.expect("the network stopped") {
                NetEvent::PeerUp(p) => {
                    up.insert(p);
                }
                NetEvent::PeerDown(p) => {
                    up.remove(&p);
                }
                NetEvent::Message { .. } => {}
            }
        }
    })
    .await
    .expect("timed out waiting for peers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_finds_an_unknown_address_through_a_neighbours_peer_list() {
    let keys: Vec<identity::Keypair> = (0..3)
        .map(|_| identity::Keypair::generate_ed25519())
        .collect();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    // Members 1 and 2 never dial; member 0 knows only member 1's address.
    let (_b, _b_events) = start(1, &keys, &ports, &[0, 2], 0);
    let (_c, _c_events) = start(2, &keys, &ports, &[], 0);
    let (_a, mut events) = start(0, &keys, &ports, &[1], 2);
    let mut up = BTreeSet::new();
    wait_up(&mut events, &mut up, |up| up.contains(&2)).await;
    assert!(up.contains(&1), "reached member 2 through member 1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewiring_replaces_half_of_the_neighbours_with_other_members() {
    let keys: Vec<identity::Keypair> = (0..5)
        .map(|_| identity::Keypair::generate_ed25519())
        .collect();
    let ports: Vec<u16> = (0..5).map(|_| free_port()).collect();
    let all: Vec<usize> = (0..5).collect();
    let others: Vec<_> = (1..5).map(|i| start(i, &keys, &ports, &all, 0)).collect();
    let (a, mut events) = start(0, &keys, &ports, &all, 2);
    let mut up = BTreeSet::new();
    wait_up(&mut events, &mut up, |up| up.len() == 2).await;
    let first = up.clone();
    a.rewire();
    wait_up(&mut events, &mut up, |up| {
        up.iter().any(|p| !first.contains(p))
    })
    .await;
    let new: Vec<_> = up.difference(&first).collect();
    assert_eq!(
        new.len(),
        1,
        "one of two neighbours is replaced: before {first:?}, now {up:?}"
    );
    drop(others);
}

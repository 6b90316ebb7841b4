//! Real libp2p over loopback: links deliver in FIFO order, and a peer that frames batches badly is
//! treated as faulty without harm to the receiver.
//!
//! Nothing here depends on timing: every test waits for the events it expects, and the only clock
//! is an overall [`DEADLINE`] that fails the test if it is ever reached.

mod common;

use beaufort_core::wire::MAX_MESSAGE_BYTES;
use beaufort_net::{MemberPeer, NetConfig, NetEvent, Network, SYNC_PROTOCOL};
use common::{address, free_port, raw_swarm, DEADLINE};
use futures::StreamExt;
use libp2p::swarm::SwarmEvent;
use libp2p::{identity, request_response, Multiaddr};
use std::time::Duration;
use tokio::sync::mpsc;

/// How many numbered messages the ordering tests send per direction.
const COUNT: u32 = 2_000;

/// A member's network and its events.
struct Node {
    net: Network,
    events: mpsc::Receiver<NetEvent>,
}

/// Starts member `me` of a network whose members have `keys` and listen on `ports` (a port of
/// `None` is a member with no known address that does not listen).
fn start(me: u16, keys: &[identity::Keypair], ports: &[Option<u16>], latency: Duration) -> Node {
    let members = keys
        .iter()
        .zip(ports)
        .map(|(key, port)| MemberPeer {
            peer_id: key.public().to_peer_id(),
            addresses: port.map(address).into_iter().collect(),
        })
        .collect();
    let listen = ports[usize::from(me)]
        .map(address)
        .into_iter()
        .collect::<Vec<_>>();
    let config = NetConfig {
        keypair: keys[usize::from(me)].clone(),
        me,
        members,
        listen,
        neighbours: 7,
        latency,
        discovery: Vec::new(),
        namespace: "beaufort-net-test".into(),
        mdns: false,
    };
    let (net, events) = Network::start(config).expect("start network");
    Node { net, events }
}

/// The next event, failing the test at the deadline or if the network stopped.
async fn next_event(events: &mut mpsc::Receiver<NetEvent>) -> NetEvent {
    tokio::time::timeout(DEADLINE, events.recv())
        .await
        .expect("timed out waiting for a network event")
        .expect("the network stopped")
}

async fn wait_peer_up(node: &mut Node, peer: u16) {
    loop {
        match next_event(&mut node.events).await {
            NetEvent::PeerUp(p) if p == peer => return,
            NetEvent::Message { from, .. } => panic!("message from {from} before peer up"),
            _ => {}
        }
    }
}

/// Message sizes vary from a few bytes to hundreds of kilobytes, so batches hold anything from
/// one message to hundreds; the total stays well below a link's queue bound.
fn size(i: u32) -> usize {
    if i % 500 == 250 {
        200_000
    } else {
        4 + (i as usize * 7_919) % 3_000
    }
}

/// Message `i`: its number, then a pattern that depends on it (so a mixed-up or cut message shows).
fn message(i: u32, len: usize) -> Vec<u8> {
    let mut m = i.to_be_bytes().to_vec();
    m.extend((4..len).map(|j| (j as u32).wrapping_add(i) as u8));
    m
}

/// Reads `count` messages from `from` and checks they are exactly 0..count, in order, intact.
async fn expect_in_order(events: &mut mpsc::Receiver<NetEvent>, from: u16, count: u32) {
    let mut next = 0u32;
    while next < count {
        match next_event(events).await {
            NetEvent::Message { from: f, bytes } => {
                assert_eq!(f, from, "message from an unexpected member");
                let number = u32::from_be_bytes(bytes[..4].try_into().expect("4 bytes"));
                assert_eq!(number, next, "message {number} arrived when {next} was due");
                assert!(
                    bytes == message(next, size(next)),
                    "message {next} corrupted"
                );
                next += 1;
            }
            NetEvent::PeerDown(p) => panic!("member {p} disconnected during the test"),
            NetEvent::PeerUp(_) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_messages_arrive_in_the_order_sent() {
    let keys: Vec<_> = (0..2)
        .map(|_| identity::Keypair::generate_ed25519())
        .collect();
    let ports = [Some(free_port()), Some(free_port())];
    let mut a = start(0, &keys, &ports, Duration::ZERO);
    let mut b = start(1, &keys, &ports, Duration::ZERO);
    wait_peer_up(&mut a, 1).await;

    for i in 0..COUNT {
        a.net.send(1, message(i, size(i)));
    }
    expect_in_order(&mut b.events, 0, COUNT).await;
    // Every message left in some batch, so nothing waits on the link any more and the runtime
    // may push again.
    assert!(a.net.link_ready(1));

    let (sent, received) = (a.net.stats(), b.net.stats());
    assert_eq!(sent.messages_sent.get(), u64::from(COUNT));
    assert_eq!(sent.messages_dropped.get(), 0);
    assert_eq!(received.messages_received.get(), u64::from(COUNT));
    // Batching: the bytes on the wire are the messages plus at most 12 bytes of framing each.
    let payload: u64 = (0..COUNT).map(|i| size(i) as u64).sum();
    assert_eq!(sent.bytes_sent.get(), received.bytes_received.get());
    assert!(sent.bytes_sent.get() > payload);
    assert!(sent.bytes_sent.get() <= payload + 12 * u64::from(COUNT));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_directions_through_the_delay_layer_stay_in_order() {
    let keys: Vec<_> = (0..2)
        .map(|_| identity::Keypair::generate_ed25519())
        .collect();
    let ports = [Some(free_port()), Some(free_port())];
    let latency = Duration::from_millis(30);
    let mut a = start(0, &keys, &ports, latency);
    let mut b = start(1, &keys, &ports, latency);
    wait_peer_up(&mut a, 1).await;
    wait_peer_up(&mut b, 0).await;

    let (a_net, b_net) = (a.net.clone(), b.net.clone());
    let a_reads = tokio::spawn(async move { expect_in_order(&mut a.events, 1, COUNT).await });
    let b_reads = tokio::spawn(async move { expect_in_order(&mut b.events, 0, COUNT).await });
    for i in 0..COUNT {
        a_net.send(1, message(i, size(i)));
        b_net.send(0, message(i, size(i)));
    }
    a_reads.await.expect("a's reader");
    b_reads.await.expect("b's reader");
    assert_eq!(a_net.stats().messages_dropped.get(), 0);
    assert_eq!(b_net.stats().messages_dropped.get(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_maximal_message_travels_in_order_between_small_ones() {
    let keys: Vec<_> = (0..2)
        .map(|_| identity::Keypair::generate_ed25519())
        .collect();
    let ports = [Some(free_port()), Some(free_port())];
    let mut a = start(0, &keys, &ports, Duration::ZERO);
    let mut b = start(1, &keys, &ports, Duration::ZERO);
    wait_peer_up(&mut a, 1).await;

    let sizes = [10, MAX_MESSAGE_BYTES, 10, 10, MAX_MESSAGE_BYTES / 2, 10];
    for (i, &len) in sizes.iter().enumerate() {
        a.net.send(1, message(i as u32, len));
    }
    let mut next = 0;
    while next < sizes.len() {
        match next_event(&mut b.events).await {
            NetEvent::Message { bytes, .. } => {
                assert!(bytes == message(next as u32, sizes[next]), "message {next}");
                next += 1;
            }
            NetEvent::PeerDown(p) => panic!("member {p} disconnected during the test"),
            NetEvent::PeerUp(_) => {}
        }
    }
    assert_eq!(a.net.stats().messages_dropped.get(), 0);
}

// ---- A raw peer that writes arbitrary bytes as `/beaufort/sync/2` requests. ----

/// Connects to `target` as the member with `key` and sends `requests` one after the other (each
/// after the previous one was answered or failed), then keeps the connection until aborted.
async fn raw_peer(key: identity::Keypair, target: Multiaddr, requests: Vec<Vec<u8>>) {
    let mut swarm = raw_swarm(key, SYNC_PROTOCOL);
    swarm.dial(target).expect("dial the network under test");
    let peer = loop {
        if let SwarmEvent::ConnectionEstablished { peer_id, .. } = swarm.select_next_some().await {
            break peer_id;
        }
    };
    for request in requests {
        let id = swarm.behaviour_mut().send_request(&peer, request);
        loop {
            match swarm.select_next_some().await {
                SwarmEvent::Behaviour(request_response::Event::Message {
                    message: request_response::Message::Response { request_id, .. },
                    ..
                })
                | SwarmEvent::Behaviour(request_response::Event::OutboundFailure {
                    request_id,
                    ..
                }) if request_id == id => break,
                _ => {}
            }
        }
    }
    loop {
        swarm.select_next_some().await;
    }
}

fn prefix(n: u32) -> [u8; 4] {
    n.to_be_bytes()
}

/// A frame around `body`, as the sync protocol writes it.
fn frame(body: &[u8]) -> Vec<u8> {
    let mut f = prefix(body.len() as u32).to_vec();
    f.extend_from_slice(body);
    f
}

/// A well-formed batch body.
fn batch(messages: &[&[u8]]) -> Vec<u8> {
    let mut body = prefix(messages.len() as u32).to_vec();
    for m in messages {
        body.extend_from_slice(&prefix(m.len() as u32));
        body.extend_from_slice(m);
    }
    body
}

/// Sends a valid batch, a truncated frame (refused quietly: a dying connection looks the same), a
/// second valid batch, then `hostile`. The network must deliver exactly the two valid messages,
/// then ban the peer (which disconnects it) without delivering anything of `hostile`.
async fn hostile_case(hostile: Vec<u8>) {
    let keys: Vec<_> = (0..2)
        .map(|_| identity::Keypair::generate_ed25519())
        .collect();
    let port = free_port();
    let mut node = start(0, &keys, &[Some(port), None], Duration::ZERO);
    let mut truncated = frame(&batch(&[b"never delivered"]));
    truncated.truncate(truncated.len() - 3);
    let requests = vec![
        frame(&batch(&[b"first"])),
        truncated,
        frame(&batch(&[b"second"])),
        hostile,
    ];
    let raw = tokio::spawn(raw_peer(keys[1].clone(), address(port), requests));

    let mut delivered = Vec::new();
    loop {
        match next_event(&mut node.events).await {
            NetEvent::PeerUp(1) => {}
            NetEvent::Message { from, bytes } => {
                assert_eq!(from, 1);
                delivered.push(bytes);
            }
            NetEvent::PeerDown(1) => break,
            other => panic!("unexpected event {other:?}"),
        }
    }
    raw.abort();
    assert_eq!(delivered, vec![b"first".to_vec(), b"second".to_vec()]);
    let stats = node.net.stats();
    assert_eq!(stats.peers_banned.get(), 1);
    assert_eq!(stats.messages_received.get(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_batch_bans_the_sender() {
    hostile_case(frame(b"\xde\xad\xbe\xef this is not a batch at all")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_announcing_more_messages_than_it_holds_bans_the_sender() {
    let mut body = batch(&[b"one", b"two"]);
    body[..4].copy_from_slice(&prefix(3));
    hostile_case(frame(&body)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_after_the_last_message_ban_the_sender() {
    let mut body = batch(&[b"one"]);
    body.extend_from_slice(b"extra");
    hostile_case(frame(&body)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_batch_or_empty_message_bans_the_sender() {
    hostile_case(frame(&batch(&[]))).await;
    hostile_case(frame(&batch(&[b"ok", b""]))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_announced_beyond_the_limit_bans_the_sender() {
    let mut body = prefix(1).to_vec();
    body.extend_from_slice(&prefix(MAX_MESSAGE_BYTES as u32 + 1));
    body.extend_from_slice(&[0u8; 64]);
    hostile_case(frame(&body)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frame_bans_the_sender_before_its_body_is_read() {
    // Announces 4 GiB and sends a little: refused on the length alone.
    let mut f = prefix(u32::MAX).to_vec();
    f.extend_from_slice(&[0u8; 1024]);
    hostile_case(f).await;
    // One byte over the limit of a batch (a maximal message, its prefix and the count).
    hostile_case(prefix(MAX_MESSAGE_BYTES as u32 + 9).to_vec()).await;
}

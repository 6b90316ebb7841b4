//! Strangers stay out: a peer whose identity is not in the network file (a fresh one, or a
//! removed member's old one) gets its connection closed at the handshake. Neither its sync nor
//! its peer-exchange requests are answered, and nothing of it reaches the runtime; the very same
//! requests with a member's identity are answered (the control). Members do not serve discovery
//! (that is the discovery server's job), so there is no discovery request to refuse here.
//!
//! Nothing here depends on timing: the stranger's attempt ends when its connection does, and a
//! member that connects afterwards shows that nothing of the stranger was queued before it (the
//! runtime's event channel is FIFO). The only clock is the overall [`DEADLINE`].

mod common;

use beaufort_net::{MemberPeer, NetConfig, NetEvent, Network, SYNC_PROTOCOL};
use common::{address, free_port, raw_swarm, DEADLINE};
use futures::StreamExt;
use libp2p::swarm::SwarmEvent;
use libp2p::{identity, request_response, Multiaddr, StreamProtocol};
use std::time::Duration;

/// Peer exchange (`crates/net/src/peers.rs`), the protocol a member serves besides sync.
const PEERS_PROTOCOL: StreamProtocol = StreamProtocol::new("/beaufort/peers/1");
const PROTOCOLS: [StreamProtocol; 2] = [SYNC_PROTOCOL, PEERS_PROTOCOL];

/// Member `me` of a network whose members have `keys` (every member listens on its port).
fn start(
    me: u16,
    keys: &[identity::Keypair],
    ports: &[u16],
) -> (Network, tokio::sync::mpsc::Receiver<NetEvent>) {
    let members = keys
        .iter()
        .zip(ports)
        .map(|(key, &port)| MemberPeer {
            peer_id: key.public().to_peer_id(),
            addresses: vec![address(port)],
        })
        .collect();
    Network::start(NetConfig {
        keypair: keys[usize::from(me)].clone(),
        me,
        members,
        listen: vec![address(ports[usize::from(me)])],
        neighbours: 7,
        latency: Duration::ZERO,
        discovery: Vec::new(),
        namespace: "beaufort-strangers-test".into(),
        mdns: false,
    })
    .expect("start network")
}

/// How an attempt ended.
#[derive(Debug, PartialEq, Eq)]
enum Attempt {
    /// The handshake completed and the member then closed the connection, before any request
    /// was answered.
    ShutAfterHandshake,
    /// The connection failed before the handshake completed on our side (the member let the
    /// noise handshake finish only to refuse the identity it revealed).
    Refused,
    /// Some request got an answer: the peer was let in.
    Answered(StreamProtocol),
}

/// Dials `target` with `key` and sends one well-formed request on `protocol` (a sync batch, or a
/// peer-exchange request); returns when the connection ends or the request is answered.
async fn attempt(key: identity::Keypair, target: Multiaddr, protocol: StreamProtocol) -> Attempt {
    let mut swarm = raw_swarm(key, protocol.clone());
    swarm.dial(target.clone()).expect("dial the member");
    // One well-formed batch holding one message, as a member would frame it.
    let mut batch = 1u32.to_be_bytes().to_vec();
    batch.extend_from_slice(&5u32.to_be_bytes());
    batch.extend_from_slice(b"hello");
    let mut framed = (batch.len() as u32).to_be_bytes().to_vec();
    framed.extend_from_slice(&batch);
    let mut asked = None;
    let mut established = false;
    loop {
        match swarm.select_next_some().await {
            SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                established = true;
                let body = if protocol == SYNC_PROTOCOL {
                    framed.clone()
                } else {
                    0u32.to_be_bytes().to_vec()
                };
                asked = Some(swarm.behaviour_mut().send_request(&peer_id, body));
            }
            SwarmEvent::Behaviour(request_response::Event::Message {
                message: request_response::Message::Response { request_id, .. },
                ..
            }) => {
                assert_eq!(asked, Some(request_id), "an answer to the request we sent");
                return Attempt::Answered(protocol);
            }
            SwarmEvent::ConnectionClosed { .. } => return Attempt::ShutAfterHandshake,
            SwarmEvent::OutgoingConnectionError { error, .. } => {
                // Connection refused: the member is not listening yet; try again.
                if !established && error.to_string().contains("Connection refused") {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    swarm.dial(target.clone()).expect("dial the member");
                    continue;
                }
                eprintln!("outgoing connection error: {error}");
                return Attempt::Refused;
            }
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_identity_and_a_removed_members_old_one_are_shut_out() {
    let removed = identity::Keypair::generate_ed25519();
    // Member 1's identity was replaced: `removed` was its key before.
    let keys: Vec<_> = (0..2)
        .map(|_| identity::Keypair::generate_ed25519())
        .collect();
    let ports = [free_port(), free_port()];
    let (net, mut events) = start(0, &keys, &ports);
    for key in [identity::Keypair::generate_ed25519(), removed] {
        for protocol in PROTOCOLS {
            let ended =
                tokio::time::timeout(DEADLINE, attempt(key.clone(), address(ports[0]), protocol))
                    .await
                    .expect("the stranger's connection never ended");
            assert!(
                matches!(ended, Attempt::ShutAfterHandshake | Attempt::Refused),
                "{ended:?}"
            );
        }
    }

    // A real member connects and sends one message: it is the first thing the runtime hears.
    let (member, _member_events) = start(1, &keys, &ports);
    let first = tokio::time::timeout(DEADLINE, events.recv())
        .await
        .expect("the member never connected")
        .expect("the network stopped");
    assert!(
        matches!(first, NetEvent::PeerUp(1)),
        "the first event is the member's, not a stranger's: {first:?}"
    );
    member.send(0, b"from a member".to_vec());
    loop {
        let event = tokio::time::timeout(DEADLINE, events.recv())
            .await
            .expect("the member's message never arrived")
            .expect("the network stopped");
        match event {
            NetEvent::Message { from, bytes } => {
                assert_eq!((from, bytes.as_slice()), (1, &b"from a member"[..]));
                break;
            }
            NetEvent::PeerUp(1) => {}
            other => panic!("unexpected event {other:?}"),
        }
    }
    assert_eq!(
        net.stats().messages_received.get(),
        1,
        "only the member's message"
    );
}

/// The control: the very same attempts with a member's identity are let in and answered, and
/// the sync batch's message reaches the runtime, so the test above would see a stranger that got
/// through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_attempt_with_a_members_identity_is_answered() {
    let keys: Vec<_> = (0..2)
        .map(|_| identity::Keypair::generate_ed25519())
        .collect();
    let ports = [free_port(), free_port()];
    let (net, mut events) = start(0, &keys, &ports);
    for protocol in PROTOCOLS {
        let answered = tokio::time::timeout(
            DEADLINE,
            attempt(keys[1].clone(), address(ports[0]), protocol.clone()),
        )
        .await
        .expect("no answer");
        assert_eq!(answered, Attempt::Answered(protocol));
    }
    loop {
        let event = tokio::time::timeout(DEADLINE, events.recv())
            .await
            .expect("the message never arrived")
            .expect("the network stopped");
        if let NetEvent::Message { from, bytes } = event {
            assert_eq!((from, bytes.as_slice()), (1, &b"hello"[..]));
            break;
        }
    }
    assert_eq!(net.stats().messages_received.get(), 1);
}

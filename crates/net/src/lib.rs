//! The Beaufort P2P transport on rust-libp2p.
//!
//! Members talk over noise-encrypted TCP (and QUIC) with yamux multiplexing. The membership is an
//! allow-list: only the libp2p peer ids listed in the network configuration may connect, everyone
//! else is disconnected as soon as the handshake reveals their identity. Sync messages travel over
//! the `/beaufort/sync/2` request-response protocol, and every link (this member to one other) is
//! FIFO: a link has at most one request in flight, the messages sent meanwhile wait in a bounded
//! per-member queue, and when the acknowledgement (an empty response) comes back, everything queued
//! leaves as one batch (format in `frame`). The receiver hands a batch's messages to the runtime in
//! order before it acknowledges, so the next batch cannot overtake it. (Version 1 sent every message
//! as its own request on its own substream, and libp2p reads concurrent substreams in no fixed
//! order, so links reordered; the simulator's links are FIFO.) A batch is bounded by the core's
//! `MAX_MESSAGE_BYTES` plus framing; malformed framing marks the sender faulty, like an invalid
//! message. When a queue overflows, its oldest messages are dropped (see `queue`): the core
//! tolerates loss and repairs it by anti-entropy. The cost of this stop-and-wait scheme is that a
//! message produced while a batch is in flight waits for its acknowledgement: up to one round
//! trip on a wide-area link (a long-lived stream per link would avoid it, at more complexity).
//!
//! The peer manager dials a target set of neighbours (at least [`NetConfig::neighbours`], or all
//! other members if there are fewer), redials lost ones, and when the runtime reports a fault it
//! disconnects the peer and blocks it for an exponentially growing back-off, replacing it in the
//! target set. A member that dials us while we hold an older connection to it has restarted (or
//! lost that connection): the old connections are closed at once rather than left to time out
//! (`NetTask::close_stale`). A test-only delay layer ([`NetConfig::latency`]) holds every
//! outgoing message for a fixed time, to emulate wide-area links on loopback (the kernel here has
//! no netem).
//!
//! The network runs as its own tokio task; the node runtime talks to it through a bounded command
//! channel ([`Network`]) and receives [`NetEvent`]s on a bounded channel.

use beaufort_core::types::MemberIndex;
use beaufort_link::queue::{OutQueue, MAX_QUEUED_BYTES, MAX_QUEUED_MESSAGES};
use beaufort_link::{codec, peers};
use futures::StreamExt;
use libp2p::allow_block_list::{self, AllowedPeers, BlockedPeers};
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionId, NetworkBehaviour, SwarmEvent};
use libp2p::{
    identity, mdns, noise, ping, rendezvous, request_response, tcp, yamux, Multiaddr, PeerId,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use rand::seq::SliceRandom;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

mod discovery;
mod task;

use codec::SyncCodec;
pub use discovery::run_discovery_server;
use task::NetTask;

pub use beaufort_link::SYNC_PROTOCOL;

/// Capacity of the command and event channels between the runtime and the network task.
pub const CHANNEL_CAPACITY: usize = 4096;

/// Most messages held by the delay layer; beyond it messages are dropped (as a full link would).
const MAX_DELAYED: usize = 65_536;

/// First back-off after a fault; it doubles per repeated fault up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(5);
/// Longest back-off.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// How often the peer manager checks its neighbours.
const MAINTAIN_EVERY: Duration = Duration::from_millis(500);
/// Most addresses remembered per member (discovered ones included).
const MAX_ADDRESSES: usize = 16;
/// Every this many maintenance rounds, discovery servers are asked again for missing members.
const DISCOVER_EVERY_ROUNDS: u32 = 4;
/// How long a disconnected member's queue is kept for a reconnection; after that its messages
/// are stale (the runtime re-syncs a reconnected member by anti-entropy anyway) and are dropped.
const QUEUE_LINGER: Duration = Duration::from_secs(10);
/// A connection at least this old is stale when the member it leads to dials us anew (see
/// `NetTask::close_stale`). Younger ones may be the other half of a simultaneous dial, which
/// completes within a handshake of ours; a misjudged young one would only cost a redial.
const STALE_AFTER: Duration = Duration::from_secs(2);

/// One member as the network sees it.
#[derive(Clone, Debug)]
pub struct MemberPeer {
    /// Its libp2p identity (bound to its BLS key by the network configuration).
    pub peer_id: PeerId,
    /// Where it listens.
    pub addresses: Vec<Multiaddr>,
}

/// How to run the network.
pub struct NetConfig {
    /// This member's libp2p identity key.
    pub keypair: identity::Keypair,
    /// This member's index.
    pub me: MemberIndex,
    /// Every member in index order (including this one).
    pub members: Vec<MemberPeer>,
    /// Addresses to listen on.
    pub listen: Vec<Multiaddr>,
    /// Minimum number of neighbours to keep (all other members if there are fewer).
    pub neighbours: usize,
    /// Test-only delay added to every outgoing message (zero in production). It holds messages
    /// before they enter their link's queue, in FIFO order, so it delays messages but not the
    /// link's acknowledgements: it emulates one-way latency, not a long round trip per batch.
    pub latency: Duration,
    /// Discovery servers (libp2p rendezvous), each with its peer id. Trusted only for liveness:
    /// what they return are peer records signed by the members themselves, and a connection is
    /// still accepted only from the member's allow-listed identity.
    pub discovery: Vec<(PeerId, Multiaddr)>,
    /// The namespace members register under at the discovery servers (one per network).
    pub namespace: String,
    /// Find members on the local network with mDNS.
    pub mdns: bool,
}

/// What the network tells the runtime.
#[derive(Debug)]
pub enum NetEvent {
    /// A connection to a member is up.
    PeerUp(MemberIndex),
    /// The last connection to a member closed.
    PeerDown(MemberIndex),
    /// A sync message arrived (still encoded; the runtime decodes and bounds-checks it).
    Message {
        /// The sender.
        from: MemberIndex,
        /// The encoded message.
        bytes: Vec<u8>,
    },
}

/// Counters exported as metrics (prometheus-client handles: cheap to clone, shared).
#[derive(Debug, Default)]
pub struct NetStats {
    /// Bytes of sync requests sent, as framed on the wire (batch framing included; noise, yamux
    /// and TCP overhead not), to see what the protocol costs.
    pub bytes_sent: Counter,
    /// Bytes of sync requests received, framed as for [`NetStats::bytes_sent`].
    pub bytes_received: Counter,
    /// Sync messages sent (each message of a batch counts once), counted when their batch leaves.
    pub messages_sent: Counter,
    /// Sync messages received and handed to the runtime.
    pub messages_received: Counter,
    /// Messages dropped, to see how much anti-entropy has to repair: a channel or queue was full
    /// (the oldest go first), the peer was not connected or isolated, or a batch was not
    /// acknowledged (timeout, connection closed; it may or may not have arrived).
    pub messages_dropped: Counter,
    /// Members currently connected.
    pub connected: Gauge,
    /// Peers disconnected and backed off because of a fault.
    pub peers_banned: Counter,
    /// Times the neighbours were re-wired because own writes made no progress.
    pub rewirings: Counter,
    /// Connections closed because the member they lead to dialled anew (it restarted or lost
    /// them), so a restarted member is not left talking into a dead connection.
    pub stale_connections_closed: Counter,
}

/// Why the network could not start.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The transport could not be built.
    #[error("building the libp2p transport: {0}")]
    Transport(String),
    /// A listen address was refused.
    #[error("listening on {address}: {error}")]
    Listen {
        /// The address.
        address: Multiaddr,
        /// Why.
        error: String,
    },
    /// The discovery namespace is not acceptable to rendezvous.
    #[error("discovery namespace {0:?} is too long")]
    Namespace(String),
    /// The member index is not in the member list.
    #[error("member {0} is not in the member list")]
    UnknownMember(MemberIndex),
    /// The network task has stopped.
    #[error("the network has stopped")]
    Stopped,
}

enum Command {
    Send(MemberIndex, Vec<u8>),
    Fault(MemberIndex),
    Isolate(BTreeSet<MemberIndex>),
    Rewire,
}

/// The runtime's handle on the network task. Dropping every clone stops the task.
#[derive(Clone)]
pub struct Network {
    commands: mpsc::Sender<Command>,
    stats: Arc<NetStats>,
    waiting: Arc<Vec<AtomicBool>>,
}

impl Network {
    /// Starts the network task. Returns the handle and the event stream.
    pub fn start(config: NetConfig) -> Result<(Network, mpsc::Receiver<NetEvent>), NetError> {
        if usize::from(config.me) >= config.members.len() {
            return Err(NetError::UnknownMember(config.me));
        }
        let namespace = rendezvous::Namespace::new(config.namespace.clone())
            .map_err(|_| NetError::Namespace(config.namespace.clone()))?;
        let mut swarm = build_swarm(config.keypair.clone(), config.mdns)?;
        for address in &config.listen {
            swarm
                .listen_on(address.clone())
                .map_err(|e| NetError::Listen {
                    address: address.clone(),
                    error: describe(&e),
                })?;
        }
        let mut index_of = HashMap::new();
        for (i, member) in config.members.iter().enumerate() {
            if i != usize::from(config.me) {
                swarm.behaviour_mut().allow.allow_peer(member.peer_id);
                if let Ok(i) = MemberIndex::try_from(i) {
                    index_of.insert(member.peer_id, i);
                }
            }
        }
        for (server, _) in &config.discovery {
            swarm.behaviour_mut().allow.allow_peer(*server);
        }
        let (commands, command_rx) = mpsc::channel(CHANNEL_CAPACITY);
        let (event_tx, events) = mpsc::channel(CHANNEL_CAPACITY);
        let stats = Arc::new(NetStats::default());
        let waiting: Arc<Vec<AtomicBool>> = Arc::new(
            (0..config.members.len())
                .map(|_| AtomicBool::new(false))
                .collect(),
        );
        let mut others: Vec<MemberIndex> = index_of.values().copied().collect();
        others.sort_unstable();
        others.shuffle(&mut rand::thread_rng());
        let task = NetTask {
            swarm,
            members: config.members,
            index_of,
            targets: others.iter().copied().take(config.neighbours).collect(),
            spare: others.into_iter().skip(config.neighbours).collect(),
            connected: BTreeSet::new(),
            isolated: BTreeSet::new(),
            banned: HashMap::new(),
            latency: config.latency,
            delayed: VecDeque::new(),
            links: HashMap::new(),
            connections: HashMap::new(),
            discovery: config.discovery,
            namespace,
            registered: BTreeSet::new(),
            rounds: 0,
            events: event_tx,
            stats: stats.clone(),
            waiting: waiting.clone(),
        };
        tokio::spawn(task.run(command_rx));
        Ok((
            Network {
                commands,
                stats,
                waiting,
            },
            events,
        ))
    }

    /// Sends an encoded sync message to a member; messages to one member arrive in the order sent.
    /// Never waits: if the command channel is full the message is dropped, and if the member's link
    /// queue overflows its oldest messages are; both are counted (anti-entropy repairs what is
    /// lost).
    pub fn send(&self, to: MemberIndex, bytes: Vec<u8>) {
        if self.commands.try_send(Command::Send(to, bytes)).is_err() {
            self.stats.messages_dropped.inc();
        }
    }

    /// Whether nothing waits on the link to `to` behind the batch in flight. While something
    /// does, the runtime holds its push to that member back: what changes meanwhile then leaves
    /// as one up-to-date delta when the link frees up, instead of stale deltas queued behind each
    /// other.
    pub fn link_ready(&self, to: MemberIndex) -> bool {
        !self
            .waiting
            .get(usize::from(to))
            .is_some_and(|flag| flag.load(Ordering::Relaxed))
    }

    /// Reports a member that sent invalid data: it is disconnected and backed off.
    pub fn fault(&self, peer: MemberIndex) {
        if self.commands.try_send(Command::Fault(peer)).is_err() {
            self.stats.messages_dropped.inc();
        }
    }

    /// Replaces half of the neighbours (at least one) with other members, chosen at random. The
    /// runtime calls this when its own writes stop making progress: if the neighbours it has are
    /// withholding votes (an eclipse), new ones give it a path to the honest members.
    pub fn rewire(&self) {
        if self.commands.try_send(Command::Rewire).is_err() {
            self.stats.messages_dropped.inc();
        }
    }

    /// Test-only: from now on, silently drops every sync message to or from the given members
    /// (an empty set heals). Connections stay up, so this emulates a network partition on
    /// loopback, where processes cannot be partitioned by the kernel here. Only reachable through
    /// the node's test controls, which are off by default.
    pub async fn isolate(&self, members: BTreeSet<MemberIndex>) -> Result<(), NetError> {
        self.commands
            .send(Command::Isolate(members))
            .await
            .map_err(|_| NetError::Stopped)
    }

    /// The network's counters.
    pub fn stats(&self) -> &Arc<NetStats> {
        &self.stats
    }
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    allow: allow_block_list::Behaviour<AllowedPeers>,
    block: allow_block_list::Behaviour<BlockedPeers>,
    sync: request_response::Behaviour<SyncCodec>,
    peers: request_response::Behaviour<peers::PeersCodec>,
    ping: ping::Behaviour,
    rendezvous: rendezvous::client::Behaviour,
    mdns: Toggle<mdns::tokio::Behaviour>,
}

fn build_swarm(
    keypair: identity::Keypair,
    use_mdns: bool,
) -> Result<libp2p::Swarm<Behaviour>, NetError> {
    let transport = |e: &dyn std::fmt::Display| NetError::Transport(e.to_string());
    Ok(libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| transport(&e))?
        .with_quic()
        .with_other_transport(websocket_transport)
        .map_err(|e| transport(&e))?
        .with_behaviour(|key| {
            let mdns = if use_mdns {
                Some(mdns::tokio::Behaviour::new(
                    mdns::Config::default(),
                    key.public().to_peer_id(),
                )?)
            } else {
                None
            };
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(Behaviour {
                allow: allow_block_list::Behaviour::default(),
                block: allow_block_list::Behaviour::default(),
                sync: beaufort_link::sync_behaviour(),
                peers: beaufort_link::peers_behaviour(request_response::ProtocolSupport::Full),
                ping: ping::Behaviour::default(),
                rendezvous: rendezvous::client::Behaviour::new(key.clone()),
                mdns: Toggle::from(mdns),
            })
        })
        .map_err(|e| transport(&e))?
        .with_swarm_config(|c| {
            // Every batch opens a fresh substream; lazy negotiation sends the request
            // together with the protocol proposal instead of waiting a round trip for the
            // listener's confirmation (we propose exactly one protocol per substream).
            c.with_idle_connection_timeout(Duration::from_secs(3600))
                .with_substream_upgrade_protocol_override(libp2p::core::upgrade::Version::V1Lazy)
        })
        .build())
}

/// WebSocket over TCP, noise-authenticated and yamux-multiplexed like the TCP transport: what a
/// browser member can dial (a page cannot open TCP or QUIC). It carries `/ws` listen addresses
/// only, so a member without one in its configuration never opens it.
fn websocket_transport(
    key: &identity::Keypair,
) -> Result<
    libp2p::core::transport::Boxed<(PeerId, libp2p::core::muxing::StreamMuxerBox)>,
    Box<dyn std::error::Error + Send + Sync>,
> {
    use libp2p::Transport as _;
    let tcp = tcp::tokio::Transport::new(tcp::Config::default().nodelay(true));
    Ok(libp2p::websocket::Config::new(tcp)
        .upgrade(libp2p::core::upgrade::Version::V1Lazy)
        .authenticate(noise::Config::new(key)?)
        .multiplex(yamux::Config::default())
        .map(|(peer, muxer), _| (peer, libp2p::core::muxing::StreamMuxerBox::new(muxer)))
        .boxed())
}

/// An error with its chain of causes. libp2p's transport errors often display as an empty string
/// and keep the reason (say, "address in use") in their source or debug form.
fn describe(error: &dyn std::error::Error) -> String {
    let mut parts = vec![error.to_string()];
    let mut source = error.source();
    while let Some(cause) = source {
        parts.push(cause.to_string());
        source = cause.source();
    }
    parts.retain(|p| !p.is_empty());
    if parts.is_empty() {
        format!("{error:?}")
    } else {
        parts.join(": ")
    }
}

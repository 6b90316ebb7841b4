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

use async_trait::async_trait;
use beaufort_core::types::MemberIndex;
use frame::{Batch, FrameError, MAX_BATCH_BYTES};
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::allow_block_list::{self, AllowedPeers, BlockedPeers};
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionId, NetworkBehaviour, SwarmEvent};
use libp2p::{
    identity, mdns, noise, ping, rendezvous, request_response, tcp, yamux, Multiaddr, PeerId,
    StreamProtocol,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use queue::{OutQueue, MAX_QUEUED_BYTES, MAX_QUEUED_MESSAGES};
use rand::seq::SliceRandom;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

mod frame;
mod peers;
mod queue;

/// The sync protocol's name on the wire. Version 2: a request is a batch of messages (version 1
/// carried one), so members of either version refuse each other's requests instead of misreading
/// them.
pub const SYNC_PROTOCOL: StreamProtocol = StreamProtocol::new("/beaufort/sync/2");

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
/// Most concurrent sync substreams per connection. An honest peer has at most one request in
/// flight to us and we one to it; the bound caps what a hostile peer can make us buffer.
const MAX_SYNC_STREAMS: usize = 8;
/// How long a request may take, acknowledgement included. A link waits for it before sending the
/// next batch, so a lost connection stalls the link at most this long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// A connection at least this old is stale when the member it leads to dials us anew (see
/// `NetTask::close_stale`). Younger ones may be the other half of a simultaneous dial, which
/// completes within a handshake of ours; a misjudged young one would only cost a redial.
const STALE_AFTER: Duration = Duration::from_secs(2);
/// Initial buffer for a received frame; it grows as bytes actually arrive, so an announced length
/// alone does not make us allocate.
const READ_CHUNK: usize = 64 * 1024;

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
                sync: request_response::Behaviour::with_codec(
                    SyncCodec,
                    [(SYNC_PROTOCOL, request_response::ProtocolSupport::Full)],
                    request_response::Config::default()
                        .with_request_timeout(REQUEST_TIMEOUT)
                        .with_max_concurrent_streams(MAX_SYNC_STREAMS),
                ),
                peers: request_response::Behaviour::with_codec(
                    peers::PeersCodec,
                    [(
                        peers::PEERS_PROTOCOL,
                        request_response::ProtocolSupport::Full,
                    )],
                    request_response::Config::default()
                        .with_request_timeout(REQUEST_TIMEOUT)
                        .with_max_concurrent_streams(2),
                ),
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

/// Reads a frame's length prefix.
async fn read_len<T: futures::AsyncRead + Unpin + Send>(io: &mut T) -> io::Result<usize> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    Ok(usize::try_from(u32::from_be_bytes(len)).unwrap_or(usize::MAX))
}

/// Reads exactly `len` bytes, allocating only as they arrive. A stream that ends early is an
/// error but not proof of a fault: a connection that dies mid-request looks the same.
async fn read_body<T: futures::AsyncRead + Unpin + Send>(
    io: &mut T,
    len: usize,
) -> io::Result<Vec<u8>> {
    let mut body = Vec::with_capacity(len.min(READ_CHUNK));
    io.take(u64::try_from(len).unwrap_or(u64::MAX))
        .read_to_end(&mut body)
        .await?;
    if body.len() != len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("frame ended after {} of {len} bytes", body.len()),
        ));
    }
    Ok(body)
}

/// Writes one length-prefixed frame.
async fn write_frame<T: futures::AsyncWrite + Unpin + Send>(
    io: &mut T,
    bytes: &[u8],
) -> io::Result<()> {
    let len = u32::try_from(bytes.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    io.write_all(&len.to_be_bytes()).await?;
    io.write_all(bytes).await?;
    io.close().await
}

/// A sync request. Outgoing ones are always batches; an incoming one that violates the framing
/// is still delivered to the network task (as `Malformed`) rather than failed in the codec,
/// because libp2p does not report a request whose reading failed, and the task must learn of it
/// to treat the sender as faulty.
#[derive(Debug)]
enum SyncRequest {
    /// A well-formed batch of messages.
    Batch(Batch),
    /// What the peer sent is not a well-formed batch.
    Malformed(FrameError),
}

/// The request-response codec: a request is one length-prefixed frame holding a batch (`frame`),
/// bounded by [`MAX_BATCH_BYTES`]; the response is an empty frame, the acknowledgement that
/// releases the link's next batch.
#[derive(Clone, Copy, Default)]
struct SyncCodec;

#[async_trait]
impl request_response::Codec for SyncCodec {
    type Protocol = StreamProtocol;
    type Request = SyncRequest;
    type Response = ();

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<SyncRequest>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        let len = read_len(io).await?;
        if len > MAX_BATCH_BYTES {
            return Ok(SyncRequest::Malformed(FrameError::Oversized { len }));
        }
        let body = read_body(io, len).await?;
        Ok(match Batch::decode(body) {
            Ok(batch) => SyncRequest::Batch(batch),
            Err(error) => SyncRequest::Malformed(error),
        })
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<()>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        match read_len(io).await? {
            0 => Ok(()),
            len => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("acknowledgement of {len} bytes, expected none"),
            )),
        }
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        request: SyncRequest,
    ) -> io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        match request {
            SyncRequest::Batch(batch) => write_frame(io, batch.body()).await,
            SyncRequest::Malformed(error) => {
                Err(io::Error::new(io::ErrorKind::InvalidInput, error))
            }
        }
    }

    async fn write_response<T>(&mut self, _: &StreamProtocol, io: &mut T, _: ()) -> io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        write_frame(io, &[]).await
    }
}

/// A peer backed off after faults: until when it is blocked (`None` once the block ended), and
/// how long the next back-off will be.
struct Ban {
    until: Option<Instant>,
    next: Duration,
}

/// This member's sending side of the link to one other member.
struct Link {
    /// Messages waiting for the link to be free.
    queue: OutQueue,
    /// The request in flight, if any, and how many messages it carries. At most one, so that
    /// batches arrive in the order they were sent.
    in_flight: Option<(request_response::OutboundRequestId, usize)>,
    /// Since when the member has been disconnected (`None` while connected).
    down_since: Option<Instant>,
}

impl Link {
    fn new() -> Link {
        Link {
            queue: OutQueue::new(MAX_QUEUED_BYTES, MAX_QUEUED_MESSAGES),
            in_flight: None,
            down_since: None,
        }
    }
}

struct NetTask {
    swarm: libp2p::Swarm<Behaviour>,
    members: Vec<MemberPeer>,
    index_of: HashMap<PeerId, MemberIndex>,
    /// The neighbours we dial and keep.
    targets: BTreeSet<MemberIndex>,
    /// Other members, to replace a target that is backed off.
    spare: VecDeque<MemberIndex>,
    connected: BTreeSet<MemberIndex>,
    /// Members whose sync messages are dropped both ways (test-only partitions).
    isolated: BTreeSet<MemberIndex>,
    banned: HashMap<MemberIndex, Ban>,
    latency: Duration,
    delayed: VecDeque<(Instant, MemberIndex, Vec<u8>)>,
    /// Outgoing links, created when the first message for a member is queued.
    links: HashMap<MemberIndex, Link>,
    /// Every open connection to each member, and since when it has been established.
    connections: HashMap<MemberIndex, Vec<(ConnectionId, Instant)>>,
    /// Discovery servers and where they are.
    discovery: Vec<(PeerId, Multiaddr)>,
    namespace: rendezvous::Namespace,
    /// Discovery servers we are registered with (over the current connection).
    registered: BTreeSet<PeerId>,
    /// Maintenance rounds so far.
    rounds: u32,
    events: mpsc::Sender<NetEvent>,
    stats: Arc<NetStats>,
    /// Per member: messages wait on its link (read by [`Network::link_ready`]).
    waiting: Arc<Vec<AtomicBool>>,
}

impl NetTask {
    /// Publishes whether messages wait on the link to `to`; called after every queue change.
    fn publish_waiting(&self, to: MemberIndex) {
        if let Some(flag) = self.waiting.get(usize::from(to)) {
            let waiting = self
                .links
                .get(&to)
                .is_some_and(|link| !link.queue.is_empty());
            flag.store(waiting, Ordering::Relaxed);
        }
    }

    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut maintain = tokio::time::interval(MAINTAIN_EVERY);
        loop {
            let next_delayed = self.delayed.front().map(|(at, _, _)| *at);
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Send(to, bytes)) => self.enqueue(to, bytes),
                    Some(Command::Fault(peer)) => self.ban(peer),
                    Some(Command::Isolate(members)) => {
                        tracing::warn!(?members, "test control: isolating members");
                        self.isolated = members;
                    }
                    Some(Command::Rewire) => self.rewire(),
                    None => return,
                },
                event = self.swarm.select_next_some() => {
                    if !self.on_swarm_event(event).await {
                        return;
                    }
                }
                _ = maintain.tick() => self.maintain(),
                () = sleep_until(next_delayed) => self.release_delayed(),
            }
        }
    }

    fn enqueue(&mut self, to: MemberIndex, bytes: Vec<u8>) {
        if self.latency.is_zero() {
            self.transmit(to, bytes);
        } else if self.delayed.len() < MAX_DELAYED {
            self.delayed
                .push_back((Instant::now() + self.latency, to, bytes));
        } else {
            self.stats.messages_dropped.inc();
        }
    }

    fn release_delayed(&mut self) {
        let now = Instant::now();
        while self.delayed.front().is_some_and(|(at, _, _)| *at <= now) {
            if let Some((_, to, bytes)) = self.delayed.pop_front() {
                self.transmit(to, bytes);
            }
        }
    }

    /// Queues a message on its link (after the delay layer, if any) and sends if the link is free.
    fn transmit(&mut self, to: MemberIndex, bytes: Vec<u8>) {
        if usize::from(to) >= self.members.len() {
            return;
        }
        if !self.connected.contains(&to) || self.isolated.contains(&to) {
            self.stats.messages_dropped.inc();
            return;
        }
        let dropped = self
            .links
            .entry(to)
            .or_insert_with(Link::new)
            .queue
            .push(bytes);
        self.stats.messages_dropped.inc_by(dropped);
        self.pump(to);
        self.publish_waiting(to);
    }

    /// Sends the next batch on a member's link if the link is free, the member connected and
    /// something waits.
    fn pump(&mut self, to: MemberIndex) {
        let Some(member) = self.members.get(usize::from(to)) else {
            return;
        };
        let Some(link) = self.links.get_mut(&to) else {
            return;
        };
        if link.in_flight.is_some() || !self.connected.contains(&to) {
            return;
        }
        if self.isolated.contains(&to) {
            self.stats.messages_dropped.inc_by(link.queue.clear());
            return;
        }
        let Some(batch) = link.queue.take_batch() else {
            return;
        };
        let count = batch.len();
        self.stats.bytes_sent.inc_by(batch.wire_bytes() as u64);
        self.stats.messages_sent.inc_by(count as u64);
        let id = self
            .swarm
            .behaviour_mut()
            .sync
            .send_request(&member.peer_id, SyncRequest::Batch(batch));
        link.in_flight = Some((id, count));
    }

    /// A request ended, acknowledged or failed: frees its link and sends what waits. A failed
    /// batch is dropped (it may or may not have arrived); the queue behind it stays.
    fn settle(
        &mut self,
        peer: PeerId,
        request: request_response::OutboundRequestId,
        failed: Option<&request_response::OutboundFailure>,
    ) {
        let Some(&index) = self.index_of.get(&peer) else {
            return;
        };
        let Some(link) = self.links.get_mut(&index) else {
            return;
        };
        let Some((id, count)) = link.in_flight else {
            return;
        };
        if id != request {
            return;
        }
        link.in_flight = None;
        if let Some(error) = failed {
            tracing::debug!(peer = index, %error, count, "sync batch not delivered");
            self.stats.messages_dropped.inc_by(count as u64);
        }
        self.pump(index);
        self.publish_waiting(index);
    }

    /// Hands a received batch's messages to the runtime in order, then acknowledges it (which
    /// lets the sender send its next batch, so the order holds across batches). False when the
    /// runtime has gone away.
    async fn deliver(
        &mut self,
        peer: PeerId,
        request: SyncRequest,
        channel: request_response::ResponseChannel<()>,
    ) -> bool {
        let Some(&from) = self.index_of.get(&peer) else {
            return true;
        };
        let batch = match request {
            SyncRequest::Batch(batch) => batch,
            SyncRequest::Malformed(error) => {
                // Only a faulty peer frames badly: the same path as an invalid message. The
                // request is not acknowledged (the connection closes anyway).
                tracing::warn!(peer = from, %error, "malformed sync batch");
                self.ban(from);
                return true;
            }
        };
        if self.isolated.contains(&from) {
            self.stats.messages_dropped.inc_by(batch.len() as u64);
        } else {
            self.stats.bytes_received.inc_by(batch.wire_bytes() as u64);
            self.stats.messages_received.inc_by(batch.len() as u64);
            for message in batch.messages() {
                let event = NetEvent::Message {
                    from,
                    bytes: message.to_vec(),
                };
                if self.events.send(event).await.is_err() {
                    return false;
                }
            }
        }
        let _ = self.swarm.behaviour_mut().sync.send_response(channel, ());
        true
    }

    /// Disconnects and blocks a faulty peer, and replaces it among the targets.
    fn ban(&mut self, peer: MemberIndex) {
        let Some(member) = self.members.get(usize::from(peer)) else {
            return;
        };
        let peer_id = member.peer_id;
        let backoff = self.banned.get(&peer).map_or(FIRST_BACKOFF, |b| b.next);
        tracing::warn!(
            peer,
            ?backoff,
            "peer sent invalid data: disconnecting and backing off"
        );
        self.banned.insert(
            peer,
            Ban {
                until: Some(Instant::now() + backoff),
                next: (backoff * 2).min(MAX_BACKOFF),
            },
        );
        self.stats.peers_banned.inc();
        if let Some(link) = self.links.get_mut(&peer) {
            self.stats.messages_dropped.inc_by(link.queue.clear());
        }
        self.publish_waiting(peer);
        self.swarm.behaviour_mut().block.block_peer(peer_id);
        if self.targets.remove(&peer) {
            if let Some(replacement) = self.spare.pop_front() {
                self.targets.insert(replacement);
            }
            self.spare.push_back(peer);
        }
    }

    /// Swaps half of the targets (at least one) for spare members and drops the connections to
    /// the ones swapped out.
    fn rewire(&mut self) {
        let mut current: Vec<MemberIndex> = self.targets.iter().copied().collect();
        current.shuffle(&mut rand::thread_rng());
        let swap = current.len().div_ceil(2).min(self.spare.len());
        let mut out = Vec::with_capacity(swap);
        for dropped in current.into_iter().take(swap) {
            let Some(replacement) = self.spare.pop_front() else {
                break;
            };
            self.targets.remove(&dropped);
            self.targets.insert(replacement);
            self.spare.push_back(dropped);
            out.push(dropped);
            if let Some(member) = self.members.get(usize::from(dropped)) {
                let _ = self.swarm.disconnect_peer_id(member.peer_id);
            }
        }
        self.stats.rewirings.inc();
        tracing::warn!(
            dropped = ?out,
            targets = ?self.targets,
            "own writes make no progress: re-wiring neighbours"
        );
        self.maintain();
    }

    /// This member's known addresses of every member (its own listen addresses included), for a
    /// peer that asks.
    fn peer_list(&self) -> peers::PeerList {
        let me = self
            .members
            .iter()
            .position(|m| m.peer_id == *self.swarm.local_peer_id());
        let entries = self
            .members
            .iter()
            .enumerate()
            .filter_map(|(i, member)| {
                let index = MemberIndex::try_from(i).ok()?;
                let addresses: Vec<Multiaddr> = if Some(i) == me {
                    self.swarm.external_addresses().cloned().collect()
                } else {
                    member.addresses.clone()
                };
                (!addresses.is_empty()).then_some((index, addresses))
            })
            .collect();
        peers::PeerList(entries)
    }

    /// Remembers a member's address learnt from discovery (non-members are ignored).
    fn learn(&mut self, peer: PeerId, address: Multiaddr) {
        let Some(&index) = self.index_of.get(&peer) else {
            return;
        };
        if let Some(member) = self.members.get_mut(usize::from(index)) {
            if !member.addresses.contains(&address) && member.addresses.len() < MAX_ADDRESSES {
                tracing::debug!(peer = index, %address, "discovered an address");
                member.addresses.push(address);
            }
        }
    }

    /// Dials the discovery servers, registers with the connected ones, and asks them for the
    /// members while some target is not connected.
    fn discover(&mut self) {
        self.rounds = self.rounds.wrapping_add(1);
        let missing = self.targets.iter().any(|t| !self.connected.contains(t));
        for (server, address) in self.discovery.clone() {
            if !self.swarm.is_connected(&server) {
                let opts = DialOpts::peer_id(server)
                    .addresses(vec![address])
                    .condition(PeerCondition::DisconnectedAndNotDialing)
                    .build();
                if let Err(error) = self.swarm.dial(opts) {
                    tracing::debug!(%server, %error, "discovery server dial refused");
                }
                continue;
            }
            if !self.registered.contains(&server) {
                if let Err(error) = self.swarm.behaviour_mut().rendezvous.register(
                    self.namespace.clone(),
                    server,
                    None,
                ) {
                    tracing::debug!(%server, %error, "not registered yet");
                }
            }
            if missing && self.rounds % DISCOVER_EVERY_ROUNDS == 1 {
                self.swarm.behaviour_mut().rendezvous.discover(
                    Some(self.namespace.clone()),
                    None,
                    None,
                    server,
                );
            }
        }
    }

    /// Lifts expired bans, drops the queues of members gone too long, and dials targets that are
    /// not connected.
    fn maintain(&mut self) {
        self.discover();
        let now = Instant::now();
        let mut cleared = Vec::new();
        for (&to, link) in self.links.iter_mut() {
            if !link.queue.is_empty()
                && link
                    .down_since
                    .is_some_and(|since| now.duration_since(since) >= QUEUE_LINGER)
            {
                self.stats.messages_dropped.inc_by(link.queue.clear());
                cleared.push(to);
            }
        }
        for to in cleared {
            self.publish_waiting(to);
        }
        for (&peer, ban) in &mut self.banned {
            if ban.until.is_some_and(|until| until <= now) {
                // The block ends; the back-off length stays, so a repeat offender waits longer.
                ban.until = None;
                if let Some(member) = self.members.get(usize::from(peer)) {
                    self.swarm
                        .behaviour_mut()
                        .block
                        .unblock_peer(member.peer_id);
                }
            }
        }
        let dial: Vec<MemberIndex> = self
            .targets
            .iter()
            .copied()
            .filter(|t| !self.connected.contains(t))
            .filter(|t| self.banned.get(t).is_none_or(|b| b.until.is_none()))
            .collect();
        for target in dial {
            let Some(member) = self.members.get(usize::from(target)) else {
                continue;
            };
            let opts = DialOpts::peer_id(member.peer_id)
                .addresses(member.addresses.clone())
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .build();
            if let Err(error) = self.swarm.dial(opts) {
                tracing::debug!(target, %error, "dial refused");
            }
        }
    }

    /// A member dialled us: closes the connections to it that are at least [`STALE_AFTER`] old,
    /// and says whether there were any.
    ///
    /// A member dials only members it holds no connection to (`DisconnectedAndNotDialing`), so
    /// an older connection we still hold is dead at its end: the member restarted or lost it.
    /// We may not have noticed: a killed process's QUIC connection is never closed, and lingers
    /// until its 10 s idle timeout. Meanwhile requests to the member are spread over all its
    /// connections, and a link's request sent on the dead one holds the link until it fails:
    /// the restarted member stayed blind for that long.
    fn close_stale(&mut self, peer: MemberIndex) -> bool {
        let now = Instant::now();
        let stale: Vec<ConnectionId> = self
            .connections
            .get(&peer)
            .into_iter()
            .flatten()
            .filter(|(_, since)| now.duration_since(*since) >= STALE_AFTER)
            .map(|(id, _)| *id)
            .collect();
        for id in &stale {
            self.swarm.close_connection(*id);
        }
        if !stale.is_empty() {
            self.stats
                .stale_connections_closed
                .inc_by(stale.len() as u64);
            tracing::info!(
                peer,
                stale = stale.len(),
                "member dialled anew: closing its stale connections"
            );
        }
        !stale.is_empty()
    }

    /// Drops a closed connection from [`NetTask::connections`].
    fn forget_connection(&mut self, peer_id: PeerId, connection: ConnectionId) {
        if let Some(peer) = self.index_of.get(&peer_id) {
            if let Some(open) = self.connections.get_mut(peer) {
                open.retain(|(id, _)| *id != connection);
                if open.is_empty() {
                    self.connections.remove(peer);
                }
            }
        }
    }

    /// Handles one swarm event; false when the runtime has gone away.
    async fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) -> bool {
        match event {
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => {
                if let Some(&peer) = self.index_of.get(&peer_id) {
                    if let Some(link) = self.links.get_mut(&peer) {
                        link.down_since = None;
                    }
                    let restarted = endpoint.is_listener() && self.close_stale(peer);
                    self.connections
                        .entry(peer)
                        .or_default()
                        .push((connection_id, Instant::now()));
                    if restarted && self.connected.contains(&peer) {
                        // To the runtime, a new incarnation: forget what the old one was sent
                        // and knew, and synchronise from scratch at once.
                        self.swarm.behaviour_mut().peers.send_request(&peer_id, ());
                        if self.events.send(NetEvent::PeerDown(peer)).await.is_err() {
                            return false;
                        }
                        return self.events.send(NetEvent::PeerUp(peer)).await.is_ok();
                    }
                    if self.connected.insert(peer) {
                        self.stats.connected.set(self.connected.len() as i64);
                        tracing::info!(peer, "member connected");
                        self.swarm.behaviour_mut().peers.send_request(&peer_id, ());
                        // What waited through a brief disconnection goes first.
                        self.pump(peer);
                        self.publish_waiting(peer);
                        return self.events.send(NetEvent::PeerUp(peer)).await.is_ok();
                    }
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                ..
            } if num_established > 0 => {
                self.forget_connection(peer_id, connection_id);
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                ..
            } => {
                self.forget_connection(peer_id, connection_id);
                self.registered.remove(&peer_id);
                if let Some(&peer) = self.index_of.get(&peer_id) {
                    if let Some(link) = self.links.get_mut(&peer) {
                        link.down_since.get_or_insert_with(Instant::now);
                    }
                    if self.connected.remove(&peer) {
                        self.stats.connected.set(self.connected.len() as i64);
                        tracing::info!(peer, "member disconnected");
                        return self.events.send(NetEvent::PeerDown(peer)).await.is_ok();
                    }
                }
            }
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "listening");
                self.swarm.add_external_address(address);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Rendezvous(event)) => match event {
                rendezvous::client::Event::Registered {
                    rendezvous_node, ..
                } => {
                    tracing::info!(server = %rendezvous_node, "registered with a discovery server");
                    self.registered.insert(rendezvous_node);
                }
                rendezvous::client::Event::Discovered { registrations, .. } => {
                    for registration in registrations {
                        let peer = registration.record.peer_id();
                        for address in registration.record.addresses() {
                            self.learn(peer, address.clone());
                        }
                    }
                }
                other => tracing::debug!(?other, "discovery"),
            },
            SwarmEvent::Behaviour(BehaviourEvent::Peers(request_response::Event::Message {
                peer,
                message: request_response::Message::Request { channel, .. },
                ..
            })) if self.index_of.contains_key(&peer) => {
                let list = self.peer_list().encode();
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .peers
                    .send_response(channel, list);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Peers(request_response::Event::Message {
                peer,
                message: request_response::Message::Response { response, .. },
                ..
            })) => {
                if let Some(&from) = self.index_of.get(&peer) {
                    match peers::PeerList::decode(&response, self.members.len()) {
                        Ok(list) => {
                            for (member, addresses) in list.0 {
                                let Some(peer_id) =
                                    self.members.get(usize::from(member)).map(|m| m.peer_id)
                                else {
                                    continue;
                                };
                                for address in addresses {
                                    self.learn(peer_id, address);
                                }
                            }
                        }
                        Err(error) => {
                            tracing::warn!(peer = from, %error, "malformed peer list");
                            self.ban(from);
                        }
                    }
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(found))) => {
                for (peer, address) in found {
                    self.learn(peer, address);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Sync(request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            })) => return self.deliver(peer, request, channel).await,
            SwarmEvent::Behaviour(BehaviourEvent::Sync(request_response::Event::Message {
                peer,
                message: request_response::Message::Response { request_id, .. },
                ..
            })) => self.settle(peer, request_id, None),
            SwarmEvent::Behaviour(BehaviourEvent::Sync(
                request_response::Event::OutboundFailure {
                    peer,
                    request_id,
                    error,
                    ..
                },
            )) => self.settle(peer, request_id, Some(&error)),
            _ => {}
        }
        true
    }
}

/// Sleeps until `at`, or forever if there is nothing to wait for.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => futures::future::pending().await,
    }
}

/// Runs a discovery server (libp2p rendezvous) until the future is dropped. Members register
/// their addresses under their network's namespace and look each other up; the server relays
/// only signed peer records, never data. `ready` receives the addresses it listens on.
pub async fn run_discovery_server(
    keypair: identity::Keypair,
    listen: Vec<Multiaddr>,
    ready: mpsc::Sender<Multiaddr>,
) -> Result<(), NetError> {
    let transport = |e: &dyn std::fmt::Display| NetError::Transport(e.to_string());
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| transport(&e))?
        .with_quic()
        .with_behaviour(|_| DiscoveryBehaviour {
            rendezvous: rendezvous::server::Behaviour::new(rendezvous::server::Config::default()),
            ping: ping::Behaviour::default(),
        })
        .map_err(|e| transport(&e))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
        .build();
    for address in listen {
        swarm
            .listen_on(address.clone())
            .map_err(|e| NetError::Listen {
                address,
                error: describe(&e),
            })?;
    }
    let me = *swarm.local_peer_id();
    loop {
        match swarm.select_next_some().await {
            SwarmEvent::NewListenAddr { address, .. } => {
                let _ = ready
                    .send(address.with(libp2p::multiaddr::Protocol::P2p(me)))
                    .await;
            }
            SwarmEvent::Behaviour(DiscoveryBehaviourEvent::Rendezvous(event)) => {
                tracing::debug!(?event, "discovery");
            }
            _ => {}
        }
    }
}

#[derive(NetworkBehaviour)]
struct DiscoveryBehaviour {
    rendezvous: rendezvous::server::Behaviour,
    ping: ping::Behaviour,
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

//! The browser runtime: one task on the page's event loop that owns the [`Member`] and a libp2p
//! swarm dialling the native members' WebSocket listeners, and carries out each step in the
//! core's order (`crate::member`): early messages, then the page's IndexedDB write (awaited),
//! then the rest. It takes no protocol decision: when to push, repair, give a second chance or
//! re-wire is the core's, through `tick`.
//!
//! The links are the native network's (`beaufort-link`): the `/beaufort/sync/2` batches with one
//! request in flight per link, the bounded per-link queue, the `/beaufort/peers/1` answer (an
//! empty list: a page knows nothing the members do not), noise authentication and the member
//! allow-list. A page cannot listen, so the browser dials every member that lists a `/ws`
//! address and redials lost ones; members dial it back never (they cannot), and accept it as the
//! allow-listed identity it is.

use crate::member::{Done, Member, Plan, WriteId, WriteOutcome};
use crate::records::Record;
use crate::setup::Consortium;
use beaufort_core::state::Certified;
use beaufort_crypto::MemberIndex;
use beaufort_link::codec::{SyncCodec, SyncRequest};
use beaufort_link::peers::{PeerList, PeersCodec};
use beaufort_link::queue::{OutQueue, MAX_QUEUED_BYTES, MAX_QUEUED_MESSAGES};
use futures::channel::{mpsc, oneshot};
use futures::{FutureExt, StreamExt};
use libp2p::allow_block_list::{self, AllowedPeers, BlockedPeers};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{identity, noise, ping, request_response, yamux, Multiaddr, PeerId, Transport};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::Rc;
use std::time::Duration;
use wasm_bindgen::JsValue;
use web_time::Instant;

/// How often lost members are redialled.
const REDIAL_EVERY: Duration = Duration::from_secs(1);
/// How long a member that sent invalid data is left alone.
const BACKOFF: Duration = Duration::from_secs(30);
/// Most inputs taken from the swarm before the step they make is carried out.
const MAX_BATCH: usize = 256;

/// What the page asks of the running member.
pub enum Command {
    /// An own write and where its outcome goes.
    Write {
        /// The key (text).
        key: String,
        /// The value's bytes.
        value: Vec<u8>,
        /// The outcome.
        reply: oneshot::Sender<Result<Certified, String>>,
    },
    /// Stop: close every connection and end the task.
    Stop,
}

/// The page's callbacks: `persist(records)` returns a promise that resolves once the records are
/// durable in IndexedDB; `event(json)` is told of decisions and connections.
pub struct Page {
    /// Writes records; resolves when durable.
    pub persist: js_sys::Function,
    /// Told of what happened.
    pub event: js_sys::Function,
}

#[derive(NetworkBehaviour)]
pub struct Behaviour {
    allow: allow_block_list::Behaviour<AllowedPeers>,
    block: allow_block_list::Behaviour<BlockedPeers>,
    sync: request_response::Behaviour<SyncCodec>,
    peers: request_response::Behaviour<PeersCodec>,
    ping: ping::Behaviour,
}

/// The swarm of a browser member: WebSocket from the page, noise against the member's libp2p key,
/// yamux, and the members' protocols.
pub fn swarm(keypair: identity::Keypair) -> Result<libp2p::Swarm<Behaviour>, String> {
    Ok(libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_wasm_bindgen()
        .with_other_transport(|key| {
            let noise = noise::Config::new(key)
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?;
            Ok(libp2p::websocket_websys::Transport::default()
                .upgrade(libp2p::core::upgrade::Version::V1Lazy)
                .authenticate(noise)
                .multiplex(yamux::Config::default()))
        })
        .map_err(|e| format!("building the WebSocket transport: {e}"))?
        .with_behaviour(|_| Behaviour {
            allow: allow_block_list::Behaviour::default(),
            block: allow_block_list::Behaviour::default(),
            sync: beaufort_link::sync_behaviour(),
            peers: beaufort_link::peers_behaviour(request_response::ProtocolSupport::Inbound),
            ping: ping::Behaviour::default(),
        })
        .map_err(|e| format!("building the swarm: {e}"))?
        .with_swarm_config(|c| {
            c.with_idle_connection_timeout(Duration::from_secs(3600))
                .with_substream_upgrade_protocol_override(libp2p::core::upgrade::Version::V1Lazy)
        })
        .build())
}

/// The sending side of one link.
struct Link {
    queue: OutQueue,
    in_flight: Option<(request_response::OutboundRequestId, usize)>,
}

/// The running member.
pub struct Runtime {
    member: Member,
    swarm: libp2p::Swarm<Behaviour>,
    consortium: Consortium,
    index_of: HashMap<PeerId, MemberIndex>,
    addresses: BTreeMap<MemberIndex, Vec<Multiaddr>>,
    connected: BTreeSet<MemberIndex>,
    banned: BTreeMap<MemberIndex, Instant>,
    links: BTreeMap<MemberIndex, Link>,
    replies: BTreeMap<WriteId, oneshot::Sender<Result<Certified, String>>>,
    next_write: WriteId,
    page: Page,
    started: Instant,
    status: Rc<RefCell<crate::member::Status>>,
}

/// What woke the task.
enum Wake {
    Swarm(SwarmEvent<BehaviourEvent>),
    Command(Option<Command>),
    Tick,
    Redial,
}

impl Runtime {
    /// A runtime for `member` with the swarm `swarm` (allow-listed here).
    pub fn new(
        member: Member,
        mut swarm: libp2p::Swarm<Behaviour>,
        consortium: Consortium,
        page: Page,
        status: Rc<RefCell<crate::member::Status>>,
    ) -> Runtime {
        let mut index_of = HashMap::new();
        let mut addresses = BTreeMap::new();
        for (i, peer) in consortium.peers.iter().enumerate() {
            let (Ok(index), Ok(peer_id)) = (MemberIndex::try_from(i), peer.peer_id.parse()) else {
                continue;
            };
            if index == consortium.me {
                continue;
            }
            swarm.behaviour_mut().allow.allow_peer(peer_id);
            index_of.insert(peer_id, index);
            let parsed: Vec<Multiaddr> = peer
                .websocket
                .iter()
                .filter_map(|a| a.parse().ok())
                .collect();
            if !parsed.is_empty() {
                addresses.insert(index, parsed);
            }
        }
        Runtime {
            member,
            swarm,
            consortium,
            index_of,
            addresses,
            connected: BTreeSet::new(),
            banned: BTreeMap::new(),
            links: BTreeMap::new(),
            replies: BTreeMap::new(),
            next_write: 0,
            page,
            started: Instant::now(),
            status,
        }
    }

    /// The members this browser can dial.
    pub fn dialable(&self) -> usize {
        self.addresses.len()
    }

    /// Runs until the page stops it or drops its handle.
    pub async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        self.redial();
        self.publish();
        let mut redial_at = Instant::now() + REDIAL_EVERY;
        loop {
            let now = Instant::now();
            let tick_at = self.started + Duration::from_millis(self.member.next_tick());
            let wake = {
                let tick = futures_timer::Delay::new(tick_at.saturating_duration_since(now));
                let redial = futures_timer::Delay::new(redial_at.saturating_duration_since(now));
                futures::select! {
                    event = self.swarm.select_next_some() => Wake::Swarm(event),
                    command = commands.next() => Wake::Command(command),
                    _ = tick.fuse() => Wake::Tick,
                    _ = redial.fuse() => Wake::Redial,
                }
            };
            let mut step = beaufort_core::replica::Step::default();
            match wake {
                Wake::Swarm(event) => {
                    self.on_swarm(event, &mut step);
                    // Take what else is ready now into the same step (one IndexedDB write).
                    for _ in 0..MAX_BATCH {
                        match self.swarm.select_next_some().now_or_never() {
                            Some(event) => self.on_swarm(event, &mut step),
                            None => break,
                        }
                    }
                }
                Wake::Command(None) | Wake::Command(Some(Command::Stop)) => {
                    self.stop();
                    return;
                }
                Wake::Command(Some(Command::Write { key, value, reply })) => {
                    let id = self.next_write;
                    self.next_write += 1;
                    match self.member.write(&key, &value, id) {
                        Ok(effects) => {
                            step.absorb(effects);
                            self.replies.insert(id, reply);
                        }
                        Err(error) => {
                            let _ = reply.send(Err(error.to_string()));
                        }
                    }
                }
                Wake::Tick => {
                    let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
                    let links = &self.links;
                    step.absorb(self.member.tick(now, |peer| {
                        links.get(&peer).is_none_or(|l| l.queue.is_empty())
                    }));
                }
                Wake::Redial => {
                    self.redial();
                    redial_at = Instant::now() + REDIAL_EVERY;
                }
            }
            if let Err(error) = self.carry_out(step).await {
                self.event(&serde_json::json!({ "type": "stopped", "reason": error }));
                self.stop();
                return;
            }
            self.publish();
        }
    }

    /// The core's order: early messages, the durable write, then the rest.
    async fn carry_out(&mut self, step: beaufort_core::replica::Step) -> Result<(), String> {
        let Plan {
            early,
            records,
            after,
        } = self.member.plan(step);
        for (to, bytes) in early {
            self.send(to, bytes);
        }
        if !records.is_empty() {
            self.persist(&records).await?;
        }
        let Done {
            messages,
            faults,
            writes,
            decisions,
            // The core's re-wiring asks for other neighbours; a browser member already dials
            // every member it can reach, so there is no other to turn to.
            rewire: _,
        } = self.member.durable(after);
        for (to, bytes) in messages {
            self.send(to, bytes);
        }
        for peer in faults {
            self.ban(peer);
        }
        for decision in decisions {
            self.event(&serde_json::json!({
                "type": "decision",
                "key": String::from_utf8_lossy(decision.key.as_bytes()),
                "view": decision.certified.view,
                "mine": decision.mine,
            }));
        }
        for (id, outcome) in writes {
            if let Some(reply) = self.replies.remove(&id) {
                let _ = reply.send(match outcome {
                    WriteOutcome::Committed(certified) => Ok(certified),
                    WriteOutcome::Lost(_) => Err("another value won this key".to_owned()),
                });
            }
        }
        Ok(())
    }

    /// Hands records to the page and waits until IndexedDB has them. A failed write stops the
    /// member: sending after it would break persist-before-send.
    async fn persist(&self, records: &[Record]) -> Result<(), String> {
        let array = js_sys::Array::new();
        for record in records {
            let entry = js_sys::Array::new();
            entry.push(&JsValue::from_str(record.table.name()));
            entry.push(&js_sys::Uint8Array::from(record.key.as_slice()));
            entry.push(&js_sys::Uint8Array::from(record.value.as_slice()));
            array.push(&entry);
        }
        let promise = self
            .page
            .persist
            .call1(&JsValue::NULL, &array)
            .map_err(|e| format!("the page's persist callback threw: {e:?}"))?;
        let promise = js_sys::Promise::from(promise);
        wasm_bindgen_futures::JsFuture::from(promise)
            .await
            .map(|_| ())
            .map_err(|e| format!("IndexedDB write failed: {e:?}"))
    }

    fn event(&self, event: &serde_json::Value) {
        let _ = self
            .page
            .event
            .call1(&JsValue::NULL, &JsValue::from_str(&event.to_string()));
    }

    fn publish(&mut self) {
        *self.status.borrow_mut() = self.member.status();
    }

    fn on_swarm(
        &mut self,
        event: SwarmEvent<BehaviourEvent>,
        step: &mut beaufort_core::replica::Step,
    ) {
        match event {
            SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                if let Some(&peer) = self.index_of.get(&peer_id) {
                    if self.connected.insert(peer) {
                        self.event(
                            &serde_json::json!({ "type": "peer", "member": peer, "up": true }),
                        );
                        self.pump(peer);
                        step.absorb(self.member.link(peer, true));
                    }
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                if let Some(&peer) = self.index_of.get(&peer_id) {
                    if self.connected.remove(&peer) {
                        self.event(
                            &serde_json::json!({ "type": "peer", "member": peer, "up": false }),
                        );
                        step.absorb(self.member.link(peer, false));
                    }
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Sync(request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            })) => {
                let Some(&from) = self.index_of.get(&peer) else {
                    return;
                };
                let batch = match request {
                    SyncRequest::Batch(batch) => batch,
                    SyncRequest::Malformed(_) => {
                        self.ban(from);
                        return;
                    }
                };
                for message in batch.messages() {
                    match self.member.receive(from, message) {
                        Ok(effects) => step.absorb(effects),
                        Err(_) => {
                            self.ban(from);
                            return;
                        }
                    }
                }
                let _ = self.swarm.behaviour_mut().sync.send_response(channel, ());
            }
            SwarmEvent::Behaviour(BehaviourEvent::Sync(request_response::Event::Message {
                peer,
                message: request_response::Message::Response { request_id, .. },
                ..
            })) => self.settle(peer, request_id),
            SwarmEvent::Behaviour(BehaviourEvent::Sync(
                request_response::Event::OutboundFailure {
                    peer, request_id, ..
                },
            )) => self.settle(peer, request_id),
            SwarmEvent::Behaviour(BehaviourEvent::Peers(request_response::Event::Message {
                peer,
                message: request_response::Message::Request { channel, .. },
                ..
            })) if self.index_of.contains_key(&peer) => {
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .peers
                    .send_response(channel, PeerList::default().encode());
            }
            _ => {}
        }
    }

    /// Queues an encoded message on its link and sends what the link allows.
    fn send(&mut self, to: MemberIndex, bytes: Vec<u8>) {
        let link = self.links.entry(to).or_insert_with(|| Link {
            queue: OutQueue::new(MAX_QUEUED_BYTES, MAX_QUEUED_MESSAGES),
            in_flight: None,
        });
        let _ = link.queue.push(bytes);
        self.pump(to);
    }

    /// Sends the next batch of a free, connected link.
    fn pump(&mut self, to: MemberIndex) {
        if !self.connected.contains(&to) {
            return;
        }
        let Some(peer_id) = self.peer_id(to) else {
            return;
        };
        let Some(link) = self.links.get_mut(&to) else {
            return;
        };
        if link.in_flight.is_some() {
            return;
        }
        let Some(batch) = link.queue.take_batch() else {
            return;
        };
        let count = batch.len();
        let id = self
            .swarm
            .behaviour_mut()
            .sync
            .send_request(&peer_id, SyncRequest::Batch(batch));
        link.in_flight = Some((id, count));
    }

    /// A request ended (acknowledged or failed): the link is free again.
    fn settle(&mut self, peer: PeerId, request: request_response::OutboundRequestId) {
        let Some(&index) = self.index_of.get(&peer) else {
            return;
        };
        if let Some(link) = self.links.get_mut(&index) {
            if link.in_flight.is_some_and(|(id, _)| id == request) {
                link.in_flight = None;
            }
        }
        self.pump(index);
    }

    fn peer_id(&self, member: MemberIndex) -> Option<PeerId> {
        self.consortium
            .peers
            .get(usize::from(member))
            .and_then(|p| p.peer_id.parse().ok())
    }

    /// Dials every member with a WebSocket address that is neither connected nor backed off.
    fn redial(&mut self) {
        let now = Instant::now();
        self.banned.retain(|_, until| *until > now);
        let due: Vec<(PeerId, Vec<Multiaddr>)> = self
            .addresses
            .iter()
            .filter(|(m, _)| !self.connected.contains(m) && !self.banned.contains_key(m))
            .filter_map(|(&m, a)| self.peer_id(m).map(|p| (p, a.clone())))
            .collect();
        for (peer_id, addresses) in due {
            if let Some(&member) = self.index_of.get(&peer_id) {
                if !self.banned.contains_key(&member) {
                    self.swarm.behaviour_mut().block.unblock_peer(peer_id);
                }
            }
            let _ = self.swarm.dial(
                DialOpts::peer_id(peer_id)
                    .addresses(addresses)
                    .condition(PeerCondition::DisconnectedAndNotDialing)
                    .build(),
            );
        }
    }

    /// Disconnects a member that sent invalid data and leaves it alone for a while.
    fn ban(&mut self, peer: MemberIndex) {
        if let Some(peer_id) = self.peer_id(peer) {
            self.banned.insert(peer, Instant::now() + BACKOFF);
            self.swarm.behaviour_mut().block.block_peer(peer_id);
        }
        if let Some(link) = self.links.get_mut(&peer) {
            link.queue.clear();
        }
    }

    fn stop(&mut self) {
        let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        for peer in peers {
            let _ = self.swarm.disconnect_peer_id(peer);
        }
        for (_, reply) in std::mem::take(&mut self.replies) {
            let _ = reply.send(Err("the member stopped".to_owned()));
        }
    }
}

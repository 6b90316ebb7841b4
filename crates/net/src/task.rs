//! The network task: owns the libp2p swarm, one stop-and-wait link per member (a bounded queue
//! and at most one batch in flight, so links are FIFO), the peer manager (targets, dialling,
//! bans with back-off, re-wiring, stale connections of restarted members) and discovery.

use super::codec::SyncRequest;
use super::*;

/// A peer backed off after faults: until when it is blocked (`None` once the block ended), and
/// how long the next back-off will be.
pub(crate) struct Ban {
    until: Option<Instant>,
    next: Duration,
}

/// This member's sending side of the link to one other member.
pub(crate) struct Link {
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

pub(crate) struct NetTask {
    pub(crate) swarm: libp2p::Swarm<Behaviour>,
    pub(crate) members: Vec<MemberPeer>,
    pub(crate) index_of: HashMap<PeerId, MemberIndex>,
    /// The neighbours we dial and keep.
    pub(crate) targets: BTreeSet<MemberIndex>,
    /// Other members, to replace a target that is backed off.
    pub(crate) spare: VecDeque<MemberIndex>,
    pub(crate) connected: BTreeSet<MemberIndex>,
    /// Members whose sync messages are dropped both ways (test-only partitions).
    pub(crate) isolated: BTreeSet<MemberIndex>,
    pub(crate) banned: HashMap<MemberIndex, Ban>,
    pub(crate) latency: Duration,
    pub(crate) delayed: VecDeque<(Instant, MemberIndex, Vec<u8>)>,
    /// Outgoing links, created when the first message for a member is queued.
    pub(crate) links: HashMap<MemberIndex, Link>,
    /// Every open connection to each member, and since when it has been established.
    pub(crate) connections: HashMap<MemberIndex, Vec<(ConnectionId, Instant)>>,
    /// Discovery servers and where they are.
    pub(crate) discovery: Vec<(PeerId, Multiaddr)>,
    pub(crate) namespace: rendezvous::Namespace,
    /// Discovery servers we are registered with (over the current connection).
    pub(crate) registered: BTreeSet<PeerId>,
    /// Maintenance rounds so far.
    pub(crate) rounds: u32,
    pub(crate) events: mpsc::Sender<NetEvent>,
    pub(crate) stats: Arc<NetStats>,
    /// Per member: messages wait on its link (read by [`Network::link_ready`]).
    pub(crate) waiting: Arc<Vec<AtomicBool>>,
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

    pub(crate) async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
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

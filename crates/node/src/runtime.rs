//! The runtime: one task, on its own OS thread and single-threaded tokio runtime (see
//! `NodeHandle::start`), owns the [`Replica`] and drives it from API requests, network events
//! and the replica's own schedule: it sleeps until [`Replica::next_tick`] and then ticks it with
//! the time and each link's readiness. When to push, to run anti-entropy, to give held-back votes
//! their second chance and to re-wire is the core's decision (`beaufort_core::cadence`), the same
//! in the simulator.
//!
//! Every input's [`Step`] is handled in the order the core's contract demands: the states named in
//! `persist` (and new evidence) are written in one fsync'd redb transaction, and only then are the
//! messages handed to the network. Inputs that are already queued are batched into one step, so
//! one disk commit covers a burst of incoming votes.

use crate::changes::ChangeLog;
use crate::fence::Fence;
use crate::metrics::Metrics;
use crate::{Change, NodeError, RecentCommit, Status};
use beaufort_apps::AppHook;
use beaufort_core::input::Input;
use beaufort_core::replica::{Replica, Step};
use beaufort_core::state::Certified;
use beaufort_core::types::{Key, MemberIndex, Value, ValueHash, View};
use beaufort_core::wire::{decode, encode_as, WireError};
use beaufort_net::{NetEvent, Network};
use beaufort_store::Store;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// Most own writes waiting for their commit at once; more are refused as busy.
pub const MAX_PENDING_WRITES: usize = 10_000;
/// Most inputs batched into one step (one disk commit).
const MAX_BATCH: usize = 256;
/// Most keys a list request returns.
pub const MAX_LIST: usize = 1000;

/// Most inputs and sent messages a recording node logs; past it, recording stops (the log says
/// so) rather than grow without bound.
pub const MAX_RECORDED: usize = 1_000_000;

/// Everything a recording node ([`crate::StartOptions::record`]) handed its replica, and every
/// message it sent, in order: replayed into a fresh replica with the same key, the inputs must
/// give the same messages byte for byte, which is what shows the runtime takes no decision of
/// its own.
#[derive(Clone, Debug, Default)]
pub struct Recording {
    /// The replica's inputs; each batch the runtime committed ends with [`Input::Durable`].
    pub inputs: Vec<Input>,
    /// The encoded messages sent, with their recipients.
    pub sent: Vec<(MemberIndex, Vec<u8>)>,
    /// The log reached [`MAX_RECORDED`] and stopped.
    pub truncated: bool,
}

impl Recording {
    /// Whether there is room for one more entry (marks the log truncated when not).
    fn room(&mut self) -> bool {
        self.truncated |= self.inputs.len() + self.sent.len() >= MAX_RECORDED;
        !self.truncated
    }
}

/// What the outcome of a write is delivered through.
pub(crate) type WriteReply = oneshot::Sender<Result<Certified, NodeError>>;

/// A request from a [`crate::NodeHandle`].
pub(crate) enum Request {
    Get(Key, oneshot::Sender<Option<Certified>>),
    List(ListQuery, oneshot::Sender<Vec<(Key, Certified)>>),
    Views(Option<Key>, usize, oneshot::Sender<Vec<(Key, View)>>),
    Digest(oneshot::Sender<crate::digest::StoreDigest>),
    Write(Key, Value, WriteReply),
    Status(oneshot::Sender<Status>),
    Recording(oneshot::Sender<Option<Recording>>),
}

/// Which committed values a list request wants.
pub(crate) struct ListQuery {
    /// Keys starting with this.
    pub prefix: String,
    /// Only keys after this one (the cursor of a paged listing).
    pub after: Option<Key>,
    /// At most this many.
    pub limit: usize,
}

struct Waiter {
    value: ValueHash,
    since: Instant,
    reply: WriteReply,
}

pub(crate) struct Runtime {
    pub replica: Replica,
    pub store: Arc<Store>,
    pub network: Network,
    pub members: usize,
    pub changes: Arc<ChangeLog<Change>>,
    pub metrics: Arc<Metrics>,
    pub apps: Arc<AppHook>,
    waiters: HashMap<Key, Vec<Waiter>>,
    pending: usize,
    recent_commits: VecDeque<RecentCommit>,
    recording: Option<Recording>,
    fence: Fence,
    /// The wire encoding version this member writes (`node.wire_version`).
    wire_version: u16,
    /// When a neighbour last sent anything, or the latest neighbour connected: anti-entropy
    /// makes every neighbour send at least once a second, so a long silence means this member
    /// no longer hears the consortium.
    heard: Instant,
}

/// How many of its own recent commits a member remembers for the status page.
const RECENT_COMMITS: usize = 50;

impl Runtime {
    pub fn new(
        replica: Replica,
        store: Arc<Store>,
        network: Network,
        members: usize,
        changes: Arc<ChangeLog<Change>>,
        metrics: Arc<Metrics>,
        apps: Arc<AppHook>,
    ) -> Runtime {
        Runtime {
            replica,
            store,
            network,
            members,
            changes,
            metrics,
            apps,
            waiters: HashMap::new(),
            pending: 0,
            recent_commits: VecDeque::with_capacity(RECENT_COMMITS),
            recording: None,
            fence: Fence::default(),
            wire_version: beaufort_core::wire::WIRE_VERSION,
            heard: Instant::now(),
        }
    }

    /// The same runtime writing messages in `version` (one this build reads).
    pub fn writing_wire(mut self, version: u16) -> Runtime {
        self.wire_version = version;
        self
    }

    /// The same runtime behind a restored store's fence.
    pub fn fenced(mut self, fence: Fence) -> Runtime {
        self.fence = fence;
        self
    }

    /// The same runtime, logging a [`Recording`] when `on`.
    pub fn recording(mut self, on: bool) -> Runtime {
        self.recording = on.then(Recording::default);
        self
    }

    /// Runs until every handle is gone or the store fails (after which sending would break the
    /// persist-before-send rule).
    pub async fn run(
        mut self,
        mut requests: mpsc::Receiver<Request>,
        mut events: mpsc::Receiver<NetEvent>,
    ) {
        let started = tokio::time::Instant::now();
        loop {
            let mut step = Step::default();
            let next_tick = started + Duration::from_millis(self.replica.next_tick());
            tokio::select! {
                request = requests.recv() => match request {
                    Some(request) => self.on_request(request, &mut step),
                    None => return,
                },
                event = events.recv() => match event {
                    Some(event) => self.on_event(event, &mut step),
                    None => return,
                },
                _ = tokio::time::sleep_until(next_tick) => {
                    let peers: Vec<MemberIndex> = self.replica.peers().collect();
                    for peer in peers {
                        let ready = self.network.link_ready(peer);
                        step.absorb(self.input(Input::LinkReady { peer, ready }));
                    }
                    let now = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                    step.absorb(self.input(Input::Tick { now }));
                }
            }
            for _ in 0..MAX_BATCH {
                match events.try_recv() {
                    Ok(event) => self.on_event(event, &mut step),
                    Err(_) => break,
                }
            }
            if let Err(error) = self.commit(step).await {
                tracing::error!(%error, "store failed; stopping the node");
                return;
            }
        }
    }

    fn on_request(&mut self, request: Request, step: &mut Step) {
        match request {
            Request::Get(key, reply) => {
                let _ = reply.send(self.replica.get(&key).cloned());
            }
            Request::List(query, reply) => {
                let items = self
                    .replica
                    .states()
                    .filter(|(k, _)| k.as_bytes().starts_with(query.prefix.as_bytes()))
                    .filter(|(k, _)| query.after.as_ref().is_none_or(|after| *k > after))
                    .filter_map(|(k, s)| s.accepted.as_ref().map(|c| (k, c)))
                    .filter(|(_, c)| c.value.as_data().is_some())
                    .map(|(k, c)| (k.clone(), c.clone()))
                    .take(query.limit.min(MAX_LIST))
                    .collect();
                let _ = reply.send(items);
            }
            Request::Views(after, limit, reply) => {
                let views = self
                    .replica
                    .states()
                    .filter(|(k, _)| after.as_ref().is_none_or(|after| *k > after))
                    .map(|(k, s)| (k.clone(), s.view))
                    .take(limit.min(MAX_LIST))
                    .collect();
                let _ = reply.send(views);
            }
            Request::Digest(reply) => {
                let fenced = self.fence.len(&self.replica);
                let _ = reply.send(crate::digest::StoreDigest::of(&mut self.replica, fenced));
            }
            Request::Write(key, value, reply) => {
                if self.pending >= MAX_PENDING_WRITES {
                    let _ = reply.send(Err(NodeError::Busy));
                    return;
                }
                if let Some(view) = self.fence.holds(&key, &self.replica) {
                    let _ = reply.send(Err(NodeError::SittingOut { view }));
                    return;
                }
                let hash = value.hash();
                let input = Input::Propose {
                    key: key.clone(),
                    value,
                };
                match self.try_input(input) {
                    Ok(effects) => {
                        step.absorb(effects);
                        self.pending += 1;
                        self.waiters.entry(key).or_default().push(Waiter {
                            value: hash,
                            since: Instant::now(),
                            reply,
                        });
                    }
                    Err(error) => {
                        let _ = reply.send(Err(NodeError::Rejected(error.to_string())));
                    }
                }
            }
            Request::Status(reply) => {
                let _ = reply.send(self.status());
            }
            Request::Recording(reply) => {
                let _ = reply.send(self.recording.clone());
            }
        }
    }

    fn on_event(&mut self, event: NetEvent, step: &mut Step) {
        match event {
            // The replica opens anti-entropy with a new neighbour at its next tick.
            NetEvent::PeerUp(peer) => {
                self.heard = Instant::now();
                step.absorb(self.input(Input::PeerUp(peer)));
            }
            NetEvent::PeerDown(peer) => step.absorb(self.input(Input::PeerDown(peer))),
            NetEvent::Message { from, bytes } => {
                self.heard = Instant::now();
                self.on_message(from, &bytes, step);
            }
        }
    }

    fn on_message(&mut self, from: MemberIndex, bytes: &[u8], step: &mut Step) {
        match decode(bytes, self.members) {
            Ok(message) => {
                let message = self.fence.admit(message, &self.replica);
                step.absorb(self.input(Input::Receive { from, message }));
            }
            Err(WireError::Version(version)) => {
                tracing::warn!(
                    peer = from,
                    version,
                    "this member writes a wire version this build does not read: upgrade \
                         this member, or pin node.wire_version on that one (docs/OPERATING.md)"
                );
                self.drop_peer(from);
            }
            Err(error) => {
                tracing::warn!(peer = from, %error, "undecodable message");
                self.drop_peer(from);
            }
        }
    }

    /// Hands the replica one input (logging it when recording); a refused proposal is the
    /// only error.
    fn try_input(&mut self, input: Input) -> Result<Step, beaufort_core::replica::ProposeError> {
        if let Some(recording) = &mut self.recording {
            if recording.room() {
                recording.inputs.push(input.clone());
            }
        }
        self.replica.apply(input)
    }

    /// [`Runtime::try_input`] for the inputs that cannot fail.
    fn input(&mut self, input: Input) -> Step {
        self.try_input(input).unwrap_or_default()
    }

    fn send(&mut self, messages: Vec<(MemberIndex, beaufort_core::wire::SyncMessage)>) {
        for (to, message) in messages {
            match encode_as(&message, self.wire_version) {
                Ok(bytes) => {
                    if let Some(recording) = &mut self.recording {
                        if recording.room() {
                            recording.sent.push((to, bytes.clone()));
                        }
                    }
                    self.network.send(to, bytes);
                }
                Err(error) => tracing::error!(%error, "could not encode an outgoing message"),
            }
        }
    }

    fn drop_peer(&mut self, peer: MemberIndex) {
        let _ = self.input(Input::PeerDown(peer));
        self.network.fault(peer);
    }

    /// Persists, then sends, then reports: the order the core's contract requires for own votes.
    /// A step in which this member cast no vote only forwards what others signed (and records
    /// what it learnt); losing that in a crash costs a repair, never a double vote, so its
    /// messages leave before the fsync instead of waiting for it. The store's fsync latency
    /// (milliseconds, with spikes to ~0.2 s on a shared disk) then delays only the two hops per
    /// decision where this member votes.
    async fn commit(&mut self, mut step: Step) -> Result<(), beaufort_store::StoreError> {
        // The core says which messages may leave before the write (Step::early) and which only
        // after it; the runtime only follows.
        self.send(std::mem::take(&mut step.early));
        let messages = std::mem::take(&mut step.messages);
        if !step.persist.is_empty() || !step.evidence.is_empty() {
            let states: Vec<_> = step
                .persist
                .iter()
                .filter_map(|k| self.replica.state(k).map(|s| (k.clone(), s.clone())))
                .collect();
            let evidence = step.evidence.clone();
            let store = self.store.clone();
            let started = Instant::now();
            tokio::task::spawn_blocking(move || {
                store.persist(states.iter().map(|(k, s)| (k, s)), &evidence)
            })
            .await
            .map_err(|e| beaufort_store::StoreError::Database(e.to_string()))??;
            self.metrics
                .persist_seconds
                .observe(started.elapsed().as_secs_f64());
        }
        let _ = self.input(Input::Durable);
        self.send(messages);
        for fault in step.faults {
            tracing::warn!(peer = fault.peer, reason = %fault.reason, "peer fault");
            self.drop_peer(fault.peer);
        }
        if step.rewire {
            tracing::info!("own writes stalled: re-wiring");
            self.network.rewire();
        }
        self.metrics
            .excluded
            .set(self.replica.excluded().len() as i64);
        self.metrics
            .deferred_updates
            .inc_by(step.stats.deferred_updates as u64);
        for decision in step.decisions {
            self.metrics.decisions.inc();
            if let Some(waiters) = self.waiters.get_mut(&decision.key) {
                let won = decision.certified.value.hash();
                let (done, keep): (Vec<Waiter>, Vec<Waiter>) =
                    waiters.drain(..).partition(|w| w.value == won);
                *waiters = keep;
                for waiter in done {
                    self.pending -= 1;
                    let latency = waiter.since.elapsed();
                    self.metrics.commit_latency.observe(latency.as_secs_f64());
                    if self.recent_commits.len() == RECENT_COMMITS {
                        self.recent_commits.pop_back();
                    }
                    self.recent_commits.push_front(RecentCommit {
                        key: crate::key_text(&decision.key),
                        latency_ms: u64::try_from(latency.as_millis()).unwrap_or(u64::MAX),
                    });
                    let _ = waiter.reply.send(Ok(decision.certified.clone()));
                }
                if waiters.is_empty() {
                    self.waiters.remove(&decision.key);
                }
            }
            match self.apps.learn(&decision.key, &decision.certified) {
                Ok(Some(name)) => tracing::info!(contract = name, "installed contract"),
                Ok(None) => {}
                Err(error) => {
                    tracing::error!(key = %decision.key, %error, "could not install a contract");
                }
            }
            self.changes.publish(Change {
                key: decision.key,
                certified: decision.certified,
            });
        }
        for (key, value) in step.dropped_proposals {
            let lost = value.hash();
            let winner = self.replica.get(&key).cloned();
            if let Some(waiters) = self.waiters.get_mut(&key) {
                let (done, keep): (Vec<Waiter>, Vec<Waiter>) =
                    waiters.drain(..).partition(|w| w.value == lost);
                *waiters = keep;
                for waiter in done {
                    self.pending -= 1;
                    let _ = waiter.reply.send(Err(NodeError::Lost(winner.clone())));
                }
                if waiters.is_empty() {
                    self.waiters.remove(&key);
                }
            }
        }
        Ok(())
    }

    fn status(&self) -> Status {
        let in_progress = self
            .waiters
            .keys()
            .take(100)
            .filter_map(|k| {
                self.replica.state(k).map(|s| crate::KeyProgress {
                    key: crate::key_text(k),
                    view: s.view,
                    top_round: s.top_round(),
                    votes: s.vote_count(),
                })
            })
            .collect();
        Status {
            member: self.replica.me(),
            members: self.members,
            neighbours: self.replica.peers().collect(),
            excluded: self.replica.excluded().keys().copied().collect(),
            keys: self.replica.states().count(),
            pending_writes: self.pending,
            fenced_keys: self.fence.len(&self.replica),
            silent_ms: u64::try_from(self.heard.elapsed().as_millis()).unwrap_or(u64::MAX),
            in_progress,
            recent_commits: self.recent_commits.iter().cloned().collect(),
        }
    }
}

//! The discrete-event loop.
//!
//! Events sit in a binary heap ordered by (virtual time, sequence number), so two events at the
//! same time run in the order they were scheduled, and one ChaCha8 generator seeded from the
//! config supplies every random choice (delays, loss, timer offsets, re-wiring, adversaries).
//! Nothing depends on wall-clock time, thread scheduling or hash-map order: a seed replays exactly.
//!
//! Every message goes through [`encode`] and [`decode`], which exercises the wire bounds and gives
//! the byte counts. A message is lost if the loss draw says so, if the two ends are in different
//! partition groups when it is sent or arrives, if the link was dropped meanwhile, or if the
//! receiver crashed (or restarted) while it was in flight.

use crate::byzantine::{Adversary, AdversaryStats, Strategy};
use crate::config::{FaultEvent, Micros, SimConfig, Transport, MS};
use crate::invariants::{Checker, HonestDecision, Violation};
use crate::keys::{ForbiddenPrefixHook, Keyring};
use crate::network::{index, Overlay, Partition};
use crate::node::Node;
use crate::replay::{ReplayStep, Script};
use crate::SimError;
use beaufort_core::replica::{Replica, Step};
use beaufort_core::types::{Key, MemberIndex, View};
use beaufort_core::vote::VoteKind;
use beaufort_core::wire::{decode, encode, SyncMessage};
use beaufort_crypto::hash::{hash, Digest, Domain};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::sync::Arc;

/// How often the simulator checks whether the run has settled.
const TICK: Micros = 250 * MS;

/// Bytes one member sent and received (encoded lengths).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Bytes put on the wire by this member.
    pub sent: u64,
    /// Bytes delivered to this member.
    pub received: u64,
}

/// Counters of what happened in a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Events processed.
    pub events: u64,
    /// Messages sent.
    pub messages_sent: u64,
    /// Messages delivered.
    pub messages_delivered: u64,
    /// Messages lost (loss, partition, dropped link, crashed receiver).
    pub messages_lost: u64,
    /// Bytes delivered.
    pub bytes_delivered: u64,
    /// Bytes lost.
    pub bytes_lost: u64,
    /// Bytes still in flight when the run ended.
    pub bytes_in_flight: u64,
    /// Equivocation proofs produced by honest members (each member counts its own).
    pub evidence_produced: u64,
    /// Invalid signatures honest members caught.
    pub invalid_signatures_caught: u64,
    /// Byzantine members excluded by at least one honest member at the end.
    pub members_excluded: u64,
    /// Faults honest members reported against neighbours.
    pub faults_reported: u64,
    /// Of those, faults reported against honest neighbours (should be zero).
    pub faults_against_honest: u64,
    /// Links dropped because of faults.
    pub links_dropped: u64,
    /// Links added by re-wiring (stuck proposals, dropped links, connectivity repair).
    pub rewires: u64,
    /// Honest crash-restart cycles.
    pub crash_restarts: u64,
    /// Messages honest members sent that did not encode or decode (should be zero).
    pub wire_errors: u64,
    /// Proposals made.
    pub proposals: u64,
    /// Values the core gave up re-proposing (the hook refused them later).
    pub dropped_proposals: u64,
}

/// Everything a run produced.
#[derive(Clone, Debug)]
pub struct RunReport {
    /// The seed.
    pub seed: u64,
    /// Number of members.
    pub members: usize,
    /// Broken invariants (empty on success).
    pub violations: Vec<Violation>,
    /// Number of decided (key, view) instances.
    pub decided_instances: usize,
    /// Every honest decision in order.
    pub decisions: Vec<HonestDecision>,
    /// Virtual time at the end.
    pub end_time: Micros,
    /// Per-member traffic.
    pub traffic: Vec<Traffic>,
    /// Counters.
    pub stats: SimStats,
    /// What the adversaries did.
    pub adversary: AdversaryStats,
    /// Strategies the Byzantine members used (initial and switched to).
    pub strategies: BTreeSet<Strategy>,
    /// Descriptions of faults reported against honest members (should be empty).
    pub honest_faults: Vec<String>,
    /// Keys not settled at the liveness bound: honest members voted on them (or hold different
    /// certified values) and some did not decide although the network had healed.
    pub stalled_keys: usize,
    /// A hash of every event the run handled, in order, with its time and content (a delivered
    /// message by the hash of its bytes). The same seed and configuration must give the same
    /// hash on any machine: the determinism auditor (anything that leaks a clock, a thread or an
    /// unordered map into a run changes it).
    pub event_hash: Digest,
}

impl Event {
    /// Folds the event, with its time, into the run's audit hash ([`RunReport::event_hash`]).
    fn audit(&self, at: Micros, audit: Digest) -> Digest {
        let members = |a: MemberIndex, b: MemberIndex| [a.to_le_bytes(), b.to_le_bytes()].concat();
        let (kind, fields): (u8, Vec<u8>) = match self {
            Event::Deliver {
                from,
                to,
                epoch,
                bytes,
            } => {
                let mut fields = members(*from, *to);
                fields.extend_from_slice(&epoch.to_le_bytes());
                fields.extend_from_slice(hash(Domain::Other, &[bytes]).as_bytes());
                (0, fields)
            }
            Event::Wake(m, incarnation) => (
                1,
                [&m.to_le_bytes()[..], &incarnation.to_le_bytes()].concat(),
            ),
            Event::Reconnect(a, b) => (3, members(*a, *b)),
            Event::Propose(i) => (4, (*i as u64).to_le_bytes().to_vec()),
            Event::Fault(i) => (5, (*i as u64).to_le_bytes().to_vec()),
            Event::Tick => (6, Vec::new()),
        };
        hash(
            Domain::Other,
            &[
                b"beaufort sim event",
                audit.as_bytes(),
                &at.to_le_bytes(),
                &[kind],
                &fields,
            ],
        )
    }
}

enum Event {
    Deliver {
        from: MemberIndex,
        to: MemberIndex,
        epoch: u64,
        bytes: Vec<u8>,
    },
    /// A member's replica is due a tick ([`Replica::next_tick`]), in the given incarnation.
    Wake(MemberIndex, u64),
    Reconnect(MemberIndex, MemberIndex),
    Propose(usize),
    Fault(usize),
    Tick,
}

struct Scheduled {
    at: Micros,
    seq: u64,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// One simulated run.
pub struct Simulation {
    cfg: SimConfig,
    rng: ChaCha8Rng,
    now: Micros,
    seq: u64,
    queue: BinaryHeap<Reverse<Scheduled>>,
    nodes: Vec<Node>,
    adversaries: BTreeMap<MemberIndex, Adversary>,
    overlay: Overlay,
    partition: Option<Partition>,
    blacklist: Vec<BTreeSet<MemberIndex>>,
    link_epochs: BTreeMap<(MemberIndex, MemberIndex), u64>,
    last_arrival: BTreeMap<(MemberIndex, MemberIndex), (u64, Micros)>,
    checker: Checker,
    stats: SimStats,
    traffic: Vec<Traffic>,
    strategies: BTreeSet<Strategy>,
    honest_faults: Vec<String>,
    /// Keys found stalled at the liveness bound (see [`RunReport::stalled_keys`]).
    stalled_keys: usize,
    /// See [`RunReport::event_hash`].
    event_hash: Digest,
    recorder: Option<Vec<ReplayStep>>,
    sent_own_votes: BTreeSet<(
        MemberIndex,
        Key,
        View,
        VoteKind,
        u32,
        beaufort_core::types::ValueHash,
    )>,
}

impl Simulation {
    /// Sets up a run: keys, members, adversaries, overlay, timers and the scheduled workload.
    pub fn new(cfg: SimConfig) -> Result<Simulation, SimError> {
        let n = cfg.members;
        if !(1..=1024).contains(&n) {
            return Err(SimError::Config(format!(
                "members must be 1..=1024, got {n}"
            )));
        }
        if let Some(bad) = cfg.byzantine.keys().find(|m| usize::from(**m) >= n) {
            return Err(SimError::Config(format!(
                "Byzantine member {bad} out of range"
            )));
        }
        let keyring = Arc::new(Keyring::new(cfg.crypto, n, cfg.seed)?);
        let hook: Arc<dyn beaufort_core::hook::ValidationHook> = Arc::new(ForbiddenPrefixHook);
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let nodes: Vec<Node> = (0..n)
            .map(|i| Node::new(index(i), keyring.clone(), hook.clone(), cfg.cadence))
            .collect();
        let adversaries: BTreeMap<MemberIndex, Adversary> = cfg
            .byzantine
            .iter()
            .map(|(&m, &s)| (m, Adversary::new(m, s, &keyring)))
            .collect();
        let overlay = Overlay::random(n, cfg.network.degree, &mut rng);
        let byzantine: BTreeSet<MemberIndex> = cfg.byzantine.keys().copied().collect();
        let mut sim = Simulation {
            checker: Checker::new(n, byzantine),
            strategies: cfg.byzantine.values().copied().collect(),
            rng,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            nodes,
            adversaries,
            overlay,
            partition: None,
            blacklist: vec![BTreeSet::new(); n],
            link_epochs: BTreeMap::new(),
            last_arrival: BTreeMap::new(),
            stats: SimStats::default(),
            traffic: vec![Traffic::default(); n],
            honest_faults: Vec::new(),
            stalled_keys: 0,
            event_hash: Digest::ZERO,
            recorder: None,
            sent_own_votes: BTreeSet::new(),
            cfg,
        };
        sim.ensure_connected();
        for a in 0..n {
            let a = index(a);
            let neighbours: Vec<MemberIndex> = sim.overlay.neighbours(a).collect();
            if let Some(replica) = sim.nodes[usize::from(a)].replica_mut() {
                for b in neighbours {
                    replica.add_peer(b);
                }
            }
            sim.schedule_wake(a);
        }
        for i in 0..sim.cfg.proposals.len() {
            let at = sim.cfg.proposals[i].0;
            sim.schedule(at, Event::Propose(i));
        }
        for i in 0..sim.cfg.faults.len() {
            let at = sim.cfg.faults[i].0;
            sim.schedule(at, Event::Fault(i));
        }
        sim.schedule(TICK, Event::Tick);
        Ok(sim)
    }

    /// Records the run as a replay script (proposals, deliveries of state and evidence, crashes
    /// and restarts), so a failing seed can be re-run step by step.
    pub fn record(&mut self) {
        self.recorder = Some(Vec::new());
    }

    /// The recorded script, if [`Simulation::record`] was called.
    pub fn script(&self) -> Option<Script> {
        let steps = self.recorder.clone()?;
        Some(Script {
            description: Some(format!(
                "recorded run: {} members, seed {}",
                self.cfg.members, self.cfg.seed
            )),
            members: self.cfg.members,
            byzantine: self.cfg.byzantine.keys().copied().collect(),
            crypto: self.cfg.crypto,
            key_seed: self.cfg.seed,
            aggregate_wait: self.cfg.cadence.aggregate_wait,
            steps,
        })
    }

    /// The members' nodes (replicas and disks), for inspection by tests.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The invariant checker, for inspection by tests.
    pub fn checker(&self) -> &Checker {
        &self.checker
    }

    /// Every own vote each honest member put into a message it sent:
    /// (member, key, view, kind, round, value).
    pub fn sent_own_votes(
        &self,
    ) -> &BTreeSet<(
        MemberIndex,
        Key,
        View,
        VoteKind,
        u32,
        beaufort_core::types::ValueHash,
    )> {
        &self.sent_own_votes
    }

    /// Runs to the end: until the run settles after the last disruption, or until the liveness
    /// bound expires (then the unsettled parts are liveness violations).
    pub fn run(mut self) -> RunReport {
        self.run_to_end();
        self.report()
    }

    /// Runs to the end and keeps the simulation for inspection.
    pub fn run_to_end(&mut self) {
        let settle_from = self.cfg.last_disruption();
        let deadline = settle_from + self.cfg.liveness_bound;
        let mut settled = false;
        while let Some(Reverse(next)) = self.queue.pop() {
            if next.at > deadline {
                break;
            }
            self.now = next.at;
            self.stats.events += 1;
            self.event_hash = next.event.audit(next.at, self.event_hash);
            if matches!(next.event, Event::Tick)
                && self.cfg.stop_when_settled
                && self.now >= settle_from
                && self.is_settled()
            {
                settled = true;
                break;
            }
            self.handle(next.event);
        }
        if !settled {
            self.now = self.now.max(deadline);
            let running = self.running_honest();
            let gaps = self.checker.liveness_gaps(&running);
            self.stalled_keys = self.checker.stalled_keys(&running).len();
            self.checker.report_liveness(gaps, self.now);
        }
        self.stats.bytes_in_flight = self
            .queue
            .iter()
            .map(|Reverse(s)| match &s.event {
                Event::Deliver { bytes, .. } => bytes.len() as u64,
                _ => 0,
            })
            .sum();
    }

    fn running_honest(&self) -> Vec<(MemberIndex, &Replica)> {
        self.nodes
            .iter()
            .filter(|n| !self.cfg.is_byzantine(n.index()))
            .filter_map(|n| n.replica().map(|r| (n.index(), r)))
            .collect()
    }

    fn is_settled(&self) -> bool {
        let honest = self.nodes.len() - self.cfg.byzantine.len();
        let running = self.running_honest();
        running.len() == honest && self.checker.liveness_gaps(&running).is_empty()
    }

    /// The report of a finished run.
    pub fn report(&self) -> RunReport {
        let mut stats = self.stats;
        let excluded: BTreeSet<MemberIndex> = self
            .running_honest()
            .iter()
            .flat_map(|(_, r)| r.excluded().keys().copied())
            .collect();
        stats.members_excluded = excluded.len() as u64;
        let mut adversary = AdversaryStats::default();
        for a in self.adversaries.values() {
            adversary.add(&a.stats());
        }
        RunReport {
            seed: self.cfg.seed,
            members: self.cfg.members,
            violations: self.checker.violations().to_vec(),
            decided_instances: self.checker.decided_instances(),
            decisions: self.checker.decisions().to_vec(),
            end_time: self.now,
            traffic: self.traffic.clone(),
            stats,
            adversary,
            strategies: self.strategies.clone(),
            honest_faults: self.honest_faults.clone(),
            stalled_keys: self.stalled_keys,
            event_hash: self.event_hash,
        }
    }

    fn schedule(&mut self, at: Micros, event: Event) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled {
            at,
            seq: self.seq,
            event,
        }));
    }

    /// Schedules the member's next tick when its replica asks for it (the replica's clock is
    /// the simulated one in milliseconds).
    fn schedule_wake(&mut self, member: MemberIndex) {
        let node = &self.nodes[usize::from(member)];
        let incarnation = node.incarnation();
        let Some(replica) = node.replica() else {
            return;
        };
        let at = replica.next_tick().saturating_mul(1000).max(self.now + 1);
        self.schedule(at, Event::Wake(member, incarnation));
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Deliver {
                from,
                to,
                epoch,
                bytes,
            } => self.deliver(from, to, epoch, bytes),
            Event::Wake(m, incarnation) => {
                if self.nodes[usize::from(m)].incarnation() != incarnation {
                    return;
                }
                if let Some(replica) = self.nodes[usize::from(m)].replica_mut() {
                    let step = replica.tick(self.now / 1000);
                    self.apply(m, step);
                }
                self.schedule_wake(m);
            }
            Event::Reconnect(a, b) => self.reconnect(a, b),
            Event::Propose(i) => self.propose(i),
            Event::Fault(i) => self.fault(i),
            Event::Tick => self.schedule(self.now + TICK, Event::Tick),
        }
    }

    fn propose(&mut self, i: usize) {
        let proposal = self.cfg.proposals[i].1.clone();
        let m = proposal.member;
        let Some(replica) = self.nodes[usize::from(m)].replica_mut() else {
            return;
        };
        match replica.propose(proposal.key.clone(), proposal.value.clone()) {
            Ok((step, _)) => {
                self.stats.proposals += 1;
                self.checker.note_proposal(&proposal.value);
                if let Some(recorder) = &mut self.recorder {
                    recorder.push(ReplayStep::propose(m, &proposal.key, &proposal.value));
                }
                self.apply(m, step);
            }
            Err(_) => self.stats.dropped_proposals += 1,
        }
    }

    fn fault(&mut self, i: usize) {
        let fault = self.cfg.faults[i].1.clone();
        match fault {
            FaultEvent::Partition(groups) => {
                self.partition = Some(Partition::new(self.cfg.members, &groups));
            }
            FaultEvent::Heal => self.partition = None,
            FaultEvent::Crash(m) => self.crash(m),
            FaultEvent::Restart(m) => self.restart(m),
            FaultEvent::SwitchStrategy(m, strategy) => {
                if let Some(adversary) = self.adversaries.get_mut(&m) {
                    adversary.switch(strategy);
                    self.strategies.insert(strategy);
                }
            }
        }
    }

    fn crash(&mut self, m: MemberIndex) {
        let node = &mut self.nodes[usize::from(m)];
        if !node.is_up() {
            return;
        }
        node.crash();
        if let Some(recorder) = &mut self.recorder {
            recorder.push(ReplayStep::Crash(m));
        }
        let neighbours: Vec<MemberIndex> = self.overlay.neighbours(m).collect();
        for p in neighbours {
            self.break_link(m, p);
            if let Some(replica) = self.nodes[usize::from(p)].replica_mut() {
                replica.remove_peer(m);
            }
        }
    }

    fn restart(&mut self, m: MemberIndex) {
        let node = &mut self.nodes[usize::from(m)];
        if node.is_up() {
            return;
        }
        node.restart();
        if !self.cfg.is_byzantine(m) {
            self.stats.crash_restarts += 1;
        }
        if let Some(recorder) = &mut self.recorder {
            recorder.push(ReplayStep::Restart(m));
        }
        self.schedule_wake(m);
        let neighbours: Vec<MemberIndex> = self.overlay.neighbours(m).collect();
        for p in neighbours {
            self.link_up(m, p);
        }
    }

    /// Both ends of a link learn about each other (each replica starts anti-entropy over it at
    /// its next tick).
    fn link_up(&mut self, a: MemberIndex, b: MemberIndex) {
        if !self.nodes[usize::from(a)].is_up() || !self.nodes[usize::from(b)].is_up() {
            return;
        }
        for (x, y) in [(a, b), (b, a)] {
            if let Some(replica) = self.nodes[usize::from(x)].replica_mut() {
                replica.add_peer(y);
            }
        }
    }

    fn connect(&mut self, a: MemberIndex, b: MemberIndex) {
        if self.overlay.connect(a, b) {
            self.stats.rewires += 1;
            self.link_up(a, b);
        }
    }

    fn disconnect(&mut self, a: MemberIndex, b: MemberIndex) {
        if self.overlay.disconnect(a, b) {
            self.break_link(a, b);
            for (x, y) in [(a, b), (b, a)] {
                if let Some(replica) = self.nodes[usize::from(x)].replica_mut() {
                    replica.remove_peer(y);
                }
            }
        }
    }

    /// Connects `m` to a random member it is not linked to (and has not blamed).
    fn rewire(&mut self, m: MemberIndex) {
        let candidates: Vec<MemberIndex> = (0..self.cfg.members)
            .map(index)
            .filter(|&c| {
                c != m
                    && !self.overlay.linked(m, c)
                    && !self.blacklist[usize::from(m)].contains(&c)
                    && !self.blacklist[usize::from(c)].contains(&m)
            })
            .collect();
        if let Some(&c) = candidates.choose(&mut self.rng) {
            self.connect(m, c);
        }
    }

    /// Joins the honest members' components with random links, if the config asks for it.
    fn ensure_connected(&mut self) {
        if !self.cfg.network.ensure_honest_connected {
            return;
        }
        let honest: BTreeSet<MemberIndex> = (0..self.cfg.members)
            .map(index)
            .filter(|m| !self.cfg.is_byzantine(*m))
            .collect();
        loop {
            let components = self.overlay.components(&honest);
            if components.len() <= 1 {
                return;
            }
            let (Some(&a), Some(&b)) = (
                components[0].choose(&mut self.rng),
                components[1].choose(&mut self.rng),
            ) else {
                return;
            };
            self.blacklist[usize::from(a)].remove(&b);
            self.blacklist[usize::from(b)].remove(&a);
            self.connect(a, b);
        }
    }

    /// Re-wires members whose own vote has been waiting in one view for too long.
    /// Persists, checks, then sends a step's effects (the core's contract, in that order).
    fn apply(&mut self, m: MemberIndex, step: Step) {
        let node = &mut self.nodes[usize::from(m)];
        node.persist(&step);
        let honest = !self.cfg.is_byzantine(m);
        if honest {
            if let Some(replica) = self.nodes[usize::from(m)].replica() {
                for key in &step.persist {
                    if let Some(state) = replica.state(key) {
                        self.checker.note_state(m, key, state, self.now);
                    }
                }
            }
            for decision in &step.decisions {
                self.checker.note_decision(m, decision, self.now);
            }
            self.stats.evidence_produced += step.evidence.len() as u64;
            self.stats.invalid_signatures_caught += step.stats.invalid_signatures as u64;
            self.stats.dropped_proposals += step.dropped_proposals.len() as u64;
            let mut blamed = BTreeSet::new();
            for fault in &step.faults {
                self.stats.faults_reported += 1;
                if !self.cfg.is_byzantine(fault.peer) {
                    self.stats.faults_against_honest += 1;
                    if self.honest_faults.len() < 16 {
                        self.honest_faults.push(format!(
                            "t={} member {m} blamed honest member {}: {}",
                            self.now, fault.peer, fault.reason
                        ));
                    }
                }
                blamed.insert(fault.peer);
            }
            for peer in blamed {
                self.drop_link(m, peer);
            }
            // The core decides when own writes have stalled (crate `beaufort_core::stall`).
            if step.rewire {
                self.rewire(m);
            }
        }
        // Persisted above, synchronously: both kinds of message may leave now.
        if let Some(replica) = self.nodes[usize::from(m)].replica_mut() {
            replica.mark_durable();
        }
        for (to, message) in step.early.into_iter().chain(step.messages) {
            self.send(m, to, message);
        }
    }

    fn drop_link(&mut self, m: MemberIndex, peer: MemberIndex) {
        self.blacklist[usize::from(m)].insert(peer);
        if self.overlay.linked(m, peer) {
            self.disconnect(m, peer);
            self.stats.links_dropped += 1;
            self.rewire(m);
            self.ensure_connected();
        }
    }

    fn send(&mut self, from: MemberIndex, to: MemberIndex, message: SyncMessage) {
        if !self.overlay.linked(from, to) {
            return;
        }
        let message = if let Some(adversary) = self.adversaries.get_mut(&from) {
            let Some(replica) = self.nodes[usize::from(from)].replica() else {
                return;
            };
            match adversary.outgoing(replica, to, message, &mut self.rng) {
                Some(message) => {
                    self.checker.note_byzantine_message(&message);
                    message
                }
                None => return,
            }
        } else {
            self.note_sent_votes(from, &message);
            message
        };
        let bytes = match encode(&message) {
            Ok(bytes) => bytes,
            Err(_) => {
                self.stats.wire_errors += 1;
                return;
            }
        };
        let len = bytes.len() as u64;
        self.traffic[usize::from(from)].sent += len;
        self.stats.messages_sent += 1;
        let cut = self
            .partition
            .as_ref()
            .is_some_and(|p| !p.reachable(from, to));
        if cut || self.rng.gen_bool(self.cfg.network.loss.clamp(0.0, 1.0)) {
            self.lose(len);
            self.connection_failed(from, to);
            return;
        }
        let net = &self.cfg.network;
        let jitter = net.delay_jitter.min(net.delay_mean);
        let delay = self
            .rng
            .gen_range(net.delay_mean - jitter..=net.delay_mean + net.delay_jitter)
            .max(1);
        let epoch = self.link_epoch(from, to);
        let mut at = self.now + delay;
        if self.cfg.network.transport == Transport::Stream {
            // FIFO per direction: never arrive before an earlier message of the same connection.
            if let Some(&(e, last)) = self.last_arrival.get(&(from, to)) {
                if e == epoch {
                    at = at.max(last + 1);
                }
            }
            self.last_arrival.insert((from, to), (epoch, at));
        }
        self.schedule(
            at,
            Event::Deliver {
                from,
                to,
                epoch,
                bytes,
            },
        );
    }

    fn note_sent_votes(&mut self, from: MemberIndex, message: &SyncMessage) {
        if let SyncMessage::Updates { updates, .. } = message {
            for update in updates {
                for wire in update.votes.iter().filter(|w| w.member == from) {
                    for value in wire.ballot.values() {
                        self.sent_own_votes.insert((
                            from,
                            update.key.clone(),
                            update.view,
                            wire.kind,
                            wire.round,
                            value,
                        ));
                    }
                }
            }
        }
    }

    /// The current connection number of a link: it changes whenever the connection breaks (an
    /// end crashes, the link is dropped or re-made), so messages of an earlier connection are lost.
    fn link_epoch(&self, a: MemberIndex, b: MemberIndex) -> u64 {
        self.link_epochs
            .get(&(a.min(b), a.max(b)))
            .copied()
            .unwrap_or(0)
    }

    fn break_link(&mut self, a: MemberIndex, b: MemberIndex) {
        *self.link_epochs.entry((a.min(b), a.max(b))).or_default() += 1;
    }

    /// With [`Transport::Stream`], a lost message breaks the connection: both ends drop the peer
    /// and reconnect later.
    fn connection_failed(&mut self, a: MemberIndex, b: MemberIndex) {
        if self.cfg.network.transport != Transport::Stream {
            return;
        }
        self.break_link(a, b);
        for (x, y) in [(a, b), (b, a)] {
            if let Some(replica) = self.nodes[usize::from(x)].replica_mut() {
                replica.remove_peer(y);
            }
        }
        self.schedule_reconnect(a, b);
    }

    fn schedule_reconnect(&mut self, a: MemberIndex, b: MemberIndex) {
        let (lo, hi) = self.cfg.network.reconnect_after;
        let delay = self.rng.gen_range(lo.min(hi)..=hi.max(lo)).max(1);
        self.schedule(self.now + delay, Event::Reconnect(a, b));
    }

    /// A broken connection is re-established, unless the link was dropped meanwhile; while the
    /// two ends are partitioned the attempt fails and is retried.
    fn reconnect(&mut self, a: MemberIndex, b: MemberIndex) {
        if !self.overlay.linked(a, b) {
            return;
        }
        let cut = self.partition.as_ref().is_some_and(|p| !p.reachable(a, b));
        if cut {
            self.schedule_reconnect(a, b);
            return;
        }
        self.break_link(a, b);
        self.link_up(a, b);
    }

    fn lose(&mut self, len: u64) {
        self.stats.messages_lost += 1;
        self.stats.bytes_lost += len;
    }

    fn deliver(&mut self, from: MemberIndex, to: MemberIndex, epoch: u64, bytes: Vec<u8>) {
        let len = bytes.len() as u64;
        let cut = self
            .partition
            .as_ref()
            .is_some_and(|p| !p.reachable(from, to));
        if !self.nodes[usize::from(to)].is_up()
            || self.link_epoch(from, to) != epoch
            || !self.overlay.linked(from, to)
        {
            self.lose(len);
            return;
        }
        if cut {
            self.lose(len);
            self.connection_failed(from, to);
            return;
        }
        self.stats.messages_delivered += 1;
        self.stats.bytes_delivered += len;
        self.traffic[usize::from(to)].received += len;
        let message = match decode(&bytes, self.cfg.members) {
            Ok(message) => message,
            Err(_) => {
                if !self.cfg.is_byzantine(from) {
                    self.stats.wire_errors += 1;
                }
                return;
            }
        };
        if let Some(recorder) = &mut self.recorder {
            if matches!(
                message,
                SyncMessage::Updates { .. } | SyncMessage::Evidence { .. }
            ) {
                recorder.push(ReplayStep::Deliver {
                    from,
                    to,
                    message: message.clone(),
                });
            }
        }
        if let Some(replica) = self.nodes[usize::from(to)].replica_mut() {
            let step = replica.receive(from, message);
            self.apply(to, step);
        }
    }
}

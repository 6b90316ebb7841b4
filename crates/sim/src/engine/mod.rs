//! The one simulator event loop: virtual time, a CPU clock per member, per-member upload and
//! download links with queueing, per-link latency with jitter, loss, partitions, crash and
//! restart, an overlay that re-wires, the workload, and the metrics.
//!
//! The adversarial checker ([`crate::sim`]) and the performance engine (crate `beaufort-perf`)
//! both run on it: the checker with free CPU and unlimited links ([`Free`], infinite bandwidth),
//! the performance engine with a cost table and 20 Mbit/s access links. A protocol plugs in as
//! one [`Member`] per simulated member (Beaufort's is [`crate::member::SimMember`], the real
//! core; the PBFT and Tendermint baselines are the performance engine's). The engine calls a
//! member for every input; the member writes its effects into a [`Ctx`]. The engine charges the
//! handler's cost to the member's CPU ([`CostModel`]) and only then lets its messages leave: a
//! member busy verifying is busy. Inputs that arrive while a member is busy wait for it, in order.
//!
//! Events sit in a binary heap ordered by (virtual time, sequence number), so two events at the
//! same time run in the order they were scheduled, and one ChaCha8 generator seeded from the
//! configuration supplies the engine's random choices (overlay, delays, loss, re-wiring). Every
//! message is bytes; bandwidth counts every encoded byte on each link direction, and a message
//! occupies the sender's upload link, then the wire, then the receiver's download link.
//! Every handled event is folded into an audit hash ([`EngineStats::event_hash`]): the same seed
//! and configuration must give the same hash on any machine.

mod links;
pub mod ops;
pub mod path;
#[cfg(test)]
mod tests;

use crate::byzantine::Strategy;
use crate::config::{FaultEvent, Micros, NetworkConfig};
use crate::network::{index, Overlay, Partition};
use beaufort_core::types::MemberIndex;
use beaufort_crypto::hash::{hash, Digest, Domain};
use ops::OpCounts;
use path::Path;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::time::{Duration, Instant};

/// One transaction of the workload, by its index in the run.
pub type TxId = usize;

/// A transaction as the workload submits it.
#[derive(Clone, Debug)]
pub struct Tx {
    /// Its index.
    pub id: TxId,
    /// Who submits it (skipped if the member is down then).
    pub member: MemberIndex,
    /// When.
    pub at: Micros,
    /// The key it writes (the baselines order these; Beaufort members look the transaction up
    /// by its id in their own workload).
    pub key: String,
    /// The value bytes.
    pub value: Vec<u8>,
}

/// What a member's handler produced.
#[derive(Debug, Default)]
pub struct Ctx {
    /// Virtual time at which the handler started.
    pub now: Micros,
    /// Messages to send (recipient, encoded bytes).
    pub sends: Vec<(MemberIndex, Vec<u8>)>,
    /// Timers to set (delay from now, timer id).
    pub timers: Vec<(Micros, u64)>,
    /// Transactions this member now holds a commit certificate for.
    pub committed: Vec<TxId>,
    /// Operations to charge besides the signature scheme's (codec bytes, merges, MACs...).
    pub ops: OpCounts,
    /// The member wants new neighbours (its own writes make no progress).
    pub rewire: bool,
    /// Neighbours the member caught misbehaving: the engine closes those links for good (the
    /// node bans the peer) and connects the member to someone else.
    pub drop_links: Vec<MemberIndex>,
    /// How long the member's upload link stays busy with what it has already sent. A sender
    /// that holds back while its link is busy (as the node's stop-and-wait links make it) reads
    /// this; set for timers.
    pub upload_backlog: Micros,
}

impl Ctx {
    /// Queues `bytes` for `to` and charges their encoding.
    pub fn send(&mut self, to: MemberIndex, bytes: Vec<u8>) {
        self.ops.codec_bytes += bytes.len() as u64;
        self.sends.push((to, bytes));
    }
}

/// How a protocol's members are connected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Topology {
    /// The random partial mesh with re-wiring (BeauFort, Tendermint-style gossip).
    Overlay,
    /// Everyone to everyone (PBFT).
    Full,
}

/// One simulated member of some protocol.
pub trait Member {
    /// The run begins (set the first timers).
    fn start(&mut self, ctx: &mut Ctx);
    /// A local client submits `tx`.
    fn submit(&mut self, ctx: &mut Ctx, tx: &Tx);
    /// Bytes arrived from `from`.
    fn receive(&mut self, ctx: &mut Ctx, from: MemberIndex, bytes: &[u8]);
    /// A timer set through [`Ctx::timers`] fired.
    fn timer(&mut self, ctx: &mut Ctx, id: u64);
    /// A connection to `peer` came up.
    fn link_up(&mut self, ctx: &mut Ctx, peer: MemberIndex);
    /// The connection to `peer` went down.
    fn link_down(&mut self, peer: MemberIndex);
    /// The member (if Byzantine) switches to `strategy`.
    fn switch_strategy(&mut self, strategy: Strategy);
    /// The process dies: whatever it did not persist is gone. Its pending timers never fire.
    fn crash(&mut self);
    /// The process starts again from what it persisted (set the first timers again).
    fn restart(&mut self, ctx: &mut Ctx);
    /// Signature-scheme operations performed since the last call (for [`CostModel`]).
    fn drain_crypto(&mut self) -> OpCounts;
}

/// A boxed member is a member (the performance engine's baselines are boxed).
impl<T: Member + ?Sized> Member for Box<T> {
    fn start(&mut self, ctx: &mut Ctx) {
        (**self).start(ctx);
    }
    fn submit(&mut self, ctx: &mut Ctx, tx: &Tx) {
        (**self).submit(ctx, tx);
    }
    fn receive(&mut self, ctx: &mut Ctx, from: MemberIndex, bytes: &[u8]) {
        (**self).receive(ctx, from, bytes);
    }
    fn timer(&mut self, ctx: &mut Ctx, id: u64) {
        (**self).timer(ctx, id);
    }
    fn link_up(&mut self, ctx: &mut Ctx, peer: MemberIndex) {
        (**self).link_up(ctx, peer);
    }
    fn link_down(&mut self, peer: MemberIndex) {
        (**self).link_down(peer);
    }
    fn switch_strategy(&mut self, strategy: Strategy) {
        (**self).switch_strategy(strategy);
    }
    fn crash(&mut self) {
        (**self).crash();
    }
    fn restart(&mut self, ctx: &mut Ctx) {
        (**self).restart(ctx);
    }
    fn drain_crypto(&mut self) -> OpCounts {
        (**self).drain_crypto()
    }
}

/// What a handler costs the member's CPU.
pub trait CostModel {
    /// The virtual time the handler takes, from what it counted and how long it ran here.
    fn charge(&self, ops: &OpCounts, elapsed: Duration) -> Micros;
}

/// The checker's cost model: handlers take no time.
pub struct Free;

impl CostModel for Free {
    fn charge(&self, _: &OpCounts, _: Duration) -> Micros {
        0
    }
}

/// The world the members live in.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Seed of the engine's own random choices (the overlay, delays, loss, re-wiring).
    pub seed: u64,
    /// Links: delay, jitter, loss, transport, reconnection, overlay degree.
    pub network: NetworkConfig,
    /// Per-member upload capacity in Mbit/s (`f64::INFINITY`: unlimited).
    pub upload_mbit: f64,
    /// Per-member download capacity in Mbit/s (`f64::INFINITY`: unlimited).
    pub download_mbit: f64,
    /// Cores of one host shared by all members, if they share one (`None`: a CPU each).
    pub host_cores: Option<usize>,
    /// Bytes sent or received after this time are not counted in [`MemberTotals`].
    pub measure_until: Micros,
    /// How the members are connected.
    pub topology: Topology,
}

/// When a run stops: at `deadline`, or at a check (the first at `first_check`, then every
/// `every`) that finds the run done.
#[derive(Clone, Copy, Debug)]
pub struct Stop {
    /// The first check.
    pub first_check: Micros,
    /// Time between checks.
    pub every: Micros,
    /// Events after this time are not handled.
    pub deadline: Micros,
}

/// Per-member traffic and CPU totals.
#[derive(Clone, Copy, Debug, Default)]
pub struct MemberTotals {
    /// Bytes sent (before [`EngineConfig::measure_until`]).
    pub sent: u64,
    /// Bytes delivered to the member (handled before [`EngineConfig::measure_until`]).
    pub received: u64,
    /// CPU time charged, in µs.
    pub cpu: Micros,
}

/// Counters of what the network and the overlay did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Events handled (checks included).
    pub events: u64,
    /// Messages put on a link.
    pub messages_sent: u64,
    /// Messages delivered to a member.
    pub messages_delivered: u64,
    /// Messages lost (loss, partition, dropped link, crashed receiver).
    pub messages_lost: u64,
    /// Bytes delivered.
    pub bytes_delivered: u64,
    /// Bytes lost.
    pub bytes_lost: u64,
    /// Links added by re-wiring (stalled writes, dropped links, connectivity repair).
    pub rewires: u64,
    /// Links closed because a member caught its neighbour misbehaving.
    pub links_dropped: u64,
    /// A hash of every event handled, in order, with its time and content (a delivered message
    /// by the hash of its bytes): the determinism auditor. Anything that leaks a clock, a thread
    /// or an unordered map into a run changes it.
    pub event_hash: Digest,
}

/// What the engine measured.
#[derive(Debug)]
pub struct EngineResult {
    /// Per transaction: commit time at the submitter and its critical path, if it committed.
    pub at_submitter: Vec<Option<(Micros, Path)>>,
    /// Per transaction: the time the last honest running member committed it, if all did.
    pub at_all: Vec<Option<Micros>>,
    /// Transactions submitted by honest members that were running when they submitted.
    pub counted: Vec<bool>,
    /// Per-member totals.
    pub members: Vec<MemberTotals>,
    /// Honest members running at the end.
    pub running_honest: Vec<bool>,
    /// Network counters and the audit hash.
    pub stats: EngineStats,
    /// Bytes still in flight when the run ended.
    pub bytes_in_flight: u64,
    /// Virtual time at the end.
    pub end: Micros,
    /// Wall-clock seconds.
    pub wall_seconds: f64,
}

enum Event {
    Arrive {
        from: MemberIndex,
        to: MemberIndex,
        epoch: u64,
        bytes: Vec<u8>,
        path: Path,
    },
    /// A member's timer, set in the given incarnation (a restarted member's old timers are void).
    Timer(MemberIndex, u64, u64, Path),
    Submit(TxId),
    Fault(usize),
    Reconnect(MemberIndex, MemberIndex),
    Check,
}

impl Event {
    /// Folds the event, with its time, into the audit hash.
    fn audit(&self, at: Micros, audit: Digest) -> Digest {
        let pair = |a: &MemberIndex, b: &MemberIndex| [a.to_le_bytes(), b.to_le_bytes()].concat();
        let (kind, fields): (u8, Vec<u8>) = match self {
            Event::Arrive {
                from,
                to,
                epoch,
                bytes,
                ..
            } => {
                let mut fields = pair(from, to);
                fields.extend_from_slice(&epoch.to_le_bytes());
                fields.extend_from_slice(hash(Domain::Other, &[bytes]).as_bytes());
                (0, fields)
            }
            Event::Timer(m, incarnation, id, _) => (
                1,
                [
                    &m.to_le_bytes()[..],
                    &incarnation.to_le_bytes(),
                    &id.to_le_bytes(),
                ]
                .concat(),
            ),
            Event::Submit(t) => (2, (*t as u64).to_le_bytes().to_vec()),
            Event::Fault(i) => (3, (*i as u64).to_le_bytes().to_vec()),
            Event::Reconnect(a, b) => (4, pair(a, b)),
            Event::Check => (5, Vec::new()),
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

/// The engine for one run.
pub struct Engine<'a, M: Member> {
    cfg: EngineConfig,
    cost: Box<dyn CostModel + 'a>,
    members: Vec<M>,
    txs: Vec<Tx>,
    faults: Vec<(Micros, FaultEvent)>,
    rng: ChaCha8Rng,
    queue: BinaryHeap<Reverse<Scheduled>>,
    seq: u64,
    now: Micros,
    up: Vec<bool>,
    incarnation: Vec<u64>,
    byzantine: BTreeSet<MemberIndex>,
    overlay: Overlay,
    /// Two seeded halves of the members, for a scenario that splits the network in two.
    halves: Vec<Vec<MemberIndex>>,
    partition: Option<Partition>,
    /// Pairs whose link a member closed for misbehaviour (lower index first).
    banned: BTreeSet<(MemberIndex, MemberIndex)>,
    epochs: Vec<u64>,
    busy_until: Vec<Micros>,
    /// When each of the host's cores is free, if the members share a host; empty when each
    /// member has its own CPU.
    cores: Vec<Micros>,
    last_path: Vec<(Micros, Path)>,
    up_free: Vec<Micros>,
    down_free: Vec<Micros>,
    /// The latest arrival on each direction of a connection (its epoch, the time): FIFO.
    last_arrival: BTreeMap<(MemberIndex, MemberIndex), (u64, Micros)>,
    result: EngineResult,
    commits: Vec<usize>,
    committed_by: Vec<BTreeSet<MemberIndex>>,
    progress: Option<&'a dyn Fn(Micros)>,
    started: bool,
}

impl<'a, M: Member> Engine<'a, M> {
    /// An engine over `members` (one per simulated member), the workload `txs` and the scheduled
    /// `faults`, charging handlers with `cost`.
    pub fn new(
        cfg: EngineConfig,
        cost: Box<dyn CostModel + 'a>,
        members: Vec<M>,
        txs: Vec<Tx>,
        faults: Vec<(Micros, FaultEvent)>,
        byzantine: BTreeSet<MemberIndex>,
    ) -> Engine<'a, M> {
        let n = members.len();
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let overlay = match cfg.topology {
            Topology::Overlay => Overlay::random(n, cfg.network.degree, &mut rng),
            Topology::Full => {
                let mut o = Overlay::empty(n);
                for a in 0..n {
                    for b in a + 1..n {
                        o.connect(index(a), index(b));
                    }
                }
                o
            }
        };
        let mut side: Vec<bool> = (0..n).map(|i| i % 2 == 1).collect();
        side.shuffle(&mut rng);
        let halves = [false, true]
            .iter()
            .map(|half| (0..n).filter(|&m| side[m] == *half).map(index).collect())
            .collect();
        let t = txs.len();
        Engine {
            cost,
            members,
            rng,
            queue: BinaryHeap::new(),
            seq: 0,
            now: 0,
            up: vec![true; n],
            incarnation: vec![0; n],
            byzantine,
            overlay,
            halves,
            partition: None,
            banned: BTreeSet::new(),
            epochs: vec![0; n * n],
            busy_until: vec![0; n],
            cores: vec![0; cfg.host_cores.unwrap_or(0)],
            last_path: vec![(0, Path::default()); n],
            up_free: vec![0; n],
            down_free: vec![0; n],
            last_arrival: BTreeMap::new(),
            result: EngineResult {
                at_submitter: vec![None; t],
                at_all: vec![None; t],
                counted: vec![false; t],
                members: vec![MemberTotals::default(); n],
                running_honest: vec![false; n],
                stats: EngineStats::default(),
                bytes_in_flight: 0,
                end: 0,
                wall_seconds: 0.0,
            },
            commits: vec![0; t],
            committed_by: vec![BTreeSet::new(); t],
            txs,
            faults,
            cfg,
            progress: None,
            started: false,
        }
    }

    /// Calls `progress` with the virtual time every simulated second.
    pub fn on_progress(&mut self, progress: &'a dyn Fn(Micros)) {
        self.progress = Some(progress);
    }

    /// Two seeded halves of the members (neither holds a quorum when n ≥ 4), for a scenario that
    /// cuts the network in two.
    pub fn halves(&self) -> &[Vec<MemberIndex>] {
        &self.halves
    }

    /// Adds scheduled faults (before the run starts).
    pub fn add_faults(&mut self, faults: impl IntoIterator<Item = (Micros, FaultEvent)>) {
        self.faults.extend(faults);
    }

    /// The members.
    pub fn members(&self) -> &[M] {
        &self.members
    }

    /// Whether member `m` is running.
    pub fn is_up(&self, m: MemberIndex) -> bool {
        self.up[usize::from(m)]
    }

    /// Virtual time now.
    pub fn now(&self) -> Micros {
        self.now
    }

    /// What has been measured so far.
    pub fn result(&self) -> &EngineResult {
        &self.result
    }

    /// The measurements, once the run is over.
    pub fn into_result(self) -> EngineResult {
        self.result
    }

    /// Whether every counted transaction has committed at every running honest member.
    pub fn all_committed(&self) -> bool {
        let running = (0..self.members.len())
            .filter(|&m| self.up[m] && !self.byzantine.contains(&index(m)))
            .count();
        (0..self.txs.len())
            .filter(|&t| self.result.counted[t])
            .all(|t| self.commits[t] >= running)
    }

    fn schedule(&mut self, at: Micros, event: Event) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled {
            at,
            seq: self.seq,
            event,
        }));
    }

    /// Starts the members, wires the overlay and schedules the workload and the faults.
    fn start(&mut self, stop: &Stop) {
        self.started = true;
        self.ensure_connected();
        for a in 0..self.members.len() {
            let peers: Vec<MemberIndex> = self.overlay.neighbours(index(a)).collect();
            let mut ctx = self.ctx();
            self.members[a].start(&mut ctx);
            for p in peers {
                self.members[a].link_up(&mut ctx, p);
            }
            self.finish(index(a), ctx, 0, Path::default());
        }
        for i in 0..self.txs.len() {
            let at = self.txs[i].at;
            self.schedule(at, Event::Submit(i));
        }
        for i in 0..self.faults.len() {
            let at = self.faults[i].0;
            self.schedule(at, Event::Fault(i));
        }
        self.schedule(stop.first_check, Event::Check);
    }

    /// Runs until `stop.deadline`, or until a check finds `done` true (then returns true).
    /// Afterwards [`Engine::result`] holds the measurements.
    pub fn run(&mut self, stop: &Stop, mut done: impl FnMut(&Self) -> bool) -> bool {
        let started = Instant::now();
        if !self.started {
            self.start(stop);
        }
        let mut finished = false;
        let mut next_progress = crate::config::SECOND;
        while let Some(Reverse(next)) = self.queue.pop() {
            if next.at > stop.deadline {
                self.queue.push(Reverse(next));
                break;
            }
            self.now = next.at;
            if self.now >= next_progress {
                if let Some(progress) = self.progress {
                    progress(self.now);
                }
                next_progress = self.now + crate::config::SECOND;
            }
            self.result.stats.events += 1;
            self.result.stats.event_hash = next.event.audit(next.at, self.result.stats.event_hash);
            if matches!(next.event, Event::Check) {
                if done(self) {
                    finished = true;
                    break;
                }
                self.schedule(self.now + stop.every, Event::Check);
                continue;
            }
            self.handle(next.at, next.event);
        }
        self.conclude();
        self.result.wall_seconds += started.elapsed().as_secs_f64();
        finished
    }

    /// Fills in what is known only at the end.
    fn conclude(&mut self) {
        let n = self.members.len();
        self.result.end = self.now;
        for m in 0..n {
            self.result.running_honest[m] = self.up[m] && !self.byzantine.contains(&index(m));
        }
        let running: BTreeSet<MemberIndex> = (0..n)
            .filter(|&m| self.result.running_honest[m])
            .map(index)
            .collect();
        for (t, by) in self.committed_by.iter().enumerate() {
            if !running.is_subset(by) {
                self.result.at_all[t] = None;
            }
        }
        self.result.bytes_in_flight = self
            .queue
            .iter()
            .map(|Reverse(s)| match &s.event {
                Event::Arrive { bytes, .. } => bytes.len() as u64,
                _ => 0,
            })
            .sum();
    }

    fn handle(&mut self, at: Micros, event: Event) {
        // A busy member handles its inputs when it is free again, in arrival order.
        let target = match &event {
            Event::Arrive { to, .. } => Some(*to),
            Event::Timer(m, ..) => Some(*m),
            Event::Submit(t) => Some(self.txs[*t].member),
            _ => None,
        };
        if let Some(m) = target {
            let i = usize::from(m);
            if !self.up[i] {
                if let Event::Arrive { bytes, .. } = &event {
                    self.lose(bytes.len() as u64);
                }
                return;
            }
            if let Event::Timer(_, incarnation, ..) = &event {
                if *incarnation != self.incarnation[i] {
                    return;
                }
            }
            // A member handles one input at a time, and on a shared host only once a core is
            // free too.
            let core_free = self.cores.iter().copied().min().unwrap_or(0);
            let free = self.busy_until[i].max(core_free);
            if free > at {
                let mut event = event;
                if let Event::Arrive { path, .. } | Event::Timer(_, _, _, path) = &mut event {
                    path.cpu_wait += (free - at) as f64;
                }
                self.schedule(free, event);
                return;
            }
        }
        match event {
            Event::Arrive {
                from,
                to,
                epoch,
                bytes,
                path,
            } => self.arrive(from, to, epoch, bytes, path),
            Event::Timer(m, _, id, mut path) => {
                let (since, last) = self.last_path[usize::from(m)];
                if path.origin == 0 && path.total() == 0.0 {
                    path = last;
                    path.timer += (self.now - since) as f64;
                }
                let mut ctx = self.ctx();
                ctx.upload_backlog = self.up_free[usize::from(m)].saturating_sub(self.now);
                let started = Instant::now();
                self.members[usize::from(m)].timer(&mut ctx, id);
                self.charge_and_finish(m, ctx, started, path);
            }
            Event::Submit(t) => {
                let tx = self.txs[t].clone();
                self.result.counted[t] = !self.byzantine.contains(&tx.member);
                let mut ctx = self.ctx();
                ctx.ops.user_signatures += 1;
                let started = Instant::now();
                self.members[usize::from(tx.member)].submit(&mut ctx, &tx);
                let path = Path {
                    origin: self.now,
                    ..Path::default()
                };
                self.charge_and_finish(tx.member, ctx, started, path);
            }
            Event::Fault(i) => {
                let fault = self.faults[i].1.clone();
                self.fault(fault);
            }
            Event::Reconnect(a, b) => self.reconnect(a, b),
            Event::Check => {}
        }
    }

    fn arrive(
        &mut self,
        from: MemberIndex,
        to: MemberIndex,
        epoch: u64,
        bytes: Vec<u8>,
        path: Path,
    ) {
        let len = bytes.len() as u64;
        if self.link_epoch(from, to) != epoch
            || !self.reachable(from, to)
            || !self.overlay.linked(from, to)
        {
            self.lose(len);
            return;
        }
        self.result.stats.messages_delivered += 1;
        self.result.stats.bytes_delivered += len;
        if self.now <= self.cfg.measure_until {
            self.result.members[usize::from(to)].received += len;
        }
        let mut ctx = self.ctx();
        ctx.ops.codec_bytes += len;
        let started = Instant::now();
        self.members[usize::from(to)].receive(&mut ctx, from, &bytes);
        self.charge_and_finish(to, ctx, started, path);
    }

    fn fault(&mut self, fault: FaultEvent) {
        match fault {
            FaultEvent::Partition(groups) => {
                let partition = Partition::new(self.members.len(), &groups);
                self.repartition(Some(partition));
            }
            FaultEvent::Heal => self.repartition(None),
            FaultEvent::Crash(m) => self.crash(m),
            FaultEvent::Restart(m) => self.restart(m),
            FaultEvent::SwitchStrategy(m, strategy) => {
                if let Some(member) = self.members.get_mut(usize::from(m)) {
                    member.switch_strategy(strategy);
                }
            }
        }
    }

    fn ctx(&self) -> Ctx {
        Ctx {
            now: self.now,
            ..Ctx::default()
        }
    }

    fn charge_and_finish(&mut self, m: MemberIndex, mut ctx: Ctx, started: Instant, path: Path) {
        let elapsed = started.elapsed();
        ctx.ops.events += 1;
        let crypto = self.members[usize::from(m)].drain_crypto();
        ctx.ops.add(&crypto);
        let cost = self.cost.charge(&ctx.ops, elapsed);
        self.finish(m, ctx, cost, path);
    }

    /// Charges `cost` to `m`'s CPU, then releases the handler's effects at the end of it.
    fn finish(&mut self, m: MemberIndex, ctx: Ctx, cost: Micros, mut path: Path) {
        let i = usize::from(m);
        let done = self.now + cost;
        self.busy_until[i] = done;
        if let Some(core) = self.cores.iter_mut().min() {
            // Handlers that run outside the queue (a link coming up) may find every core busy:
            // their work then queues behind it.
            *core = (*core).max(self.now) + cost;
        }
        self.result.members[i].cpu += cost;
        path.cpu += cost as f64;
        self.last_path[i] = (done, path);
        let honest = !self.byzantine.contains(&m);
        for t in ctx.committed {
            if !honest || !self.committed_by[t].insert(m) {
                continue;
            }
            self.commits[t] += 1;
            if self.txs[t].member == m && self.result.at_submitter[t].is_none() {
                self.result.at_submitter[t] = Some((done, path));
            }
            let all = &mut self.result.at_all[t];
            *all = Some(all.map_or(done, |a| a.max(done)));
        }
        let incarnation = self.incarnation[i];
        for (delay, id) in ctx.timers {
            self.schedule(
                done + delay.max(1),
                Event::Timer(m, incarnation, id, Path::default()),
            );
        }
        if ctx.rewire {
            self.rewire(m);
        }
        for peer in ctx.drop_links {
            self.ban(m, peer);
        }
        for (to, bytes) in ctx.sends {
            self.transmit(m, to, bytes, done, path);
        }
    }

    fn lose(&mut self, len: u64) {
        self.result.stats.messages_lost += 1;
        self.result.stats.bytes_lost += len;
    }
}

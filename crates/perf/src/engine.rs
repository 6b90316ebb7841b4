//! The performance engine: virtual time with a CPU clock per member, per-member upload and
//! download links with queueing, per-link latency with jitter, an overlay that re-wires, the
//! workload, scheduled faults, and the metrics.
//!
//! A protocol plugs in as one [`Member`] per simulated member. The engine calls it for every
//! input; the member writes its effects into a [`Ctx`]. The engine then charges the handler's
//! cost to the member's CPU ([`super::cost`]) and only then lets its messages leave: a member
//! busy verifying is busy. Inputs that arrive while a member is busy wait for it, in order.
//!
//! Every message is bytes, so bandwidth counts every encoded byte on each link direction, and a
//! message occupies the sender's upload link, then the wire (latency), then the receiver's
//! download link.
//!
//! Critical-path attribution: each message and commit carries a [`Path`] that splits the time
//! since the causal chain began into propagation, link (transmission and queueing on the access
//! links), CPU wait, CPU work and batching (waiting for a timer). The engine follows, for each
//! input, the chain of the input that triggered it, so a commit's path is the chain of events
//! that completed it.

use super::cost::{CostMode, OpCounts};
use super::{PerfConfig, Scenario};
use beaufort_core::types::MemberIndex;
use beaufort_sim::byzantine::Strategy;
use beaufort_sim::config::Micros;
use beaufort_sim::network::{index, Overlay};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeSet, BinaryHeap};
use std::time::Instant;

/// One transaction of the workload, by its index in the run.
pub type TxId = usize;

/// A transaction as the workload submits it.
#[derive(Clone, Debug)]
pub struct Tx {
    /// Its index.
    pub id: TxId,
    /// Who submits it.
    pub member: MemberIndex,
    /// When.
    pub at: Micros,
    /// The key it writes (loyalty-style: one token per transfer or redemption).
    pub key: String,
    /// The value bytes (an end-user-signed transfer).
    pub value: Vec<u8>,
}

/// Where the time of a causal chain went, in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Path {
    /// When the chain began.
    #[serde(skip)]
    pub origin: Micros,
    /// On the wire (one-way link latency).
    pub propagation: f64,
    /// Serialising onto and off the access links, including waiting behind other messages.
    pub link: f64,
    /// Waiting for the member's CPU.
    pub cpu_wait: f64,
    /// The member's CPU working.
    pub cpu: f64,
    /// Waiting for a timer (flush batching, timeouts).
    pub timer: f64,
}

impl Path {
    fn total(&self) -> f64 {
        self.propagation + self.link + self.cpu_wait + self.cpu + self.timer
    }

    fn scaled(&self, factor: f64) -> Path {
        Path {
            origin: self.origin,
            propagation: self.propagation * factor,
            link: self.link * factor,
            cpu_wait: self.cpu_wait * factor,
            cpu: self.cpu * factor,
            timer: self.timer * factor,
        }
    }

    fn add(&mut self, other: &Path) {
        self.propagation += other.propagation;
        self.link += other.link;
        self.cpu_wait += other.cpu_wait;
        self.cpu += other.cpu;
        self.timer += other.timer;
    }
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
    /// The member wants a new random neighbour (its proposal made no progress).
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
    /// Signature-scheme operations performed since the last call (modelled mode).
    fn drain_crypto(&mut self) -> OpCounts;
}

/// Per-member traffic and CPU totals.
#[derive(Clone, Copy, Debug, Default)]
pub struct MemberTotals {
    /// Bytes sent during the workload window.
    pub sent: u64,
    /// Bytes received during the workload window.
    pub received: u64,
    /// CPU time charged, in µs.
    pub cpu: Micros,
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
    /// Messages delivered.
    pub messages: u64,
    /// Events processed.
    pub events: u64,
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
    Timer(MemberIndex, u64, Path),
    Submit(TxId),
    Crash(MemberIndex),
    Partition(bool),
    Switch(MemberIndex, Strategy),
    Check,
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
pub struct Engine<'a> {
    cfg: &'a PerfConfig,
    members: Vec<Box<dyn Member>>,
    topology: Topology,
    txs: Vec<Tx>,
    rng: ChaCha8Rng,
    queue: BinaryHeap<Reverse<Scheduled>>,
    seq: u64,
    now: Micros,
    up: Vec<bool>,
    byzantine: BTreeSet<MemberIndex>,
    overlay: Overlay,
    side: Vec<bool>,
    partitioned: bool,
    /// Pairs whose link a member closed for misbehaviour (lower index first).
    banned: BTreeSet<(MemberIndex, MemberIndex)>,
    epochs: Vec<u64>,
    busy_until: Vec<Micros>,
    /// When each of the host's cores is free, if the members share a host
    /// ([`crate::PerfConfig::host_cores`]); empty when each member has its own CPU.
    cores: Vec<Micros>,
    last_path: Vec<(Micros, Path)>,
    up_free: Vec<Micros>,
    down_free: Vec<Micros>,
    last_arrival: std::collections::BTreeMap<(MemberIndex, MemberIndex), Micros>,
    result: EngineResult,
    commits: Vec<usize>,
    committed_by: Vec<std::collections::BTreeSet<MemberIndex>>,
    progress: Option<&'a dyn Fn(Micros)>,
}

/// Extra virtual time after the workload ends for late transactions to commit.
const DRAIN: Micros = 30 * beaufort_sim::config::SECOND;
/// How often the engine checks whether everything has committed (after the workload).
const CHECK_EVERY: Micros = 100 * beaufort_sim::config::MS;

impl<'a> Engine<'a> {
    /// An engine over `members` (one per simulated member) and the workload `txs`.
    pub fn new(
        cfg: &'a PerfConfig,
        members: Vec<Box<dyn Member>>,
        topology: Topology,
        txs: Vec<Tx>,
        byzantine: BTreeSet<MemberIndex>,
    ) -> Engine<'a> {
        let n = members.len();
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ 0x005e_ed0f_7e57);
        let overlay = match topology {
            Topology::Overlay => Overlay::random(n, cfg.degree, &mut rng),
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
        let t = txs.len();
        Engine {
            cfg,
            members,
            topology,
            rng,
            queue: BinaryHeap::new(),
            seq: 0,
            now: 0,
            up: vec![true; n],
            byzantine,
            overlay,
            side,
            partitioned: false,
            banned: BTreeSet::new(),
            epochs: vec![0; n * n],
            busy_until: vec![0; n],
            cores: vec![0; cfg.host_cores.unwrap_or(0)],
            last_path: vec![(0, Path::default()); n],
            up_free: vec![0; n],
            down_free: vec![0; n],
            last_arrival: std::collections::BTreeMap::new(),
            result: EngineResult {
                at_submitter: vec![None; t],
                at_all: vec![None; t],
                counted: vec![false; t],
                members: vec![MemberTotals::default(); n],
                running_honest: vec![false; n],
                messages: 0,
                events: 0,
                end: 0,
                wall_seconds: 0.0,
            },
            commits: vec![0; t],
            committed_by: vec![std::collections::BTreeSet::new(); t],
            txs,
            progress: None,
        }
    }

    /// Calls `progress` with the virtual time every simulated second.
    pub fn on_progress(&mut self, progress: &'a dyn Fn(Micros)) {
        self.progress = Some(progress);
    }

    fn schedule(&mut self, at: Micros, event: Event) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled {
            at,
            seq: self.seq,
            event,
        }));
    }

    /// Runs the workload and the faults to the end and returns the measurements.
    pub fn run(mut self) -> EngineResult {
        let started = Instant::now();
        let n = self.members.len();
        for a in 0..n {
            let peers: Vec<MemberIndex> = self.overlay.neighbours(index(a)).collect();
            let mut ctx = Ctx::default();
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
        for (at, fault) in self.cfg.scenario.faults(self.cfg, &self.byzantine, n) {
            let event = match fault {
                Fault::Crash(m) => Event::Crash(m),
                Fault::Partition(on) => Event::Partition(on),
                Fault::Switch(m, s) => Event::Switch(m, s),
            };
            self.schedule(at, event);
        }
        self.schedule(self.cfg.duration, Event::Check);
        let deadline = self.cfg.duration + DRAIN;
        let mut next_progress = beaufort_sim::config::SECOND;
        while let Some(Reverse(next)) = self.queue.pop() {
            if next.at > deadline {
                break;
            }
            self.now = next.at;
            if self.now >= next_progress {
                if let Some(progress) = self.progress {
                    progress(self.now);
                }
                next_progress = self.now + beaufort_sim::config::SECOND;
            }
            self.result.events += 1;
            if matches!(next.event, Event::Check) {
                if self.all_committed() {
                    break;
                }
                self.schedule(self.now + CHECK_EVERY, Event::Check);
                continue;
            }
            self.handle(next.at, next.event);
        }
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
        self.result.wall_seconds = started.elapsed().as_secs_f64();
        self.result
    }

    fn all_committed(&self) -> bool {
        let running = (0..self.members.len())
            .filter(|&m| self.up[m] && !self.byzantine.contains(&index(m)))
            .count();
        self.txs
            .iter()
            .enumerate()
            .filter(|(t, _)| self.result.counted[*t])
            .all(|(t, _)| self.commits[t] >= running)
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
            let m = usize::from(m);
            if !self.up[m] {
                return;
            }
            // A member handles one input at a time, and on a shared host only once a core is
            // free too.
            let core_free = self.cores.iter().copied().min().unwrap_or(0);
            let free = self.busy_until[m].max(core_free);
            if free > at {
                let event = match event {
                    Event::Arrive {
                        from,
                        to,
                        epoch,
                        bytes,
                        mut path,
                    } => {
                        path.cpu_wait += (free - at) as f64;
                        Event::Arrive {
                            from,
                            to,
                            epoch,
                            bytes,
                            path,
                        }
                    }
                    Event::Timer(m, id, mut path) => {
                        path.cpu_wait += (free - at) as f64;
                        Event::Timer(m, id, path)
                    }
                    other => other,
                };
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
            } => {
                if self.link_epoch(from, to) != epoch || !self.reachable(from, to) {
                    return;
                }
                self.result.messages += 1;
                let mut ctx = self.ctx();
                ctx.ops.codec_bytes += bytes.len() as u64;
                let started = Instant::now();
                self.members[usize::from(to)].receive(&mut ctx, from, &bytes);
                self.charge_and_finish(to, ctx, started, path);
            }
            Event::Timer(m, id, mut path) => {
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
                let m = usize::from(tx.member);
                self.result.counted[t] = !self.byzantine.contains(&tx.member);
                let mut ctx = self.ctx();
                ctx.ops.user_signatures += 1;
                let started = Instant::now();
                self.members[m].submit(&mut ctx, &tx);
                let path = Path {
                    origin: self.now,
                    ..Path::default()
                };
                self.charge_and_finish(tx.member, ctx, started, path);
            }
            Event::Crash(m) => self.crash(m),
            Event::Partition(on) => self.partition(on),
            Event::Switch(m, strategy) => self.members[usize::from(m)].switch_strategy(strategy),
            Event::Check => {}
        }
    }

    fn ctx(&self) -> Ctx {
        Ctx {
            now: self.now,
            ..Ctx::default()
        }
    }

    fn charge_and_finish(&mut self, m: MemberIndex, mut ctx: Ctx, started: Instant, path: Path) {
        let cost = match self.cfg.cost {
            CostMode::Modelled(table) => {
                ctx.ops.events += 1;
                let crypto = self.members[usize::from(m)].drain_crypto();
                ctx.ops.add(&crypto);
                table.charge(&ctx.ops).div_ceil(1_000)
            }
            CostMode::Measured { device_factor } => {
                let nanos = started.elapsed().as_nanos() as f64 * device_factor;
                (nanos / 1_000.0).ceil() as Micros
            }
        };
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
        for (delay, id) in ctx.timers {
            self.schedule(done + delay.max(1), Event::Timer(m, id, Path::default()));
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

    fn transmit(
        &mut self,
        from: MemberIndex,
        to: MemberIndex,
        bytes: Vec<u8>,
        at: Micros,
        path: Path,
    ) {
        let (f, t) = (usize::from(from), usize::from(to));
        if from == to || t >= self.members.len() || !self.overlay.linked(from, to) {
            return;
        }
        let len = bytes.len() as u64;
        let bits = (len * 8) as f64;
        let upload = (bits / self.cfg.upload_mbit).ceil() as Micros;
        let start = at.max(self.up_free[f]);
        let left = start + upload;
        self.up_free[f] = left;
        if left <= self.cfg.duration {
            self.result.members[f].sent += len;
        }
        if !self.reachable(from, to) || self.rng.gen_bool(self.cfg.loss.clamp(0.0, 1.0)) {
            return;
        }
        let jitter = self.cfg.jitter.min(self.cfg.latency);
        let wire = self
            .rng
            .gen_range(self.cfg.latency - jitter..=self.cfg.latency + jitter)
            .max(1);
        let mut arrive = left + wire;
        // Connections are FIFO per direction.
        if let Some(&last) = self.last_arrival.get(&(from, to)) {
            arrive = arrive.max(last);
        }
        self.last_arrival.insert((from, to), arrive);
        let download = (bits / self.cfg.download_mbit).ceil() as Micros;
        let start_down = arrive.max(self.down_free[t]);
        let delivered = start_down + download;
        self.down_free[t] = delivered;
        if delivered <= self.cfg.duration {
            self.result.members[t].received += len;
        }
        let mut path = path;
        path.propagation += (arrive - left) as f64;
        path.link += ((left - at) + (delivered - arrive)) as f64;
        let epoch = self.link_epoch(from, to);
        self.schedule(
            delivered,
            Event::Arrive {
                from,
                to,
                epoch,
                bytes,
                path,
            },
        );
    }

    fn link_epoch(&self, a: MemberIndex, b: MemberIndex) -> u64 {
        let n = self.members.len();
        let (x, y) = link(a, b);
        self.epochs[usize::from(x) * n + usize::from(y)]
    }

    fn break_link(&mut self, a: MemberIndex, b: MemberIndex) {
        let n = self.members.len();
        let (x, y) = link(a, b);
        self.epochs[usize::from(x) * n + usize::from(y)] += 1;
    }

    fn reachable(&self, a: MemberIndex, b: MemberIndex) -> bool {
        !self.partitioned || self.side[usize::from(a)] == self.side[usize::from(b)]
    }

    fn link_up(&mut self, a: MemberIndex, b: MemberIndex) {
        if !self.up[usize::from(a)] || !self.up[usize::from(b)] {
            return;
        }
        for (x, y) in [(a, b), (b, a)] {
            let mut ctx = self.ctx();
            self.members[usize::from(x)].link_up(&mut ctx, y);
            let started = Instant::now();
            let path = self.last_path[usize::from(x)].1;
            self.charge_and_finish(x, ctx, started, path);
        }
    }

    fn link_down(&mut self, a: MemberIndex, b: MemberIndex) {
        self.break_link(a, b);
        for (x, y) in [(a, b), (b, a)] {
            if self.up[usize::from(x)] {
                self.members[usize::from(x)].link_down(y);
            }
        }
    }

    fn crash(&mut self, m: MemberIndex) {
        if !std::mem::replace(&mut self.up[usize::from(m)], false) {
            return;
        }
        let peers: Vec<MemberIndex> = self.overlay.neighbours(m).collect();
        for p in peers {
            self.link_down(m, p);
            if self.topology == Topology::Overlay {
                self.overlay.disconnect(m, p);
                // The peer notices the dead connection and replaces it (peer exchange).
                self.rewire(p);
            }
        }
    }

    fn partition(&mut self, on: bool) {
        let n = self.members.len();
        let mut cross = Vec::new();
        for a in 0..n {
            for b in self.overlay.neighbours(index(a)) {
                if a < usize::from(b) && self.side[a] != self.side[usize::from(b)] {
                    cross.push((index(a), b));
                }
            }
        }
        if on {
            for (a, b) in cross {
                self.link_down(a, b);
            }
            self.partitioned = true;
        } else {
            self.partitioned = false;
            for (a, b) in cross {
                self.break_link(a, b);
                self.link_up(a, b);
            }
        }
    }

    /// `m` caught `peer` misbehaving: their link closes and never comes back, and `m` gets a
    /// new neighbour in its place.
    fn ban(&mut self, m: MemberIndex, peer: MemberIndex) {
        if !self.banned.insert(link(m, peer)) {
            return;
        }
        if self.overlay.disconnect(m, peer) {
            self.link_down(m, peer);
            self.rewire(m);
        }
    }

    /// Connects `m` to a random running member it is not linked to.
    fn rewire(&mut self, m: MemberIndex) {
        if self.topology != Topology::Overlay || !self.up[usize::from(m)] {
            return;
        }
        let candidates: Vec<MemberIndex> = (0..self.members.len())
            .map(index)
            .filter(|&c| c != m && self.up[usize::from(c)] && !self.overlay.linked(m, c))
            .filter(|&c| !self.banned.contains(&link(m, c)))
            .filter(|&c| self.reachable(m, c))
            .collect();
        if let Some(&c) = candidates.choose(&mut self.rng) {
            self.overlay.connect(m, c);
            self.break_link(m, c);
            self.link_up(m, c);
        }
    }
}

/// A link's name, whichever end names it: (lower index, higher index).
fn link(a: MemberIndex, b: MemberIndex) -> (MemberIndex, MemberIndex) {
    (a.min(b), a.max(b))
}

/// A scheduled disruption of a scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The member stops for good.
    Crash(MemberIndex),
    /// The network splits into two halves (true) or heals (false).
    Partition(bool),
    /// A Byzantine member changes strategy.
    Switch(MemberIndex, Strategy),
}

impl Scenario {
    /// The scenario's disruptions for `n` members, by time.
    pub fn faults(
        self,
        cfg: &PerfConfig,
        byzantine: &BTreeSet<MemberIndex>,
        n: usize,
    ) -> Vec<(Micros, Fault)> {
        match self {
            Scenario::Optimistic => Vec::new(),
            Scenario::Crash25 => {
                // Member 0 first (the initial PBFT leader), then others in a seeded order.
                let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ 0xc4a5);
                let mut others: Vec<usize> = (1..n).collect();
                others.shuffle(&mut rng);
                std::iter::once(0)
                    .chain(others)
                    .take(n / 4)
                    .enumerate()
                    .map(|(k, m)| {
                        let at = super::CRASH_START + k as Micros * super::CRASH_EVERY;
                        (at, Fault::Crash(index(m)))
                    })
                    .collect()
            }
            Scenario::Byzantine => byzantine
                .iter()
                .map(|&m| (cfg.duration / 3, Fault::Switch(m, Strategy::Withhold)))
                .collect(),
            Scenario::Partition => vec![
                (cfg.duration / 3, Fault::Partition(true)),
                (
                    cfg.duration / 3 + super::PARTITION_FOR,
                    Fault::Partition(false),
                ),
            ],
        }
    }
}

/// Mean of the path components over `paths`, in ms.
pub fn mean_path(paths: &[Path]) -> Path {
    let mut sum = Path::default();
    for p in paths {
        sum.add(p);
    }
    let k = paths.len().max(1) as f64;
    sum.scaled(1.0 / k / 1_000.0)
}

/// Scales `path` so that its components add up to `latency` (the chain may have begun before
/// the submission, when a timer or an earlier message carried it).
pub fn attribute(path: &Path, latency: Micros) -> Path {
    let total = path.total();
    if total <= 0.0 {
        return Path::default();
    }
    path.scaled(latency as f64 / total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{PerfConfig, Protocol};

    /// Sends one fixed-size message to every neighbour at start and records what arrives.
    struct Echo {
        got: std::rc::Rc<std::cell::RefCell<Vec<(Micros, MemberIndex, usize)>>>,
        me: MemberIndex,
    }

    impl Member for Echo {
        fn start(&mut self, _: &mut Ctx) {}
        fn submit(&mut self, _: &mut Ctx, _: &Tx) {}
        fn receive(&mut self, ctx: &mut Ctx, from: MemberIndex, bytes: &[u8]) {
            self.got.borrow_mut().push((ctx.now, from, bytes.len()));
        }
        fn timer(&mut self, _: &mut Ctx, _: u64) {}
        fn link_up(&mut self, ctx: &mut Ctx, peer: MemberIndex) {
            if self.me == 0 {
                ctx.send(peer, vec![0; 12_500]);
            }
        }
        fn link_down(&mut self, _: MemberIndex) {}
        fn switch_strategy(&mut self, _: Strategy) {}
        fn drain_crypto(&mut self) -> OpCounts {
            OpCounts::default()
        }
    }

    /// Sends a small message to each neighbour every 100 ms; member 1 bans member 0 the first
    /// time it hears from it.
    struct Chatty {
        got: std::rc::Rc<std::cell::RefCell<Vec<(Micros, MemberIndex, MemberIndex)>>>,
        me: MemberIndex,
        peers: BTreeSet<MemberIndex>,
    }

    impl Member for Chatty {
        fn start(&mut self, ctx: &mut Ctx) {
            ctx.timers.push((100_000, 0));
        }
        fn submit(&mut self, _: &mut Ctx, _: &Tx) {}
        fn receive(&mut self, ctx: &mut Ctx, from: MemberIndex, _: &[u8]) {
            self.got.borrow_mut().push((ctx.now, from, self.me));
            if self.me == 1 && from == 0 {
                ctx.drop_links.push(0);
            }
        }
        fn timer(&mut self, ctx: &mut Ctx, _: u64) {
            for &peer in &self.peers {
                ctx.send(peer, vec![0; 100]);
            }
            ctx.timers.push((100_000, 0));
        }
        fn link_up(&mut self, _: &mut Ctx, peer: MemberIndex) {
            self.peers.insert(peer);
        }
        fn link_down(&mut self, peer: MemberIndex) {
            self.peers.remove(&peer);
        }
        fn switch_strategy(&mut self, _: Strategy) {}
        fn drain_crypto(&mut self) -> OpCounts {
            OpCounts::default()
        }
    }

    #[test]
    fn a_banned_neighbour_is_never_heard_from_again() {
        let mut cfg = PerfConfig::new(Protocol::Beaufort, 4, 1);
        cfg.duration = beaufort_sim::config::SECOND;
        cfg.cost = CostMode::Measured { device_factor: 0.0 };
        let got = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let members: Vec<Box<dyn Member>> = (0..4)
            .map(|i| {
                Box::new(Chatty {
                    got: got.clone(),
                    me: index(i),
                    peers: BTreeSet::new(),
                }) as Box<dyn Member>
            })
            .collect();
        Engine::new(&cfg, members, Topology::Full, Vec::new(), BTreeSet::new()).run();
        let got = got.borrow();
        let from_0_at_1: Vec<Micros> = got
            .iter()
            .filter(|(_, from, to)| (*from, *to) == (0, 1))
            .map(|(t, _, _)| *t)
            .collect();
        assert_eq!(from_0_at_1.len(), 1, "one message, then the link is gone");
        let from_1_at_0 = got
            .iter()
            .filter(|(_, from, to)| (*from, *to) == (1, 0))
            .count();
        assert!(
            from_1_at_0 <= 1,
            "closed both ways: at most 1's first tick, sent before the ban"
        );
        let later_from_2 = got
            .iter()
            .filter(|(t, from, to)| (*from, *to) == (2, 1) && *t > from_0_at_1[0])
            .count();
        assert!(later_from_2 >= 5, "the other links stay up: {later_from_2}");
    }

    #[test]
    fn bandwidth_is_accounted_per_direction_and_uploads_queue() {
        let mut cfg = PerfConfig::new(Protocol::Beaufort, 4, 1);
        cfg.jitter = 0;
        cfg.upload_mbit = 1.0;
        cfg.download_mbit = 100.0;
        cfg.duration = beaufort_sim::config::SECOND;
        cfg.cost = CostMode::Measured { device_factor: 0.0 };
        let got = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let members: Vec<Box<dyn Member>> = (0..4)
            .map(|i| {
                Box::new(Echo {
                    got: got.clone(),
                    me: index(i),
                }) as Box<dyn Member>
            })
            .collect();
        let result = Engine::new(&cfg, members, Topology::Full, Vec::new(), BTreeSet::new()).run();
        // 12,500 bytes = 100 ms at 1 Mbit/s: the three copies leave one after another.
        let mut arrivals: Vec<Micros> = got.borrow().iter().map(|(t, _, _)| *t).collect();
        arrivals.sort_unstable();
        assert_eq!(arrivals.len(), 3);
        let download = 1_000; // 12,500 bytes at 100 Mbit/s
        assert_eq!(arrivals[0], 100_000 + cfg.latency + download);
        assert_eq!(arrivals[2], 300_000 + cfg.latency + download);
        assert_eq!(result.members[0].sent, 37_500);
        assert_eq!(result.members[0].received, 0);
        assert_eq!(result.members[1].received, 12_500);
        assert_eq!(result.messages, 3);
    }
}

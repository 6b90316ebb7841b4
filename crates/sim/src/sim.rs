//! The adversarial checker: a [`SimConfig`] run on the one simulator loop ([`crate::engine`])
//! with free CPU and unlimited links, every member the real core ([`SimMember`]) watched by one
//! [`Observer`] (invariants, counters, the replay recorder).
//!
//! Every random choice comes from generators seeded from the config: the engine's (overlay,
//! delays, loss, re-wiring) and each adversary's. Nothing depends on wall-clock time, thread
//! scheduling or hash-map order: a seed replays exactly, and [`RunReport::event_hash`] proves it.
//! Every message goes through [`beaufort_core::wire::encode`] and `decode`, which exercises the
//! wire bounds and gives the byte counts.

use crate::byzantine::{Adversary, AdversaryStats, Strategy};
use crate::config::{Micros, SimConfig, MS};
use crate::engine::{Engine, EngineConfig, Free, Stop, Topology, Tx};
use crate::invariants::{Checker, HonestDecision, Violation};
use crate::keys::{ForbiddenPrefixHook, Keyring};
use crate::member::{SimMember, Workload};
use crate::network::index;
use crate::node::Node;
use crate::observe::{Observer, SentVote};
use crate::replay::Script;

/// How long before the deadline an instance may have begun and still be in flight at it, in a
/// run that never goes quiet: five seconds, some twenty times a view under the junk-keys
/// adversary, which proposes on its own keys for as long as it runs.
pub const IN_FLIGHT: Micros = 5_000 * MS;
use crate::SimError;
use beaufort_core::replica::Replica;
use beaufort_core::types::MemberIndex;
use beaufort_crypto::hash::Digest;
use std::cell::{Ref, RefCell};
use std::collections::BTreeSet;
use std::rc::Rc;
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

/// One simulated run.
pub struct Simulation {
    cfg: SimConfig,
    engine: Engine<'static, SimMember>,
    observer: Rc<RefCell<Observer>>,
    strategies: BTreeSet<Strategy>,
    /// Keys found stalled at the liveness bound (see [`RunReport::stalled_keys`]).
    stalled_keys: usize,
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
        let byzantine: BTreeSet<MemberIndex> = cfg.byzantine.keys().copied().collect();
        let observer = Rc::new(RefCell::new(Observer::new(n, byzantine.clone())));
        let workload = Arc::new(Workload::new(
            cfg.proposals
                .iter()
                .map(|(_, p)| Some((p.key.clone(), p.value.clone())))
                .collect(),
        ));
        let txs: Vec<Tx> = cfg
            .proposals
            .iter()
            .enumerate()
            .map(|(id, (at, p))| Tx {
                id,
                member: p.member,
                at: *at,
                key: String::from_utf8_lossy(p.key.as_bytes()).into_owned(),
                value: p.value.as_data().map(<[u8]>::to_vec).unwrap_or_default(),
            })
            .collect();
        let members: Vec<SimMember> = (0..n)
            .map(|i| {
                let m = index(i);
                let node = Node::new(m, keyring.clone(), hook.clone(), cfg.cadence);
                let adversary = cfg
                    .byzantine
                    .get(&m)
                    .map(|&strategy| Adversary::new(m, strategy, &keyring));
                SimMember::new(
                    node,
                    n,
                    adversary,
                    cfg.seed,
                    workload.clone(),
                    cfg.cadence.flush_every * MS,
                    None,
                )
                .observed_by(observer.clone())
            })
            .collect();
        let engine = Engine::new(
            EngineConfig {
                seed: cfg.seed,
                network: cfg.network.clone(),
                upload_mbit: f64::INFINITY,
                download_mbit: f64::INFINITY,
                host_cores: None,
                measure_until: Micros::MAX,
                topology: Topology::Overlay,
            },
            Box::new(Free),
            members,
            txs,
            cfg.faults.clone(),
            byzantine,
        );
        Ok(Simulation {
            strategies: cfg.byzantine.values().copied().collect(),
            cfg,
            engine,
            observer,
            stalled_keys: 0,
        })
    }

    /// Records the run as a replay script (proposals, deliveries of state and evidence, crashes
    /// and restarts), so a failing seed can be re-run step by step.
    pub fn record(&mut self) {
        self.observer.borrow_mut().recorder = Some(Vec::new());
    }

    /// The recorded script, if [`Simulation::record`] was called.
    pub fn script(&self) -> Option<Script> {
        let steps = self.observer.borrow().recorder.clone()?;
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
    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.engine.members().iter().map(SimMember::node)
    }

    /// The invariant checker, for inspection by tests.
    pub fn checker(&self) -> Ref<'_, Checker> {
        Ref::map(self.observer.borrow(), |o| &o.checker)
    }

    /// Every own vote each honest member put into a message it sent.
    pub fn sent_own_votes(&self) -> Ref<'_, BTreeSet<SentVote>> {
        Ref::map(self.observer.borrow(), |o| &o.sent_own_votes)
    }

    /// Runs to the end: until the run settles after the last disruption, or until the liveness
    /// bound expires (then the unsettled parts are liveness violations).
    pub fn run(mut self) -> RunReport {
        self.run_to_end();
        self.report()
    }

    /// Runs to the end and keeps the simulation for inspection. A run that never settles (some
    /// instance is in flight at every check) is judged at the deadline on the instances begun
    /// [`IN_FLIGHT`] before it: each must be decided by every running honest member.
    pub fn run_to_end(&mut self) {
        let settle_from = self.cfg.last_disruption();
        let deadline = settle_from + self.cfg.liveness_bound;
        let stop = Stop {
            first_check: TICK,
            every: TICK,
            deadline,
        };
        let stop_when_settled = self.cfg.stop_when_settled;
        let honest = self.cfg.members - self.cfg.byzantine.len();
        let observer = self.observer.clone();
        let settled = self.engine.run(&stop, |engine| {
            if !stop_when_settled || engine.now() < settle_from {
                return false;
            }
            let running = running_honest(engine);
            running.len() == honest && observer.borrow().checker.liveness_gaps(&running).is_empty()
        });
        if !settled {
            let now = self.engine.now().max(deadline);
            let running = running_honest(&self.engine);
            let mut observer = self.observer.borrow_mut();
            let began_by = deadline.saturating_sub(IN_FLIGHT);
            let gaps = observer.checker.gaps_begun_by(&running, began_by);
            self.stalled_keys = observer.checker.stalled_keys(&running, began_by).len();
            observer.checker.report_liveness(gaps, now);
        }
    }

    /// The report of a finished run.
    pub fn report(&self) -> RunReport {
        let result = self.engine.result();
        let observer = self.observer.borrow();
        let counters = observer.counters;
        let running = running_honest(&self.engine);
        let excluded: BTreeSet<MemberIndex> = running
            .iter()
            .flat_map(|(_, r)| r.excluded().keys().copied())
            .collect();
        let mut adversary = AdversaryStats::default();
        for a in self
            .engine
            .members()
            .iter()
            .filter_map(SimMember::adversary)
        {
            adversary.add(&a.stats());
        }
        let mut strategies = self.strategies.clone();
        strategies.extend(observer.strategies.iter().copied());
        let net = result.stats;
        RunReport {
            seed: self.cfg.seed,
            members: self.cfg.members,
            violations: observer.checker.violations().to_vec(),
            decided_instances: observer.checker.decided_instances(),
            decisions: observer.checker.decisions().to_vec(),
            end_time: self.engine.now(),
            traffic: result
                .members
                .iter()
                .map(|t| Traffic {
                    sent: t.sent,
                    received: t.received,
                })
                .collect(),
            stats: SimStats {
                events: net.events,
                messages_sent: net.messages_sent,
                messages_delivered: net.messages_delivered,
                messages_lost: net.messages_lost,
                bytes_delivered: net.bytes_delivered,
                bytes_lost: net.bytes_lost,
                bytes_in_flight: result.bytes_in_flight,
                evidence_produced: counters.evidence_produced,
                invalid_signatures_caught: counters.invalid_signatures_caught,
                members_excluded: excluded.len() as u64,
                faults_reported: counters.faults_reported,
                faults_against_honest: counters.faults_against_honest,
                links_dropped: net.links_dropped,
                rewires: net.rewires,
                crash_restarts: counters.crash_restarts,
                wire_errors: counters.wire_errors,
                proposals: counters.proposals,
                dropped_proposals: counters.dropped_proposals,
            },
            adversary,
            strategies,
            honest_faults: observer.honest_faults.clone(),
            stalled_keys: self.stalled_keys,
            event_hash: net.event_hash,
        }
    }
}

/// The running honest members' replicas.
fn running_honest<'e>(engine: &'e Engine<'_, SimMember>) -> Vec<(MemberIndex, &'e Replica)> {
    engine
        .members()
        .iter()
        .filter(|m| m.adversary().is_none())
        .filter_map(|m| m.node().replica().map(|r| (m.node().index(), r)))
        .collect()
}

//! Seeded adversarial scenarios, as `beaufort sim check` runs them, and the summary over many.
//!
//! One seed determines a whole scenario: which f members are Byzantine and how they behave, the
//! workload (several keys, concurrent proposals on one key, deletes), 5 % message loss with
//! jitter, a partition that later heals, and crash-restarts of honest members. Runs are short in
//! virtual time (disruptions end within about 5 s) and stop as soon as everything is decided.

use crate::byzantine::{AdversaryStats, Strategy};
use crate::config::{FaultEvent, Micros, ProposalEvent, SimConfig, MS, SECOND};
use crate::invariants::Violation;
use crate::network::index;
use crate::sim::{RunReport, Simulation};
use crate::SimError;
use beaufort_core::types::{Key, MemberIndex, Value};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

/// Which Byzantine behaviour a check uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdversaryMode {
    /// No Byzantine members.
    None,
    /// f Byzantine members, all with one strategy.
    Only(Strategy),
    /// f Byzantine members, each with a strategy drawn per seed, possibly switching mid-run.
    All,
}

impl FromStr for AdversaryMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(AdversaryMode::None),
            "all" => Ok(AdversaryMode::All),
            other => other.parse().map(AdversaryMode::Only).map_err(|_| {
                format!(
                    "unknown adversary {other:?}; expected none, all, or one of: {}",
                    Strategy::ALL.map(Strategy::name).join(", ")
                )
            }),
        }
    }
}

impl fmt::Display for AdversaryMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdversaryMode::None => f.write_str("none"),
            AdversaryMode::All => f.write_str("all"),
            AdversaryMode::Only(s) => write!(f, "{s}"),
        }
    }
}

/// Keys the workload writes.
const KEYS: usize = 3;

/// The adversarial scenario for `members` members and `seed`.
pub fn check_config(members: usize, seed: u64, mode: AdversaryMode) -> SimConfig {
    let mut cfg = SimConfig::new(members, seed);
    // Scenario choices come from their own stream so the simulation's stream stays independent.
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5ce7_a710_u64.rotate_left(32));
    cfg.network.loss = 0.05;
    cfg.network.delay_mean = 20 * MS;
    cfg.network.delay_jitter = 15 * MS;

    let mut all: Vec<MemberIndex> = (0..members).map(index).collect();
    all.shuffle(&mut rng);
    let f = cfg.max_faulty();
    if mode != AdversaryMode::None {
        for &m in all.iter().take(f) {
            let strategy = match mode {
                AdversaryMode::Only(s) => s,
                _ => Strategy::ALL[rng.gen_range(0..Strategy::ALL.len())],
            };
            cfg.byzantine.insert(m, strategy);
            if mode == AdversaryMode::All && rng.gen_bool(0.5) {
                let at = rng.gen_range(300 * MS..3 * SECOND);
                let next = Strategy::ALL[rng.gen_range(0..Strategy::ALL.len())];
                cfg.faults.push((at, FaultEvent::SwitchStrategy(m, next)));
            }
        }
    }
    let honest: Vec<MemberIndex> = all
        .iter()
        .copied()
        .filter(|m| !cfg.byzantine.contains_key(m))
        .collect();

    let keys: Vec<Key> = (0..KEYS)
        .filter_map(|i| Key::new(format!("k{i}").into_bytes()).ok())
        .collect();
    let count = members + rng.gen_range(0..members.max(1));
    for i in 0..count {
        let at: Micros = rng.gen_range(0..3 * SECOND);
        let key = keys[rng.gen_range(0..keys.len())].clone();
        let proposer = index(rng.gen_range(0..members));
        let value = |rng: &mut ChaCha8Rng, tag: &str| {
            if rng.gen_bool(0.1) {
                Value::Tombstone
            } else {
                Value::Data(format!("v{seed}-{i}{tag}").into_bytes())
            }
        };
        cfg.proposals.push((
            at,
            ProposalEvent {
                member: proposer,
                key: key.clone(),
                value: value(&mut rng, ""),
            },
        ));
        if rng.gen_bool(0.3) {
            let other = index(rng.gen_range(0..members));
            cfg.proposals.push((
                at + rng.gen_range(0..3 * MS),
                ProposalEvent {
                    member: other,
                    key,
                    value: value(&mut rng, "c"),
                },
            ));
        }
    }

    // A partition into two random groups, healed later.
    let start = rng.gen_range(300 * MS..2 * SECOND);
    let heal = start + rng.gen_range(500 * MS..2500 * MS);
    let mut shuffled: Vec<MemberIndex> = (0..members).map(index).collect();
    shuffled.shuffle(&mut rng);
    let cut = rng.gen_range(1..members.max(2));
    cfg.faults.push((
        start,
        FaultEvent::Partition(vec![shuffled[..cut.min(members)].to_vec()]),
    ));
    cfg.faults.push((heal, FaultEvent::Heal));

    // Crash-restarts of honest members.
    let crashes = rng.gen_range(1..=2);
    for _ in 0..crashes {
        if let Some(&m) = honest.choose(&mut rng) {
            let down = rng.gen_range(0..4 * SECOND);
            let up = down + rng.gen_range(100 * MS..1500 * MS);
            cfg.faults.push((down, FaultEvent::Crash(m)));
            cfg.faults.push((up, FaultEvent::Restart(m)));
        }
    }
    cfg
}

/// Runs one adversarial scenario.
pub fn run_seed(members: usize, seed: u64, mode: AdversaryMode) -> Result<RunReport, SimError> {
    Ok(Simulation::new(check_config(members, seed, mode))?.run())
}

/// Re-runs one scenario recording its schedule, for a replay file.
pub fn record(cfg: SimConfig) -> Result<(RunReport, crate::replay::Script), SimError> {
    let mut sim = Simulation::new(cfg)?;
    sim.record();
    sim.run_to_end();
    let script = sim
        .script()
        .ok_or_else(|| SimError::Config("recording was not enabled".to_owned()))?;
    Ok((sim.report(), script))
}

/// Totals over many runs.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// Runs.
    pub runs: u64,
    /// Decided (key, view) instances, summed over runs.
    pub decided: u64,
    /// Every violation, with the run's member count and seed.
    pub violations: Vec<(usize, u64, Violation)>,
    /// Summed counters.
    pub stats: crate::sim::SimStats,
    /// Summed adversary counters.
    pub adversary: AdversaryStats,
    /// How many runs used each strategy.
    pub strategies: BTreeMap<Strategy, u64>,
    /// Runs in which an honest member blamed another honest member, with examples.
    pub honest_faults: Vec<(usize, u64, String)>,
    /// Stalled keys (see [`RunReport::stalled_keys`]), summed over runs.
    pub stalled_keys: u64,
    /// Bytes sent, summed over members and runs.
    pub bytes_sent: u64,
    /// Virtual time simulated, summed over runs.
    pub virtual_time: Micros,
}

impl Summary {
    /// Adds one run.
    pub fn add(&mut self, report: &RunReport) {
        self.runs += 1;
        self.decided += report.decided_instances as u64;
        for v in &report.violations {
            self.violations
                .push((report.members, report.seed, v.clone()));
        }
        let s = &report.stats;
        let t = &mut self.stats;
        t.events += s.events;
        t.messages_sent += s.messages_sent;
        t.messages_delivered += s.messages_delivered;
        t.messages_lost += s.messages_lost;
        t.bytes_delivered += s.bytes_delivered;
        t.bytes_lost += s.bytes_lost;
        t.evidence_produced += s.evidence_produced;
        t.invalid_signatures_caught += s.invalid_signatures_caught;
        t.members_excluded += s.members_excluded;
        t.faults_reported += s.faults_reported;
        t.faults_against_honest += s.faults_against_honest;
        t.links_dropped += s.links_dropped;
        t.rewires += s.rewires;
        t.crash_restarts += s.crash_restarts;
        t.wire_errors += s.wire_errors;
        t.proposals += s.proposals;
        t.dropped_proposals += s.dropped_proposals;
        self.adversary.add(&report.adversary);
        let used: BTreeSet<Strategy> = report.strategies.clone();
        for s in used {
            *self.strategies.entry(s).or_default() += 1;
        }
        if let Some(first) = report.honest_faults.first() {
            self.honest_faults
                .push((report.members, report.seed, first.clone()));
        }
        self.stalled_keys += report.stalled_keys as u64;
        self.bytes_sent += report.traffic.iter().map(|t| t.sent).sum::<u64>();
        self.virtual_time += report.end_time;
    }
}

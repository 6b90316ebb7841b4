//! Performance evaluation: latency and bandwidth of BeauFort and of PBFT and Tendermint-style
//! baselines under one network and CPU cost model (`beaufort sim run`, `beaufort sim paper`).
//!
//! The runs use the simulator's one event loop (`beaufort_sim::engine`), the loop the adversarial
//! checker runs too, and the same Beaufort member (`beaufort_sim::member::SimMember`). Where the
//! checker gives handlers free CPU and unlimited links, a performance run charges each member's
//! CPU clock from a cost table ([`cost`]), gives it 20 Mbit/s access links and 60 ms links with
//! jitter, and submits transactions at a set rate. Everything except measured-cost mode is
//! deterministic for a seed.
//!
//! * [`cost`]: the cost table, its calibration, and the counting signature decorators.
//! * [`beaufort`]: the real core's members, counted for the cost table.
//! * [`scenario`]: each scenario's disruptions as scheduled faults.
//! * [`pbft`] and [`tendermint`]: the baselines, sharing [`baseline`].
//! * [`report`]: the JSON report; [`paper`]: the matrix as CSV and SVG box plots.

pub mod baseline;
pub mod beaufort;
pub mod cost;
pub mod knob;
pub mod paper;
pub mod pbft;
pub mod report;
pub mod scenario;
pub mod tendermint;

use beaufort_core::types::MemberIndex;
use beaufort_core::wire::WireParts;
use beaufort_sim::config::{Micros, MS, SECOND};
use beaufort_sim::config::{NetworkConfig, Transport};
use beaufort_sim::engine::{Engine, EngineConfig, Member, Stop, Topology, Tx};
use beaufort_sim::member::SimMember;
use beaufort_sim::network::index;
use beaufort_sim::SimError;
use cost::{CostMode, CostTable};
use report::PartBytes;
use serde::Serialize;
use std::collections::BTreeSet;

/// Extra virtual time after the workload ends for late transactions to commit.
const DRAIN: Micros = 30 * SECOND;
/// How often a run checks whether everything has committed (after the workload).
const CHECK_EVERY: Micros = 100 * MS;

/// When the first crash of [`Scenario::Crash25`] happens.
pub const CRASH_START: Micros = 5 * SECOND;
/// Time between two crashes of [`Scenario::Crash25`] (the paper: one every 5 s).
pub const CRASH_EVERY: Micros = 5 * SECOND;
/// How long [`Scenario::Partition`] keeps the two halves apart.
pub const PARTITION_FOR: Micros = 5 * SECOND;

/// Which protocol the members run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// The real Beaufort core.
    Beaufort,
    /// PBFT (leader, pre-prepare / prepare / commit, MACs, view change).
    Pbft,
    /// Tendermint-style (rotating proposer, prevote / precommit gossip, timeouts).
    Tendermint,
}

impl Protocol {
    /// All three, in plot order.
    pub const ALL: [Protocol; 3] = [Protocol::Beaufort, Protocol::Pbft, Protocol::Tendermint];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Beaufort => "beaufort",
            Protocol::Pbft => "pbft",
            Protocol::Tendermint => "tendermint",
        }
    }
}

/// What happens during the run besides the workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// No faults.
    Optimistic,
    /// 25 % of the members crash for good, one every 5 s from t = 5 s (member 0 first).
    Crash25,
    /// The last member is Byzantine: invalid signatures while the fast path is on, then, from a
    /// third of the run, it withholds everything.
    Byzantine,
    /// Two halves (neither has a quorum) are cut apart for 5 s from a third of the run.
    Partition,
}

impl Scenario {
    /// All scenarios.
    pub const ALL: [Scenario; 4] = [
        Scenario::Optimistic,
        Scenario::Crash25,
        Scenario::Byzantine,
        Scenario::Partition,
    ];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Optimistic => "optimistic",
            Scenario::Crash25 => "crash25",
            Scenario::Byzantine => "byzantine",
            Scenario::Partition => "partition",
        }
    }
}

/// A performance run. Defaults follow the paper's set-up (seed 002 §5) where it has one.
#[derive(Clone, Debug)]
pub struct PerfConfig {
    /// The protocol.
    pub protocol: Protocol,
    /// Members.
    pub members: usize,
    /// Mean one-way link latency (paper: 60 ms with `tc`).
    pub latency: Micros,
    /// Each message's latency is uniform in `latency ± jitter`.
    pub jitter: Micros,
    /// Message loss probability.
    pub loss: f64,
    /// Per-member upload capacity, Mbit/s (default 20, mobile class).
    pub upload_mbit: f64,
    /// Per-member download capacity, Mbit/s (default 20).
    pub download_mbit: f64,
    /// Overlay neighbours per member (paper: 7).
    pub degree: usize,
    /// Transactions per second each member submits (paper: 1).
    pub rate: f64,
    /// Members proposing for the same key at once (1 = no contention).
    pub contention: usize,
    /// Length of the workload.
    pub duration: Micros,
    /// Faults.
    pub scenario: Scenario,
    /// Seed of every random choice.
    pub seed: u64,
    /// How handlers are charged.
    pub cost: CostMode,
    /// BeauFort's flush interval (delta batching).
    pub flush_every: Micros,
    /// BeauFort's relay trees: parents per member and origin (0 floods every vote to every
    /// neighbour; see `beaufort_core::relay`).
    pub relay_parents: usize,
    /// BeauFort's grace period before held-back votes are offered to the other neighbours.
    pub relay_retry: Micros,
    /// BeauFort's votes travel as pieces on one tree per key, each member waiting up to this
    /// long for its other tree links (`beaufort_core::cadence::Cadence::aggregate_wait`);
    /// `None` sends single shares on the relay trees.
    pub aggregate_wait: Option<Micros>,
    /// All members share one host with this many cores (as `beaufort demo` runs them in one
    /// process); `None` gives every member its own CPU, as a deployment does.
    pub host_cores: Option<usize>,
}

impl PerfConfig {
    /// The paper's optimistic set-up for `members` members with the reference cost table.
    pub fn new(protocol: Protocol, members: usize, seed: u64) -> PerfConfig {
        PerfConfig {
            protocol,
            members,
            latency: 60 * MS,
            jitter: 10 * MS,
            loss: 0.0,
            upload_mbit: 20.0,
            download_mbit: 20.0,
            degree: 7,
            rate: 1.0,
            contention: 1,
            duration: 30 * SECOND,
            scenario: Scenario::Optimistic,
            seed,
            cost: CostMode::Modelled(CostTable::reference()),
            flush_every: 5 * MS,
            relay_parents: 1,
            relay_retry: 300 * MS,
            aggregate_wait: None,
            host_cores: None,
        }
    }

    /// The Byzantine members of the scenario.
    pub fn byzantine(&self) -> BTreeSet<MemberIndex> {
        if self.scenario == Scenario::Byzantine && self.members >= 4 {
            std::iter::once(index(self.members - 1)).collect()
        } else {
            BTreeSet::new()
        }
    }

    /// The workload: every member submits at `rate` from a random phase; with contention, groups
    /// of `contention` members write the same key at the same moment.
    pub fn workload(&self) -> Vec<Tx> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(self.seed ^ 0x3017);
        let every = (SECOND as f64 / self.rate.max(1e-6)) as Micros;
        let group = self.contention.max(1);
        let phases: Vec<Micros> = (0..self.members.div_ceil(group))
            .map(|_| rng.gen_range(0..every.max(1)))
            .collect();
        let mut txs = Vec::new();
        for m in 0..self.members {
            let g = m / group;
            let mut at = phases[g];
            let mut k = 0u64;
            while at < self.duration {
                let key = if group > 1 {
                    format!("hot/{g}/{k}")
                } else {
                    format!("token/{m}/{k}")
                };
                let action = if k % 4 == 3 { "redeem" } else { "transfer" };
                // ~170 bytes, like an end-user-signed transfer (P-256 signature and key).
                let mut value = format!("{action}:{m}:{k}:").into_bytes();
                value.resize(170, b'.');
                txs.push(Tx {
                    id: 0,
                    member: index(m),
                    at,
                    key,
                    value,
                });
                k += 1;
                at += every;
            }
        }
        txs.sort_by_key(|t| (t.at, t.member));
        for (i, t) in txs.iter_mut().enumerate() {
            t.id = i;
        }
        txs
    }
}

/// Runs `members` on the simulator's engine with the configuration's links, CPU cost and
/// scenario, until every transaction has committed everywhere or the drain time is over.
fn measure<'a, M: Member>(
    cfg: &PerfConfig,
    members: Vec<M>,
    topology: Topology,
    txs: &[Tx],
    byzantine: BTreeSet<MemberIndex>,
    progress: Option<&'a dyn Fn(Micros)>,
) -> Engine<'a, M> {
    let world = EngineConfig {
        seed: cfg.seed ^ 0x005e_ed0f_7e57,
        network: NetworkConfig {
            delay_mean: cfg.latency,
            delay_jitter: cfg.jitter,
            loss: cfg.loss,
            transport: Transport::Stream,
            degree: cfg.degree,
            ensure_honest_connected: false,
            ..NetworkConfig::default()
        },
        upload_mbit: cfg.upload_mbit,
        download_mbit: cfg.download_mbit,
        host_cores: cfg.host_cores,
        measure_until: cfg.duration,
        topology,
    };
    let n = members.len();
    let mut engine = Engine::new(
        world,
        Box::new(cfg.cost),
        members,
        txs.to_vec(),
        Vec::new(),
        byzantine.clone(),
    );
    let faults = cfg.scenario.faults(cfg, &byzantine, n, engine.halves());
    engine.add_faults(faults);
    if let Some(progress) = progress {
        engine.on_progress(progress);
    }
    let stop = Stop {
        first_check: cfg.duration,
        every: CHECK_EVERY,
        deadline: cfg.duration + DRAIN,
    };
    engine.run(&stop, Engine::all_committed);
    engine
}

/// Runs one configuration and reports it. `progress` is called with the virtual time.
pub fn run(
    cfg: &PerfConfig,
    progress: Option<&dyn Fn(Micros)>,
) -> Result<report::PerfReport, SimError> {
    if !(4..=2048).contains(&cfg.members) {
        return Err(SimError::Config(format!(
            "members must be 4..=2048, got {}",
            cfg.members
        )));
    }
    if cfg.upload_mbit <= 0.0 || cfg.download_mbit <= 0.0 || cfg.rate <= 0.0 {
        return Err(SimError::Config(
            "bandwidth and rate must be positive".into(),
        ));
    }
    let byzantine = cfg.byzantine();
    let txs = cfg.workload();
    let report = match cfg.protocol {
        Protocol::Beaufort => {
            let members = beaufort::members(cfg, &txs, &byzantine)?
                .into_iter()
                .map(|m| m.measuring_wire(cfg.duration).adversary_rewires())
                .collect();
            let engine = measure(cfg, members, Topology::Overlay, &txs, byzantine, progress);
            let mut report = report::PerfReport::new(cfg, &txs, engine.result());
            let mut sent = WireParts::default();
            let honest: Vec<&SimMember> = engine
                .members()
                .iter()
                .filter(|m| m.adversary().is_none())
                .collect();
            for member in &honest {
                sent.add(&member.sent_parts());
            }
            report.sent_per_tx_by_part =
                Some(PartBytes::of(&sent, honest.len(), report.samples.len()));
            report
        }
        Protocol::Pbft | Protocol::Tendermint => {
            let (members, topology) = if cfg.protocol == Protocol::Pbft {
                (pbft::members(cfg.members), Topology::Full)
            } else {
                (tendermint::members(cfg.members), Topology::Overlay)
            };
            let engine = measure(cfg, members, topology, &txs, byzantine, progress);
            report::PerfReport::new(cfg, &txs, engine.result())
        }
    };
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(seed: u64) -> PerfConfig {
        let mut cfg = PerfConfig::new(Protocol::Beaufort, 7, seed);
        cfg.duration = 2 * SECOND;
        cfg
    }

    #[test]
    fn a_seed_replays_exactly() {
        let a = run(&small(3), None).expect("run");
        let b = run(&small(3), None).expect("run");
        assert_eq!(a.samples, b.samples);
        assert_eq!(a.messages, b.messages);
        assert_eq!(a.events, b.events);
        assert_eq!(a.bandwidth_mbit_per_node, b.bandwidth_mbit_per_node);
        assert_eq!(a.decided, a.submitted);
        assert!(a.submitted > 0);
    }

    /// Members sharing one core wait for each other's work: the same run decides the same
    /// transactions, later, with more of the critical path spent waiting for the CPU.
    #[test]
    fn members_on_one_shared_core_wait_for_each_other() {
        let own = run(&small(5), None).expect("run");
        let mut cfg = small(5);
        cfg.host_cores = Some(1);
        let shared = run(&cfg, None).expect("run");
        assert_eq!(shared.decided, own.decided);
        assert!(shared.breakdown_ms.cpu_wait > own.breakdown_ms.cpu_wait);
        assert!(shared.latency_ms.p50 > own.latency_ms.p50);
    }

    #[test]
    fn baselines_replay_exactly_and_decide_with_and_without_crashes() {
        for protocol in [Protocol::Pbft, Protocol::Tendermint] {
            for scenario in [Scenario::Optimistic, Scenario::Crash25] {
                let mut cfg = PerfConfig::new(protocol, 8, 4);
                cfg.duration = 8 * SECOND;
                cfg.scenario = scenario;
                let a = run(&cfg, None).expect("run");
                let b = run(&cfg, None).expect("run");
                assert_eq!(a.samples, b.samples, "{protocol:?} {scenario:?}");
                assert_eq!(a.messages, b.messages);
                assert_eq!(a.bandwidth_mbit_per_node, b.bandwidth_mbit_per_node);
                assert!(a.submitted > 0);
                // Member 0 (PBFT's first leader) crashes at 5 s: at most its own in-flight
                // transactions are never decided at their (dead) submitter.
                let lost = if scenario == Scenario::Crash25 { 2 } else { 0 };
                assert!(
                    a.decided + lost >= a.submitted,
                    "{protocol:?} {scenario:?}: {}/{}",
                    a.decided,
                    a.submitted
                );
            }
        }
    }

    #[test]
    fn pbft_links_everyone_and_tendermint_gossips() {
        // PBFT's leader sends every batch to n - 1 replicas over direct links; Tendermint floods
        // every vote over the overlay, so it moves more bytes per member for the same workload.
        let mut cfg = PerfConfig::new(Protocol::Pbft, 10, 2);
        cfg.duration = 3 * SECOND;
        let pbft = run(&cfg, None).expect("run");
        cfg.protocol = Protocol::Tendermint;
        let tendermint = run(&cfg, None).expect("run");
        assert_eq!(pbft.decided, pbft.submitted);
        assert_eq!(tendermint.decided, tendermint.submitted);
        assert!(tendermint.bandwidth_mbit_per_node.mean > pbft.bandwidth_mbit_per_node.mean);
    }

    #[test]
    fn relay_trees_move_fewer_bytes_and_still_decide_everything_through_crashes() {
        // With relay trees each member gets each vote about once instead of once per
        // neighbour; crash25 cuts trees (re-planned at once, held-back votes repair the rest),
        // which must cost no decisions beyond the crashed member's own in-flight ones.
        for scenario in [Scenario::Optimistic, Scenario::Crash25] {
            let mut cfg = PerfConfig::new(Protocol::Beaufort, 16, 6);
            cfg.duration = 7 * SECOND;
            cfg.scenario = scenario;
            cfg.relay_parents = 0;
            let flood = run(&cfg, None).expect("run");
            cfg.relay_parents = 1;
            let trees = run(&cfg, None).expect("run");
            // A member crashing at 5 s takes its own in-flight transactions with it.
            let lost = if scenario == Scenario::Crash25 { 2 } else { 0 };
            for report in [&flood, &trees] {
                assert!(
                    report.decided + lost >= report.submitted,
                    "{scenario:?}: {}/{}",
                    report.decided,
                    report.submitted
                );
            }
            assert!(
                trees.bandwidth_mbit_per_node.mean < 0.8 * flood.bandwidth_mbit_per_node.mean,
                "{scenario:?}: {:?} vs {:?}",
                trees.bandwidth_mbit_per_node,
                flood.bandwidth_mbit_per_node
            );
        }
    }

    #[test]
    fn votes_as_pieces_move_fewer_bytes_per_transaction_and_still_decide_everything_through_crashes(
    ) {
        // Pieces on one tree per key replace the ~2n single shares each member receives per
        // transaction; a member crashing at 5 s cuts trees, which the wait, the fallback to the
        // other neighbours and anti-entropy repair, at no cost in decisions beyond its own
        // in-flight transactions.
        for scenario in [Scenario::Optimistic, Scenario::Crash25] {
            let mut cfg = PerfConfig::new(Protocol::Beaufort, 16, 6);
            cfg.duration = 7 * SECOND;
            cfg.scenario = scenario;
            let shares = run(&cfg, None).expect("run");
            cfg.aggregate_wait = Some(100 * MS);
            let pieces = run(&cfg, None).expect("run");
            let lost = if scenario == Scenario::Crash25 { 2 } else { 0 };
            assert!(
                pieces.decided + lost >= pieces.submitted,
                "{scenario:?}: {} of {} decided",
                pieces.decided,
                pieces.submitted
            );
            assert!(
                pieces.bytes_per_tx.received_per_tx < 0.6 * shares.bytes_per_tx.received_per_tx,
                "{scenario:?}: {:?} vs {:?}",
                pieces.bytes_per_tx,
                shares.bytes_per_tx
            );
        }
    }

    #[test]
    fn workload_follows_the_rate() {
        let cfg = small(1);
        let txs = cfg.workload();
        assert_eq!(txs.len(), 7 * 2);
        let keys: BTreeSet<&String> = txs.iter().map(|t| &t.key).collect();
        assert_eq!(keys.len(), txs.len(), "distinct tokens without contention");
        let mut hot = small(1);
        hot.contention = 7;
        let keys: BTreeSet<String> = hot.workload().into_iter().map(|t| t.key).collect();
        assert_eq!(keys.len(), 2, "all members write the same key each second");
    }

    #[test]
    fn cpu_cost_delays_commits() {
        let cheap = run(&small(5), None).expect("run");
        let mut slow = small(5);
        let mut table = CostTable::reference();
        table.bls_sign *= 200;
        slow.cost = CostMode::Modelled(table);
        let slow = run(&slow, None).expect("run");
        eprintln!(
            "{:?} {:?} {:?} {:?}",
            cheap.breakdown_ms, slow.breakdown_ms, cheap.latency_ms, slow.latency_ms
        );
        // Every commit needs the members' own signatures: 200× dearer signing (34 ms each) must
        // show up on the critical path as CPU work or as waiting for a busy CPU, and in latency.
        let busy = |r: &report::PerfReport| r.breakdown_ms.cpu + r.breakdown_ms.cpu_wait;
        assert!(busy(&slow) > busy(&cheap) + 30.0);
        assert!(slow.latency_ms.p50 > cheap.latency_ms.p50);
        assert!(slow.cpu_utilisation.mean > cheap.cpu_utilisation.mean);
    }

    #[test]
    fn narrow_links_queue_messages() {
        let wide = run(&small(9), None).expect("run");
        let mut cfg = small(9);
        cfg.upload_mbit = 0.5;
        cfg.download_mbit = 0.5;
        let narrow = run(&cfg, None).expect("run");
        assert!(narrow.breakdown_ms.link > wide.breakdown_ms.link);
        // Upload accounting: the bytes fit in the window's capacity.
        assert!(narrow.upload_mbit_per_node.max <= 0.5 + 1e-9);
    }
}

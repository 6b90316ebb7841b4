//! What a simulated run looks like. Everything here is data: the same config and seed give the
//! same run.

use crate::byzantine::Strategy;
use crate::keys::CryptoKind;
use beaufort_core::cadence::Cadence;
use beaufort_core::types::{Key, MemberIndex, Value};
use std::collections::BTreeMap;

/// Virtual time in microseconds since the start of the run.
pub type Micros = u64;

/// One millisecond of virtual time.
pub const MS: Micros = 1_000;
/// One second of virtual time.
pub const SECOND: Micros = 1_000_000;

/// How links behave when a message is lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Transport {
    /// Like the node's libp2p streams: each direction of a link is FIFO, and a lost message
    /// breaks the connection (everything in flight on it is lost, both ends see the peer go and
    /// come back after a reconnect delay, then run anti-entropy). Jitter still reorders messages
    /// of different links.
    #[default]
    Stream,
    /// Independent datagrams: each message is lost on its own and jitter reorders messages even
    /// on one link. Harsher than the node's transport.
    Datagram,
}

/// The network model shared by every link.
#[derive(Clone, Debug)]
pub struct NetworkConfig {
    /// Mean one-way delay of a message.
    pub delay_mean: Micros,
    /// Each message's delay is uniform in `mean ± jitter`; jitter larger than the gap between two
    /// messages reorders them.
    pub delay_jitter: Micros,
    /// Probability that a message is lost.
    pub loss: f64,
    /// What a loss means and whether links are FIFO.
    pub transport: Transport,
    /// With [`Transport::Stream`], a broken connection comes back after a delay in this range.
    pub reconnect_after: (Micros, Micros),
    /// Neighbours of each member in the random regular overlay (a few members may get one more).
    pub degree: usize,
    /// Keep the honest members' subgraph connected when links are dropped or re-wired.
    pub ensure_honest_connected: bool,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            delay_mean: 20 * MS,
            delay_jitter: 10 * MS,
            loss: 0.0,
            transport: Transport::Stream,
            reconnect_after: (50 * MS, 300 * MS),
            degree: 7,
            ensure_honest_connected: true,
        }
    }
}

/// A scheduled fault or adversary action.
#[derive(Clone, Debug, PartialEq)]
pub enum FaultEvent {
    /// Split the members into groups; messages between groups are dropped.
    Partition(Vec<Vec<MemberIndex>>),
    /// Remove the partition.
    Heal,
    /// The member loses everything not on its disk and stops.
    Crash(MemberIndex),
    /// The member restarts from its disk.
    Restart(MemberIndex),
    /// A Byzantine member switches strategy.
    SwitchStrategy(MemberIndex, Strategy),
}

/// One proposal of the workload.
#[derive(Clone, Debug, PartialEq)]
pub struct ProposalEvent {
    /// Who proposes (skipped if it is down at that time).
    pub member: MemberIndex,
    /// The key.
    pub key: Key,
    /// The value (a tombstone deletes).
    pub value: Value,
}

/// A whole run: members, adversaries, network, timers, workload and faults.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Number of members, n.
    pub members: usize,
    /// The seed of every random choice.
    pub seed: u64,
    /// The Byzantine members and their initial strategies.
    pub byzantine: BTreeMap<MemberIndex, Strategy>,
    /// Signature scheme.
    pub crypto: CryptoKind,
    /// Network model.
    pub network: NetworkConfig,
    /// When members push, run anti-entropy and retry held-back votes, and their relay trees'
    /// shape: what a deployed member runs unless a study changes it. Its seed is the run's.
    pub cadence: Cadence,
    /// Proposals, by virtual time.
    pub proposals: Vec<(Micros, ProposalEvent)>,
    /// Faults, by virtual time.
    pub faults: Vec<(Micros, FaultEvent)>,
    /// Liveness bound: once the network is healed and every member restarted (the last fault),
    /// every instance an honest member voted in must be decided by all running honest members
    /// within this much virtual time.
    pub liveness_bound: Micros,
    /// Stop as soon as the run is quiescent (everything decided and agreed) after the last fault
    /// and proposal, instead of running to the liveness bound.
    pub stop_when_settled: bool,
}

impl SimConfig {
    /// A fault-free run of `members` honest members with default network and timers and no
    /// workload; callers add proposals, faults and adversaries.
    pub fn new(members: usize, seed: u64) -> SimConfig {
        SimConfig {
            members,
            seed,
            byzantine: BTreeMap::new(),
            crypto: CryptoKind::StandIn,
            network: NetworkConfig::default(),
            cadence: Cadence {
                seed,
                ..Cadence::default()
            },
            proposals: Vec::new(),
            faults: Vec::new(),
            liveness_bound: 30 * SECOND,
            stop_when_settled: true,
        }
    }

    /// f = ⌊(n − 1) / 3⌋.
    pub fn max_faulty(&self) -> usize {
        self.members.saturating_sub(1) / 3
    }

    /// q = n − f.
    pub fn quorum(&self) -> usize {
        self.members - self.max_faulty()
    }

    /// Whether `member` is Byzantine in this run.
    pub fn is_byzantine(&self, member: MemberIndex) -> bool {
        self.byzantine.contains_key(&member)
    }

    /// The time of the last scheduled disruption (fault or proposal); liveness is measured from it.
    pub fn last_disruption(&self) -> Micros {
        let faults = self
            .faults
            .iter()
            .filter(|(_, f)| !matches!(f, FaultEvent::SwitchStrategy(..)))
            .map(|(t, _)| *t);
        let proposals = self.proposals.iter().map(|(t, _)| *t);
        faults.chain(proposals).max().unwrap_or(0)
    }
}

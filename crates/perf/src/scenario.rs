//! A scenario's disruptions, as the engine's scheduled faults.

use super::{PerfConfig, Scenario};
use beaufort_core::types::MemberIndex;
use beaufort_sim::byzantine::Strategy;
use beaufort_sim::config::{FaultEvent, Micros};
use beaufort_sim::network::index;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeSet;

impl Scenario {
    /// The scenario's disruptions for `n` members, by time; `halves` are the two sides of a
    /// partition (the engine's seeded halves).
    pub fn faults(
        self,
        cfg: &PerfConfig,
        byzantine: &BTreeSet<MemberIndex>,
        n: usize,
        halves: &[Vec<MemberIndex>],
    ) -> Vec<(Micros, FaultEvent)> {
        match self {
            Scenario::Optimistic => Vec::new(),
            Scenario::Crash25 => {
                // Member 0 first (the initial PBFT leader), then others in a seeded order; none
                // comes back.
                let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ 0xc4a5);
                let mut others: Vec<usize> = (1..n).collect();
                others.shuffle(&mut rng);
                std::iter::once(0)
                    .chain(others)
                    .take(n / 4)
                    .enumerate()
                    .map(|(k, m)| {
                        let at = super::CRASH_START + k as Micros * super::CRASH_EVERY;
                        (at, FaultEvent::Crash(index(m)))
                    })
                    .collect()
            }
            Scenario::Byzantine => byzantine
                .iter()
                .map(|&m| {
                    (
                        cfg.duration / 3,
                        FaultEvent::SwitchStrategy(m, Strategy::Withhold),
                    )
                })
                .collect(),
            Scenario::Partition => vec![
                (cfg.duration / 3, FaultEvent::Partition(halves.to_vec())),
                (cfg.duration / 3 + super::PARTITION_FOR, FaultEvent::Heal),
            ],
        }
    }
}

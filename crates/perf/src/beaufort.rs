//! The real Beaufort core in a performance run: the simulator's own member
//! ([`beaufort_sim::member::SimMember`], the same one the checker runs), with cheap stand-in
//! signatures counted for the cost table (or real BLS in measured mode). For the Byzantine
//! scenario an [`Adversary`] rewrites the member's outgoing messages. The scenarios crash
//! members for good, so no member keeps a disk.

use super::cost::CostMode;
use super::PerfConfig;
use beaufort_core::cadence::Cadence;
use beaufort_core::types::MemberIndex;
use beaufort_sim::byzantine::{Adversary, Strategy};
use beaufort_sim::engine::ops::CryptoCounter;
use beaufort_sim::engine::Tx;
use beaufort_sim::keys::{CryptoKind, ForbiddenPrefixHook, Keyring};
use beaufort_sim::member::{SimMember, Workload};
use beaufort_sim::network::index;
use beaufort_sim::node::Node;
use beaufort_sim::SimError;
use std::collections::BTreeSet;
use std::sync::Arc;

/// Builds the members of a Beaufort run over the workload `txs`.
pub fn members(
    cfg: &PerfConfig,
    txs: &[Tx],
    byzantine: &BTreeSet<MemberIndex>,
) -> Result<Vec<SimMember>, SimError> {
    let counting = matches!(cfg.cost, CostMode::Modelled(_));
    let kind = if counting {
        CryptoKind::StandIn
    } else {
        CryptoKind::Bls
    };
    let keyring = Arc::new(Keyring::new(kind, cfg.members, cfg.seed)?);
    let workload = Arc::new(Workload::of_txs(txs));
    let cadence = Cadence {
        flush_every: cfg.flush_every.div_ceil(1000).max(1),
        second_chance_every: cfg.relay_retry.div_ceil(1000).max(1),
        relay_parents: cfg.relay_parents,
        aggregate_wait: cfg.aggregate_wait.map(|wait| wait.div_ceil(1000)),
        seed: cfg.seed,
        ..Cadence::default()
    };
    Ok((0..cfg.members)
        .map(|i| {
            let m = index(i);
            let counter = counting.then(|| Arc::new(CryptoCounter::default()));
            let node = Node::counting(
                m,
                keyring.clone(),
                Arc::new(ForbiddenPrefixHook),
                cadence,
                counter.clone(),
            )
            .without_disk();
            let adversary = byzantine
                .contains(&m)
                .then(|| Adversary::new(m, Strategy::InvalidSignatures, &keyring));
            SimMember::new(
                node,
                cfg.members,
                adversary,
                cfg.seed,
                workload.clone(),
                cfg.flush_every,
                counter,
            )
        })
        .collect())
}

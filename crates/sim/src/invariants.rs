//! The invariant checkers, fed by the simulator and the replay runner.
//!
//! Safety is checked incrementally, as decisions and votes happen:
//! * **agreement**: no two honest members accept different values for one key and view;
//! * **validity**: every decided value was proposed (by an honest member's `propose`, or put into
//!   a message by a Byzantine member) and the validation hook accepts it;
//! * **integrity**: an honest member decides at most once per key and view;
//! * **no double vote**: an honest member never signs two values for one (key, view, kind, round),
//!   across crashes and restarts too;
//! * **Byzantine certificate**: the Byzantine members cannot assemble COMMIT quorums for two
//!   different values of one view from the honest COMMIT votes that exist plus their own (they can
//!   sign any COMMIT). This is stronger than agreement among the decisions that happened to be
//!   made, and is exactly what the literal Algorithm 1 counterexample violates.
//!
//! Liveness is checked at the end of a run (see [`Checker::liveness_gaps`]).

use crate::keys::ForbiddenPrefixHook;
use beaufort_core::register::KeyUpdate;
use beaufort_core::replica::{Decision, Replica};
use beaufort_core::state::RegisterState;
use beaufort_core::types::{Key, MemberIndex, Round, Value, ValueHash, View};
use beaufort_core::vote::VoteKind;
use beaufort_core::wire::SyncMessage;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Which property was broken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ViolationKind {
    /// Two honest members accepted different values for one key and view.
    Agreement,
    /// A decided value was never proposed, or the hook rejects it.
    Validity,
    /// An honest member decided twice for one key and view.
    Integrity,
    /// An honest member signed two values in one (key, view, kind, round).
    DoubleVote,
    /// The Byzantine members could complete certificates for two values of one view.
    ByzantineCertificate,
    /// Something an honest member proposed or voted on was not decided in time, or the running
    /// honest members ended with different states.
    Liveness,
}

impl fmt::Display for ViolationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            ViolationKind::Agreement => "agreement",
            ViolationKind::Validity => "validity",
            ViolationKind::Integrity => "integrity",
            ViolationKind::DoubleVote => "double vote",
            ViolationKind::ByzantineCertificate => {
                "agreement (a Byzantine member can make honest members accept different values)"
            }
            ViolationKind::Liveness => "liveness",
        };
        f.write_str(name)
    }
}

/// One broken invariant, with what happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Which invariant.
    pub kind: ViolationKind,
    /// Virtual time (µs) or replay step at which it was found.
    pub at: u64,
    /// What happened, for a human.
    pub description: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] at {}: {}", self.kind, self.at, self.description)
    }
}

/// One decision by an honest member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HonestDecision {
    /// Who decided.
    pub member: MemberIndex,
    /// The key.
    pub key: Key,
    /// The view decided.
    pub view: View,
    /// The round of the certificate.
    pub round: Round,
    /// The value.
    pub value: Value,
    /// The member had proposed this value.
    pub mine: bool,
    /// When (virtual µs, or replay step).
    pub at: u64,
}

/// Collects decisions and honest votes and checks the invariants.
#[derive(Debug)]
pub struct Checker {
    quorum: usize,
    byzantine: BTreeSet<MemberIndex>,
    proposed: BTreeSet<ValueHash>,
    decided: BTreeMap<(Key, View), ValueHash>,
    decisions: Vec<HonestDecision>,
    decided_by: BTreeSet<(MemberIndex, Key, View)>,
    own_votes: BTreeMap<(MemberIndex, Key, View, VoteKind, Round), ValueHash>,
    commit_support: BTreeMap<(Key, View, Round, ValueHash), BTreeSet<MemberIndex>>,
    certifiable: BTreeMap<(Key, View), BTreeSet<ValueHash>>,
    /// Every (key, view) an honest member voted in or decided, with when that first happened.
    voted_instances: BTreeMap<(Key, View), u64>,
    /// When an honest member first decided each (key, view).
    first_decided: BTreeMap<(Key, View), u64>,
    violations: Vec<Violation>,
}

/// Cap on recorded violations per run; one is enough to fail, a few help to diagnose.
const MAX_VIOLATIONS: usize = 32;

impl Checker {
    /// A checker for `members` members of which `byzantine` are Byzantine.
    pub fn new(members: usize, byzantine: BTreeSet<MemberIndex>) -> Checker {
        let f = members.saturating_sub(1) / 3;
        Checker {
            quorum: members - f,
            byzantine,
            proposed: BTreeSet::new(),
            decided: BTreeMap::new(),
            decisions: Vec::new(),
            decided_by: BTreeSet::new(),
            own_votes: BTreeMap::new(),
            commit_support: BTreeMap::new(),
            certifiable: BTreeMap::new(),
            voted_instances: BTreeMap::new(),
            first_decided: BTreeMap::new(),
            violations: Vec::new(),
        }
    }

    /// Whether `member` is Byzantine.
    pub fn is_byzantine(&self, member: MemberIndex) -> bool {
        self.byzantine.contains(&member)
    }

    /// Every violation found so far.
    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }

    /// Every honest decision, in the order they happened.
    pub fn decisions(&self) -> &[HonestDecision] {
        &self.decisions
    }

    /// Number of decided (key, view) instances, each counted once.
    pub fn decided_instances(&self) -> usize {
        self.decided.len()
    }

    /// Every own vote an honest member was seen to hold: (member, key, view, kind, round) → value.
    pub fn own_votes(&self) -> &BTreeMap<(MemberIndex, Key, View, VoteKind, Round), ValueHash> {
        &self.own_votes
    }

    fn report(&mut self, kind: ViolationKind, at: u64, description: String) {
        if self.violations.len() < MAX_VIOLATIONS {
            self.violations.push(Violation {
                kind,
                at,
                description,
            });
        }
    }

    /// A value was proposed (by anyone): it may validly be decided.
    pub fn note_proposal(&mut self, value: &Value) {
        self.proposed.insert(value.hash());
    }

    /// A Byzantine member sent this message: every value body in it counts as proposed by it.
    pub fn note_byzantine_message(&mut self, message: &SyncMessage) {
        if let SyncMessage::Updates { updates, .. } = message {
            for KeyUpdate {
                values, accepted, ..
            } in updates
            {
                for value in values {
                    self.proposed.insert(value.hash());
                }
                if let Some(cert) = accepted {
                    self.proposed.insert(cert.value_hash());
                }
            }
        }
    }

    /// Records the own votes an honest member holds in `state` (called after every step for
    /// every key the step persisted) and checks it never signed two values in one slot.
    pub fn note_state(&mut self, member: MemberIndex, key: &Key, state: &RegisterState, at: u64) {
        if self.is_byzantine(member) {
            return;
        }
        for kind in [VoteKind::PreCommit, VoteKind::Commit] {
            for (&round, ballots) in state.ballots(kind) {
                let Some(ballot) = ballots.get(&member) else {
                    continue;
                };
                let values: Vec<ValueHash> = ballot.values().collect();
                if ballot.is_proof() {
                    self.report(
                        ViolationKind::DoubleVote,
                        at,
                        format!(
                            "honest member {member} holds an equivocation proof against itself \
                             for key {key} view {} {kind:?} round {round}",
                            state.view
                        ),
                    );
                }
                for value in values {
                    self.note_vote(member, key, state.view, kind, round, value, at);
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn note_vote(
        &mut self,
        member: MemberIndex,
        key: &Key,
        view: View,
        kind: VoteKind,
        round: Round,
        value: ValueHash,
        at: u64,
    ) {
        self.voted_instances
            .entry((key.clone(), view))
            .or_insert(at);
        let slot = (member, key.clone(), view, kind, round);
        match self.own_votes.get(&slot) {
            Some(&earlier) if earlier != value => {
                self.report(
                    ViolationKind::DoubleVote,
                    at,
                    format!(
                        "honest member {member} signed two values for key {key} view {view} \
                         {kind:?} round {round}: {earlier:?} and {value:?}"
                    ),
                );
                return;
            }
            Some(_) => return,
            None => {
                self.own_votes.insert(slot, value);
            }
        }
        if kind == VoteKind::Commit {
            let support = self
                .commit_support
                .entry((key.clone(), view, round, value))
                .or_default();
            support.insert(member);
            if support.len() + self.byzantine.len() >= self.quorum {
                self.certifiable_value(key, view, value, at);
            }
        }
    }

    fn certifiable_value(&mut self, key: &Key, view: View, value: ValueHash, at: u64) {
        let values = self.certifiable.entry((key.clone(), view)).or_default();
        if values.insert(value) && values.len() == 2 {
            let listed: Vec<ValueHash> = values.iter().copied().collect();
            self.report(
                ViolationKind::ByzantineCertificate,
                at,
                format!(
                    "key {key} view {view}: honest COMMIT votes plus the {} Byzantine member(s) \
                     reach the quorum {} for two values {:?} and {:?}",
                    self.byzantine.len(),
                    self.quorum,
                    listed[0],
                    listed[1]
                ),
            );
        }
    }

    /// An honest member decided.
    pub fn note_decision(&mut self, member: MemberIndex, decision: &Decision, at: u64) {
        if self.is_byzantine(member) {
            return;
        }
        let cert = &decision.certified;
        let key = &decision.key;
        let hash = cert.value.hash();
        self.voted_instances
            .entry((key.clone(), cert.view))
            .or_insert(at);
        self.first_decided
            .entry((key.clone(), cert.view))
            .or_insert(at);
        self.decisions.push(HonestDecision {
            member,
            key: key.clone(),
            view: cert.view,
            round: cert.round,
            value: cert.value.clone(),
            mine: decision.mine,
            at,
        });
        if !self.decided_by.insert((member, key.clone(), cert.view)) {
            self.report(
                ViolationKind::Integrity,
                at,
                format!(
                    "member {member} decided key {key} view {} a second time ({:?})",
                    cert.view, cert.value
                ),
            );
        }
        match self.decided.get(&(key.clone(), cert.view)) {
            Some(&other) if other != hash => self.report(
                ViolationKind::Agreement,
                at,
                format!(
                    "member {member} accepted {:?} for key {key} view {}, another honest member \
                     accepted {other:?}",
                    cert.value, cert.view
                ),
            ),
            Some(_) => {}
            None => {
                self.decided.insert((key.clone(), cert.view), hash);
            }
        }
        if !self.proposed.contains(&hash) {
            self.report(
                ViolationKind::Validity,
                at,
                format!(
                    "member {member} decided {:?} for key {key} view {}, which nobody proposed",
                    cert.value, cert.view
                ),
            );
        }
        if !ForbiddenPrefixHook::allows(&cert.value) {
            self.report(
                ViolationKind::Validity,
                at,
                format!(
                    "member {member} decided {:?} for key {key} view {}, which the hook rejects",
                    cert.value, cert.view
                ),
            );
        }
        self.certifiable_value(key, cert.view, hash, at);
    }

    /// The keys with a liveness gap among the instances that began by `began_by`
    /// ([`Checker::gaps_begun_by`]): once the network is healed and the run has had its
    /// liveness bound, each is a key a Byzantine member froze.
    pub fn stalled_keys(
        &self,
        running: &[(MemberIndex, &Replica)],
        began_by: u64,
    ) -> BTreeSet<Key> {
        self.gaps(running, began_by)
            .into_iter()
            .map(|(key, _)| key)
            .collect()
    }

    /// What keeps the run from being settled: every (key, view) in which an honest member voted
    /// must be decided by every running honest member (its open view is past it), and all running
    /// honest members must hold the same view and certified value for every key. Empty when the
    /// run is settled.
    pub fn liveness_gaps(&self, running: &[(MemberIndex, &Replica)]) -> Vec<String> {
        self.gaps_begun_by(running, u64::MAX)
    }

    /// [`Checker::liveness_gaps`] over the instances an honest member first voted in by
    /// `began_by`, leaving out those whose first honest decision came after it (that decision
    /// is still spreading), and over the keys with no instance left out: what a run that never
    /// goes quiet (a Byzantine member proposing on its own keys for as long as it runs) must
    /// still have settled. Such a run has an instance in flight at every moment, so the strict
    /// form fails it at whichever moment the bound ends, however promptly every instance is
    /// decided.
    pub fn gaps_begun_by(&self, running: &[(MemberIndex, &Replica)], began_by: u64) -> Vec<String> {
        self.gaps(running, began_by)
            .into_iter()
            .map(|(_, gap)| gap)
            .collect()
    }

    /// Each liveness gap with the key it is on.
    fn gaps(&self, running: &[(MemberIndex, &Replica)], began_by: u64) -> Vec<(Key, String)> {
        let mut gaps = Vec::new();
        let mut in_flight: BTreeSet<&Key> = BTreeSet::new();
        for ((key, view), &began) in &self.voted_instances {
            let decided_late = self
                .first_decided
                .get(&(key.clone(), *view))
                .is_some_and(|&first| first > began_by);
            if began > began_by || decided_late {
                in_flight.insert(key);
                continue;
            }
            for (member, replica) in running {
                let open = replica.state(key).map_or(0, |s| s.view);
                if open <= *view {
                    gaps.push((
                        key.clone(),
                        format!(
                            "member {member} has not decided key {key} view {view} (open view {open})"
                        ),
                    ));
                }
            }
        }
        let keys: BTreeSet<&Key> = running
            .iter()
            .flat_map(|(_, r)| r.states().map(|(k, _)| k))
            .collect();
        for key in keys.into_iter().filter(|key| !in_flight.contains(key)) {
            let summary = |r: &Replica| {
                r.state(key)
                    .map(|s| (s.view, s.current_value().map(Value::hash)))
            };
            if let Some((first, rest)) = running.split_first() {
                let expected = summary(first.1);
                for (member, replica) in rest {
                    let got = summary(replica);
                    if got != expected {
                        gaps.push((
                            key.clone(),
                            format!(
                                "key {key}: member {} holds {expected:?}, member {member} holds {got:?}",
                                first.0
                            ),
                        ));
                    }
                }
            }
        }
        gaps
    }

    /// Records liveness gaps (from [`Checker::liveness_gaps`]) as violations, at the end of a run
    /// that did not settle.
    pub fn report_liveness(&mut self, gaps: Vec<String>, at: u64) {
        for gap in gaps.into_iter().take(8) {
            self.report(ViolationKind::Liveness, at, gap);
        }
    }
}

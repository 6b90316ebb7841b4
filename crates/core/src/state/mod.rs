//! A register's replicated state (the CRDT) and the monotone rules that say which states are valid.
//!
//! Within a view the state is a grow-only set of signed votes, one slot per (kind, round, member);
//! a slot that receives two different values becomes an equivocation proof. A state with a higher
//! view and a valid certificate replaces an older one. Every validity rule here is *monotone*: a
//! state that satisfies it keeps satisfying it when more signed votes are added. That is what lets
//! honest members merge in any order without ever holding a state they would later have to reject.

use crate::types::{MemberIndex, Round, Value, ValueHash, View, MAX_ROUND, RETAINED_ROUNDS};
use crate::vote::{SignedVote, VoteKind, VoteSubject};
use beaufort_crypto::aggregate::Aggregate;
use beaufort_crypto::bls::Signature;
use beaufort_crypto::hash::{hash, Digest, Domain};
use beaufort_crypto::qc::QuorumCertificate;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Most proposal bodies a state may hold: one per single PRE-COMMIT vote in its retained rounds
/// (a body is kept only while such a vote names it, so a Byzantine member's bodies are bounded by
/// its own slots and can never crowd out an honest member's).
pub fn max_values(members: usize) -> usize {
    members * RETAINED_ROUNDS
}

/// Most vote slots a state may hold: both kinds, every member, every retained round.
pub fn max_votes(members: usize) -> usize {
    2 * members * RETAINED_ROUNDS
}

/// A value together with the certificate that decided it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Certified {
    /// The view that decided the value.
    pub view: View,
    /// The round whose COMMIT votes form the certificate.
    pub round: Round,
    /// The decided value.
    pub value: Value,
    /// A quorum of COMMIT signatures on (view, round, value), aggregated.
    pub qc: QuorumCertificate,
}

impl Certified {
    /// What the certificate's signers signed.
    pub fn subject(&self) -> VoteSubject {
        VoteSubject {
            view: self.view,
            round: self.round,
            kind: VoteKind::Commit,
            value: self.value.hash(),
        }
    }
}

/// One member's slot for one (kind, round) of a view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ballot {
    /// A single signed vote.
    Vote {
        /// The value voted for.
        value: ValueHash,
        /// The member's signature share.
        signature: Signature,
    },
    /// The member signed two different values here; both signatures were checked. This is the
    /// equivocation proof, kept and gossiped inside the state itself.
    Equivocated {
        /// The lower of the two value hashes, with its signature.
        first: (ValueHash, Signature),
        /// The higher one.
        second: (ValueHash, Signature),
    },
    /// The member voted for `value`, and its signature is inside a held [`Piece`] of the slot's
    /// (kind, round, value) rather than held alone. Counts everywhere a single vote does; only a
    /// certificate and deferred verification look past it, to the piece (docs/AGGREGATION.md
    /// §3.2).
    Covered {
        /// The value voted for.
        value: ValueHash,
    },
    /// The member signed two different values here, and at least one of the two signatures is
    /// only inside a piece: the proof is the two held pieces (a single vote counts as a piece of
    /// one) of this slot's (kind, round) that contain the member, for `first` and `second`,
    /// both verified before the slot took this form. Counts like [`Ballot::Equivocated`].
    Conflicted {
        /// The lower of the two value hashes.
        first: ValueHash,
        /// The higher one.
        second: ValueHash,
    },
}

impl Ballot {
    /// The values this slot supports (one, or two for an equivocation).
    pub fn values(&self) -> impl Iterator<Item = ValueHash> {
        let (a, b) = match *self {
            Ballot::Vote { value, .. } | Ballot::Covered { value } => (value, None),
            Ballot::Equivocated { first, second } => (first.0, Some(second.0)),
            Ballot::Conflicted { first, second } => (first, Some(second)),
        };
        std::iter::once(a).chain(b)
    }

    /// Whether the slot counts towards `value`: a single vote for it, or an equivocation proof
    /// (a wildcard; see [`RegisterState::supporters`]).
    pub fn supports(&self, value: ValueHash) -> bool {
        match *self {
            Ballot::Vote { value: v, .. } | Ballot::Covered { value: v } => v == value,
            Ballot::Equivocated { .. } | Ballot::Conflicted { .. } => true,
        }
    }

    /// The signature this slot carries for `value`, if it supports it.
    pub fn signature_for(&self, value: ValueHash) -> Option<Signature> {
        match *self {
            Ballot::Vote {
                value: v,
                signature,
            } => (v == value).then_some(signature),
            Ballot::Equivocated { first, second } => [first, second]
                .into_iter()
                .find(|(v, _)| *v == value)
                .map(|(_, s)| s),
            Ballot::Covered { .. } | Ballot::Conflicted { .. } => None,
        }
    }

    /// Whether the slot proves its member equivocated (two values, both signatures checked).
    pub fn is_proof(&self) -> bool {
        matches!(self, Ballot::Equivocated { .. } | Ballot::Conflicted { .. })
    }

    /// Whether the slot travels inside pieces rather than on its own: its signatures are not
    /// all held alone.
    pub fn travels_in_pieces(&self) -> bool {
        matches!(self, Ballot::Covered { .. } | Ballot::Conflicted { .. })
    }

    /// The single value of an honest-looking slot.
    pub fn vote_value(&self) -> Option<ValueHash> {
        match *self {
            Ballot::Vote { value, .. } | Ballot::Covered { value } => Some(value),
            Ballot::Equivocated { .. } | Ballot::Conflicted { .. } => None,
        }
    }
}

/// Votes of one (kind, round, value) group summed into one aggregate: how votes travel and are
/// held when they are combined in the network instead of relayed one by one
/// (docs/AGGREGATION.md). A register keeps a piece only while it covers a slot that no single
/// vote fills, so its pieces never outnumber its slots.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Piece {
    /// PRE-COMMIT or COMMIT.
    pub kind: VoteKind,
    /// The round.
    pub round: Round,
    /// The value every share in it supports.
    pub value: ValueHash,
    /// The signers, with multiplicities, and the sum of their shares.
    pub aggregate: Aggregate,
}

impl Piece {
    /// Whether the piece belongs to the group of (kind, round, value).
    pub fn is_of(&self, kind: VoteKind, round: Round, value: ValueHash) -> bool {
        self.kind == kind && self.round == round && self.value == value
    }
}

mod round;

pub use round::RoundBallots;

/// A register's replicated state: the certified value and the votes of the open view.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterState {
    /// The open view (the one being decided now).
    pub view: View,
    /// The value decided in view `view - 1`; `None` exactly when `view == 0`.
    pub accepted: Option<Certified>,
    /// Bodies of the values proposed in this view, each accepted by the validation hook. A body
    /// is held exactly while a single PRE-COMMIT vote in the state names it (at most
    /// [`max_values`]); see [`RegisterState::prune`].
    pub values: BTreeMap<ValueHash, Value>,
    /// PRE-COMMIT votes by round.
    pub precommits: BTreeMap<Round, RoundBallots>,
    /// COMMIT votes by round.
    pub commits: BTreeMap<Round, RoundBallots>,
    /// The pieces that hold the signatures of [`Ballot::Covered`] slots, in arrival order.
    pub pieces: Vec<Piece>,
}

impl RegisterState {
    /// The currently certified value (`None` before the first decision).
    pub fn current_value(&self) -> Option<&Value> {
        self.accepted.as_ref().map(|c| &c.value)
    }

    /// The ballots of one kind.
    pub fn ballots(&self, kind: VoteKind) -> &BTreeMap<Round, RoundBallots> {
        match kind {
            VoteKind::PreCommit => &self.precommits,
            VoteKind::Commit => &self.commits,
        }
    }

    /// Mutable ballots of one kind.
    pub fn ballots_mut(&mut self, kind: VoteKind) -> &mut BTreeMap<Round, RoundBallots> {
        match kind {
            VoteKind::PreCommit => &mut self.precommits,
            VoteKind::Commit => &mut self.commits,
        }
    }

    /// The slot of `member` for (kind, round).
    pub fn ballot(&self, kind: VoteKind, round: Round, member: MemberIndex) -> Option<&Ballot> {
        self.ballots(kind).get(&round)?.get(&member)
    }

    /// Fills (or overwrites) one slot.
    pub fn put(&mut self, kind: VoteKind, round: Round, member: MemberIndex, ballot: Ballot) {
        self.ballots_mut(kind)
            .entry(round)
            .or_default()
            .insert(member, ballot);
    }

    /// Empties one slot, dropping the round's entry when it becomes empty.
    pub fn remove(&mut self, kind: VoteKind, round: Round, member: MemberIndex) {
        let ballots = self.ballots_mut(kind);
        if let Some(slots) = ballots.get_mut(&round) {
            slots.remove(&member);
            if slots.is_empty() {
                ballots.remove(&round);
            }
        }
    }

    /// Number of vote slots (for bounds and metrics).
    pub fn vote_count(&self) -> usize {
        self.precommits.values().map(|r| r.len()).sum::<usize>()
            + self.commits.values().map(|r| r.len()).sum::<usize>()
    }

    /// The held pieces of one (kind, round, value) group.
    pub fn pieces_of(
        &self,
        kind: VoteKind,
        round: Round,
        value: ValueHash,
    ) -> impl Iterator<Item = &Piece> {
        self.pieces
            .iter()
            .filter(move |piece| piece.is_of(kind, round, value))
    }

    /// Whether some held piece of the slot's group contains `member`.
    pub fn is_covered(
        &self,
        kind: VoteKind,
        round: Round,
        member: MemberIndex,
        value: ValueHash,
    ) -> bool {
        self.pieces_of(kind, round, value)
            .any(|piece| piece.aggregate.weights.contains(member))
    }

    /// Keeps the pieces that cover a [`Ballot::Covered`] slot, then empties the covered slots no
    /// piece covers any more (after pieces were dropped as invalid): a slot never claims a vote
    /// whose signature the state cannot produce. Returns whether anything was dropped.
    pub fn tidy_pieces(&mut self) -> bool {
        let before = (self.pieces.len(), self.vote_count());
        let covered = |state: &RegisterState, piece: &Piece| {
            piece.aggregate.weights.members().any(|(member, _)| {
                match state.ballot(piece.kind, piece.round, member) {
                    Some(&Ballot::Covered { value }) => value == piece.value,
                    Some(&Ballot::Conflicted { first, second }) => {
                        piece.value == first || piece.value == second
                    }
                    _ => false,
                }
            })
        };
        let keep: Vec<bool> = self.pieces.iter().map(|p| covered(self, p)).collect();
        let mut flags = keep.into_iter();
        self.pieces.retain(|_| flags.next().unwrap_or(false));
        // Which members the kept pieces cover, per group: one pass over the pieces instead of
        // one per covered slot (a prune runs at every merge, and a group holds n slots).
        let mut covers: Vec<((VoteKind, Round, ValueHash), Vec<bool>)> = Vec::new();
        for piece in &self.pieces {
            let group = (piece.kind, piece.round, piece.value);
            let index = match covers.iter().position(|(g, _)| *g == group) {
                Some(index) => index,
                None => {
                    covers.push((group, vec![false; piece.aggregate.weights.n()]));
                    covers.len() - 1
                }
            };
            let members = &mut covers[index].1;
            for (member, _) in piece.aggregate.weights.members() {
                if let Some(slot) = members.get_mut(usize::from(member)) {
                    *slot = true;
                }
            }
        }
        let mut orphans = Vec::new();
        for kind in [VoteKind::PreCommit, VoteKind::Commit] {
            for (&round, ballots) in self.ballots(kind) {
                for (member, ballot) in ballots {
                    if let Ballot::Covered { value } = *ballot {
                        let covered = covers
                            .iter()
                            .find(|(group, _)| *group == (kind, round, value))
                            .is_some_and(|(_, members)| {
                                members.get(usize::from(member)).copied().unwrap_or(false)
                            });
                        if !covered {
                            orphans.push((kind, round, member));
                        }
                    }
                }
            }
        }
        for (kind, round, member) in orphans {
            self.remove(kind, round, member);
        }
        before != (self.pieces.len(), self.vote_count())
    }

    /// Every single (non-equivocated) vote, as signed votes.
    pub fn signed_votes(&self) -> Vec<SignedVote> {
        let mut out = Vec::new();
        for kind in [VoteKind::PreCommit, VoteKind::Commit] {
            for (&round, ballots) in self.ballots(kind) {
                for (member, ballot) in ballots {
                    if let Ballot::Vote { value, signature } = *ballot {
                        out.push(SignedVote {
                            member,
                            subject: VoteSubject {
                                view: self.view,
                                round,
                                kind,
                                value,
                            },
                            signature,
                        });
                    }
                }
            }
        }
        out
    }

    /// The highest round holding a PRE-COMMIT vote.
    pub fn top_round(&self) -> Option<Round> {
        self.precommits
            .iter()
            .rev()
            .find(|(_, b)| !b.is_empty())
            .map(|(r, _)| *r)
    }

    /// Distinct signers of PRE-COMMIT votes in `round`, equivocators included.
    pub fn signers(&self, round: Round) -> usize {
        self.precommits.get(&round).map_or(0, |b| b.len())
    }

    /// Distinct values with a PRE-COMMIT vote in `round`, equivocators' both values included.
    pub fn round_values(&self, round: Round) -> BTreeSet<ValueHash> {
        self.precommits
            .get(&round)
            .map(|b| b.values().flat_map(|ballot| ballot.values()).collect())
            .unwrap_or_default()
    }

    /// Members whose slot in (kind, round) supports `value`. A proven equivocator's slot supports
    /// *every* value: different members may hold different pairs of its votes, and counting it
    /// as a wildcard keeps every quorum monotone — a quorum someone saw stays a quorum for everyone,
    /// whichever of the equivocator's votes they hold. That is safe because any `quorum` slots
    /// still include at least f + 1 members with a single vote, at least one of them honest.
    pub fn supporters(&self, kind: VoteKind, round: Round, value: ValueHash) -> Vec<MemberIndex> {
        self.ballots(kind)
            .get(&round)
            .map(|b| {
                b.iter()
                    .filter(|(_, ballot)| ballot.supports(value))
                    .map(|(m, _)| m)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// How many [`RegisterState::supporters`] `value` has, without collecting them: quorum
    /// checks run on every merge and vote, so they must not allocate.
    pub fn support_count(&self, kind: VoteKind, round: Round, value: ValueHash) -> usize {
        self.ballots(kind).get(&round).map_or(0, |b| {
            b.values().filter(|ballot| ballot.supports(value)).count()
        })
    }

    /// The value with a quorum of PRE-COMMIT supporters in `round` (at most one can have it: two
    /// quorums overlap in at least one honest member, who votes once per round). Only values with
    /// a single vote can reach a quorum, since a quorum holds at least one honest vote.
    pub fn quorum_value(&self, round: Round, quorum: usize) -> Option<ValueHash> {
        let ballots = self.precommits.get(&round)?;
        if ballots.len() < quorum {
            return None;
        }
        // Checking each distinct value once, in hash order, keeps the answer independent of
        // slot order; a round rarely holds more than a couple of values.
        let mut tried: Vec<ValueHash> = Vec::new();
        let mut found = None;
        for value in ballots.values().filter_map(|ballot| ballot.vote_value()) {
            if tried.contains(&value) {
                continue;
            }
            tried.push(value);
            if self.support_count(VoteKind::PreCommit, round, value) >= quorum
                && found.is_none_or(|best| value < best)
            {
                found = Some(value);
            }
        }
        found
    }

    /// Whether round `round` is *split*: at least `quorum` signers who between them support at
    /// least two values (an equivocation proof supports two by itself). A split round is what
    /// lets the round after it exist.
    pub fn splits(&self, round: Round, quorum: usize) -> bool {
        let Some(ballots) = self.precommits.get(&round) else {
            return false;
        };
        if ballots.len() < quorum {
            return false;
        }
        let equivocated = ballots.values().any(|ballot| ballot.is_proof());
        equivocated || self.round_values(round).len() >= 2
    }

    /// The highest round that may hold votes: one above the highest split round (round 0 when
    /// nothing split). Never above [`MAX_ROUND`].
    pub fn open_round(&self, quorum: usize) -> Round {
        self.precommits
            .keys()
            .rev()
            .find(|&&round| self.splits(round, quorum))
            .map_or(0, |&round| round.saturating_add(1).min(MAX_ROUND))
    }

    /// Monotone rule: round `round` may hold votes. Round 0 always may; round r > 0 may once some
    /// round at or above r − 1 is split. Not "round r − 1 is split": a state keeps only
    /// [`RETAINED_ROUNDS`] rounds, and a split round r′ − 1 ≥ r − 1 proves that honest members
    /// (at least one is among any `quorum` signers) reached round r′ − 1 and so passed every
    /// round below it. Not "no value has a quorum" either: that would stop holding when a late
    /// vote completes a quorum, and an honest member would be left holding a state it must reject.
    pub fn round_exists(&self, round: Round, quorum: usize) -> bool {
        round <= self.open_round(quorum)
    }

    /// The highest round whose PRE-COMMITs hold a quorum for some value.
    pub fn quorum_round(&self, quorum: usize) -> Option<Round> {
        self.precommits
            .keys()
            .rev()
            .find(|&&round| self.quorum_value(round, quorum).is_some())
            .copied()
    }

    /// The values named by a single PRE-COMMIT vote: the bodies the state needs.
    pub fn named_values(&self) -> BTreeSet<ValueHash> {
        self.precommits
            .values()
            .flat_map(|ballots| ballots.values().filter_map(Ballot::vote_value))
            .collect()
    }

    /// Forgets the rounds nobody needs any more and the bodies no vote names, so a view that a
    /// Byzantine member drives through many rounds costs bounded memory ([`RETAINED_ROUNDS`]).
    /// Kept: round 0 (the proposals and the round-0 winner), the highest quorum round (every
    /// lock is at or below it, and the next honest vote follows it), the top round and the one
    /// below it (which proves the top exists), `me`'s own latest PRE-COMMIT round and the one
    /// below it, and its latest COMMIT round (so a member never forgets a round it voted in while
    /// it could still be asked to vote there, nor what justified that vote). A forgotten round only ever held votes below every round an honest member can
    /// still vote in. Returns whether anything was dropped.
    pub fn prune(&mut self, quorum: usize, me: MemberIndex) -> bool {
        let mut keep: BTreeSet<Round> = BTreeSet::from([0]);
        if let Some(top) = self.top_round() {
            keep.insert(top);
            keep.insert(top.saturating_sub(1));
        }
        keep.extend(self.quorum_round(quorum));
        let own_latest = |ballots: &BTreeMap<Round, RoundBallots>| {
            ballots
                .iter()
                .rev()
                .find(|(_, b)| b.contains_key(&me))
                .map(|(r, _)| *r)
        };
        let own_precommit = own_latest(&self.precommits);
        keep.extend(own_precommit);
        // And the round below our own latest PRE-COMMIT: with it, whatever showed that round to
        // exist when we voted there (a split in it or in the round below, both checked before we
        // voted) stays, so our own state keeps justifying our vote after unchecked votes in
        // higher rounds (the top that made us forget it) turn out invalid and are dropped.
        keep.extend(own_precommit.map(|round| round.saturating_sub(1)));
        keep.extend(own_latest(&self.commits));
        let before = (self.vote_count(), self.values.len(), self.pieces.len());
        self.precommits.retain(|round, _| keep.contains(round));
        self.commits.retain(|round, _| keep.contains(round));
        self.pieces.retain(|piece| keep.contains(&piece.round));
        self.tidy_pieces();
        let named = self.named_values();
        self.values.retain(|hash, _| named.contains(hash));
        before != (self.vote_count(), self.values.len(), self.pieces.len())
    }

    /// Monotone rule: a PRE-COMMIT in `round` for `value` is justified if the round exists and the
    /// value is one of this view's proposals (its body is held and the hook accepted it). The
    /// honest choice (a quorum's value, a lock, or the round-0 winner) is always one, and "the
    /// winner" itself cannot be checked by others, who may see a different part of round 0.
    pub fn precommit_justified(&self, round: Round, value: ValueHash, quorum: usize) -> bool {
        self.round_exists(round, quorum) && self.values.contains_key(&value)
    }

    /// Monotone rule: a COMMIT for `value` in `round` needs a quorum of PRE-COMMIT supporters for
    /// it in that round.
    pub fn commit_justified(&self, round: Round, value: ValueHash, quorum: usize) -> bool {
        self.support_count(VoteKind::PreCommit, round, value) >= quorum
    }

    /// Whether one slot's content is justified by the rest of the state. An equivocation proof
    /// is evidence by itself and needs no justification beyond its round existing.
    pub fn ballot_justified(
        &self,
        kind: VoteKind,
        round: Round,
        ballot: &Ballot,
        q: usize,
    ) -> bool {
        match (kind, ballot) {
            (VoteKind::PreCommit, Ballot::Equivocated { .. } | Ballot::Conflicted { .. }) => {
                self.round_exists(round, q)
            }
            (VoteKind::Commit, Ballot::Equivocated { .. } | Ballot::Conflicted { .. }) => true,
            (VoteKind::PreCommit, Ballot::Vote { value, .. } | Ballot::Covered { value }) => {
                self.precommit_justified(round, *value, q)
            }
            (VoteKind::Commit, Ballot::Vote { value, .. } | Ballot::Covered { value }) => {
                self.commit_justified(round, *value, q)
            }
        }
    }

    /// The digest stored in the Merkle index: the view, the certified value, and every vote
    /// slot's content without signature bytes. Two replicas with the same votes compare equal
    /// even if they hold different (equally valid) certificates for the same decision: other
    /// signers, or another round (under contention one value can gather a COMMIT quorum in two
    /// rounds of a view), so anti-entropy does not trade whole states over them again and again.
    pub fn digest(&self) -> Digest {
        let mut buf: Vec<u8> = Vec::with_capacity(64 + self.vote_count() * 40);
        self.decided_part(&mut buf);
        for (tag, kind) in [(1u8, VoteKind::PreCommit), (2u8, VoteKind::Commit)] {
            for (round, ballots) in self.ballots(kind) {
                for (member, ballot) in ballots {
                    buf.push(tag);
                    buf.extend_from_slice(&round.to_le_bytes());
                    buf.extend_from_slice(&member.to_le_bytes());
                    // Members may hold different pairs of an equivocator's votes; the proof is
                    // what matters, so all proofs for a slot digest alike.
                    match ballot.vote_value() {
                        Some(value) => buf.extend_from_slice(value.0.as_bytes()),
                        None => buf.push(0xEE),
                    }
                }
            }
        }
        hash(Domain::RegisterState, &[&buf])
    }

    fn decided_part(&self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(&self.view.to_le_bytes());
        if let Some(c) = &self.accepted {
            buf.push(1);
            buf.extend_from_slice(&c.view.to_le_bytes());
            buf.extend_from_slice(c.value.hash().0.as_bytes());
        } else {
            buf.push(0);
        }
    }
}

/// What a Merkle leaf holds while the eager push is still syncing a key: the view the key was in
/// when it started changing, and nothing else. Members in one view agree on the certificate that
/// opened it, and a decision made during the window is not shown until the window ends, so
/// members a moment apart in one decision compare equal instead of descending to the key.
/// Tagged apart from [`RegisterState::digest`], so the two never compare equal.
pub fn syncing_digest(view: View) -> Digest {
    let mut buf: Vec<u8> = Vec::with_capacity(16);
    buf.extend_from_slice(&view.to_le_bytes());
    buf.push(0xD0);
    hash(Domain::RegisterState, &[&buf])
}

#[cfg(test)]
mod tests {
    use super::*;
    use beaufort_crypto::weights::SignerWeights;

    fn decided(round: Round, signature: u8) -> RegisterState {
        let value = Value::data("x").expect("small value");
        RegisterState {
            view: 1,
            accepted: Some(Certified {
                view: 0,
                round,
                value,
                qc: QuorumCertificate {
                    signers: SignerWeights::new(4).expect("4 members"),
                    signature: Signature::from_bytes(&[signature; 48]).expect("48 bytes"),
                },
            }),
            ..RegisterState::default()
        }
    }

    #[test]
    fn certificates_of_one_decision_digest_alike_whatever_their_round_or_signers() {
        assert_eq!(decided(0, 1).digest(), decided(1, 2).digest());
        let mut other = decided(0, 1);
        if let Some(cert) = other.accepted.as_mut() {
            cert.value = Value::data("y").expect("small value");
        }
        assert_ne!(decided(0, 1).digest(), other.digest());
    }
}

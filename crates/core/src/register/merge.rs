//! Merging a peer's state into a register: bounds, the slot lattice, bodies charged to the votes
//! that name them, evidence, justification, and the journal that undoes a merge that fails
//! half-way (docs/PROTOCOL.md §2, §4, §7).

use super::{
    max_parked, Context, InvalidState, KeyUpdate, MergeOutcome, Register, SlotId,
    UpdateCertificate, WireBallot,
};
use crate::auth::SignatureCheck;
use crate::hook::HookError;
use crate::state::{Ballot, RegisterState};
use crate::types::{MemberIndex, Round, Value, ValueHash, MAX_ROUND};
use crate::vote::{Equivocation, SignedVote, VoteKind, VoteSubject};
use beaufort_crypto::bls::Signature;
use std::collections::{BTreeMap, BTreeSet};

/// The changes one merge made, so a merge that fails half-way leaves no trace.
#[derive(Default)]
struct Journal {
    undo: Vec<Undo>,
}

enum Undo {
    Slot(SlotId, Option<Ballot>),
    Value(ValueHash),
}

impl Journal {
    fn put(
        &mut self,
        state: &mut RegisterState,
        kind: VoteKind,
        round: Round,
        member: MemberIndex,
        ballot: Ballot,
    ) {
        let previous = state.ballot(kind, round, member).copied();
        self.undo.push(Undo::Slot((kind, round, member), previous));
        state.put(kind, round, member, ballot);
    }

    fn remove(
        &mut self,
        state: &mut RegisterState,
        kind: VoteKind,
        round: Round,
        member: MemberIndex,
    ) {
        let previous = state.ballot(kind, round, member).copied();
        if previous.is_some() {
            self.undo.push(Undo::Slot((kind, round, member), previous));
            state.remove(kind, round, member);
        }
    }

    /// Fills a slot from a peer's update and records it as freshly merged.
    fn accept(&mut self, state: &mut RegisterState, fresh: &mut Vec<WireBallot>, wire: WireBallot) {
        self.put(state, wire.kind, wire.round, wire.member, wire.ballot);
        fresh.push(wire);
    }

    fn insert_value(&mut self, state: &mut RegisterState, hash: ValueHash, value: Value) {
        if state.values.insert(hash, value).is_none() {
            self.undo.push(Undo::Value(hash));
        }
    }

    fn added_values(&self) -> impl Iterator<Item = ValueHash> + '_ {
        self.undo.iter().filter_map(|u| match u {
            Undo::Value(hash) => Some(*hash),
            Undo::Slot(..) => None,
        })
    }

    /// Undoes every change, newest first; slots touched lose their "verified" mark.
    fn rollback(self, state: &mut RegisterState, verified: &mut BTreeSet<SlotId>) {
        for undo in self.undo.into_iter().rev() {
            match undo {
                Undo::Slot((kind, round, member), previous) => {
                    verified.remove(&(kind, round, member));
                    match previous {
                        Some(ballot) => state.put(kind, round, member, ballot),
                        None => state.remove(kind, round, member),
                    }
                }
                Undo::Value(hash) => {
                    state.values.remove(&hash);
                }
            }
        }
    }
}

impl Register {
    /// Merges part or all of a peer's state. `sender_verified` says the sender checked every
    /// signature in the message itself, which makes invalid ones the sender's fault.
    pub fn merge(
        &mut self,
        ctx: &Context<'_>,
        update: KeyUpdate,
        sender_verified: bool,
    ) -> Result<MergeOutcome, InvalidState> {
        let mut outcome = MergeOutcome::default();
        if update.view < self.state.view {
            outcome.sender_behind = true;
            return Ok(outcome);
        }
        if update.view > self.state.view {
            let cert = match update.accepted.clone() {
                Some(UpdateCertificate::Whole(cert)) => cert,
                None if update.complete => {
                    return Err(InvalidState::Malformed("higher view without a certificate"));
                }
                Some(UpdateCertificate::Named { .. }) if update.complete => {
                    return Err(InvalidState::Malformed(
                        "a complete state names its certificate",
                    ));
                }
                // A delta that assumed we had already caught up (the whole state it followed was
                // lost or overtaken), or whose certificate names a body we lack: ask for the
                // whole state.
                _ => {
                    outcome.need_full_state = true;
                    return Ok(outcome);
                }
            };
            if cert.view.checked_add(1) != Some(update.view) {
                return Err(InvalidState::Malformed("certificate view does not match"));
            }
            let message = ctx.message(&cert.subject());
            if !ctx.verifier.verify_certificate(&cert.qc, &message) {
                return Err(InvalidState::InvalidCertificate(cert.view));
            }
            self.jump_to(cert.clone());
            outcome.learned = Some(cert);
            outcome.changed = true;
        }

        let mut journal = Journal::default();
        match self.merge_votes(ctx, update, sender_verified, &mut journal, &mut outcome) {
            Ok(fresh) => {
                let added: Vec<ValueHash> = journal.added_values().collect();
                let grew = !fresh.is_empty() || !added.is_empty();
                let unparked = if grew { self.unpark(ctx) } else { 0 };
                // Votes in rounds nobody needs any more are dropped now, not logged or pushed.
                self.state.prune(ctx.quorum(), ctx.me());
                let held = |w: &&WireBallot| {
                    self.state.ballot(w.kind, w.round, w.member).copied() == Some(w.ballot)
                };
                let kept: Vec<SlotId> = fresh
                    .iter()
                    .filter(held)
                    .map(|w| (w.kind, w.round, w.member))
                    .collect();
                let kept_values: Vec<ValueHash> = added
                    .into_iter()
                    .filter(|hash| self.state.values.contains_key(hash))
                    .collect();
                outcome.changed |= !kept.is_empty() || !kept_values.is_empty() || unparked > 0;
                self.log.extend(kept);
                self.value_log.extend(kept_values);
                self.compact_logs();
                Ok(outcome)
            }
            Err(error) => {
                journal.rollback(&mut self.state, &mut self.verified);
                Err(error)
            }
        }
    }

    /// The part of a merge that may fail half-way: every change goes through `journal`.
    fn merge_votes(
        &mut self,
        ctx: &Context<'_>,
        update: KeyUpdate,
        sender_verified: bool,
        journal: &mut Journal,
        outcome: &mut MergeOutcome,
    ) -> Result<Vec<WireBallot>, InvalidState> {
        let q = ctx.quorum();
        let n = ctx.verifier.members();
        // Bodies wait until the votes are merged: only a body that a single PRE-COMMIT names is
        // admitted (docs/PROTOCOL.md §4), so junk bodies cost a sender nothing and us nothing.
        let mut offered: BTreeMap<ValueHash, Value> = BTreeMap::new();
        for value in update.values {
            value
                .validate()
                .map_err(|_| InvalidState::Malformed("value too large"))?;
            let hash = value.hash();
            if !self.state.values.contains_key(&hash) {
                offered.insert(hash, value);
            }
        }

        let mut fresh: Vec<WireBallot> = Vec::new();
        let mut strict_checks: Vec<(WireBallot, SignatureCheck)> = Vec::new();
        for wire in update.votes {
            if usize::from(wire.member) >= n || wire.round > MAX_ROUND {
                return Err(InvalidState::Malformed("vote slot out of range"));
            }
            if let Ballot::Equivocated { first, second } = wire.ballot {
                if first.0 >= second.0 {
                    return Err(InvalidState::Malformed("equivocation values not ordered"));
                }
            }
            let existing = self
                .state
                .ballot(wire.kind, wire.round, wire.member)
                .copied();
            match (existing, wire.ballot) {
                (Some(Ballot::Equivocated { .. }), _) => {}
                (Some(a), b) if a == b => {}
                (
                    Some(Ballot::Vote {
                        value: mine_value, ..
                    }),
                    Ballot::Vote { value, .. },
                ) if mine_value == value => {
                    // Same vote, different signature bytes: BLS signatures are unique, so one of
                    // the two is invalid; keep ours, deferred verification will tell.
                }
                (_, Ballot::Equivocated { first, second }) => {
                    let evidence = self.check_evidence(ctx, &wire, first, second)?;
                    outcome.evidence.push(evidence);
                    journal.accept(&mut self.state, &mut fresh, wire);
                }
                (
                    Some(Ballot::Vote {
                        value: a,
                        signature: sa,
                    }),
                    Ballot::Vote {
                        value: b,
                        signature: sb,
                    },
                ) => {
                    // Two values in one slot: a proof of equivocation if both signatures hold.
                    let view = self.state.view;
                    let subject = |value| VoteSubject {
                        view,
                        round: wire.round,
                        kind: wire.kind,
                        value,
                    };
                    let checks = [
                        SignatureCheck {
                            member: wire.member,
                            message: ctx.message(&subject(a)),
                            signature: sa,
                        },
                        SignatureCheck {
                            member: wire.member,
                            message: ctx.message(&subject(b)),
                            signature: sb,
                        },
                    ];
                    let bad = ctx.verifier.verify_batch(&checks);
                    outcome.invalid_signatures += bad.len();
                    if bad.is_empty() {
                        let (first, second) = if a < b {
                            ((a, sa), (b, sb))
                        } else {
                            ((b, sb), (a, sa))
                        };
                        let ballot = Ballot::Equivocated { first, second };
                        journal.put(&mut self.state, wire.kind, wire.round, wire.member, ballot);
                        let vote = |(value, signature): (ValueHash, _)| SignedVote {
                            member: wire.member,
                            subject: subject(value),
                            signature,
                        };
                        outcome.evidence.push(Equivocation::new(
                            ctx.key.clone(),
                            vote(first),
                            vote(second),
                        ));
                        fresh.push(WireBallot { ballot, ..wire });
                    } else if bad.contains(&1) && sender_verified {
                        return Err(InvalidState::InvalidSignatures(1));
                    } else if bad.contains(&0) && !bad.contains(&1) {
                        // Ours was the bad one (it arrived unverified): theirs replaces it.
                        self.verified.insert((wire.kind, wire.round, wire.member));
                        journal.accept(&mut self.state, &mut fresh, wire);
                    }
                }
                (None, Ballot::Vote { value, signature }) => {
                    if self.strict || wire.member == ctx.me() {
                        let check = self.single_check(ctx, &wire, value, signature);
                        strict_checks.push((wire, check));
                    } else {
                        journal.accept(&mut self.state, &mut fresh, wire);
                    }
                }
            }
        }

        if !strict_checks.is_empty() {
            let checks: Vec<SignatureCheck> = strict_checks.iter().map(|(_, c)| *c).collect();
            let bad: BTreeSet<usize> = ctx.verifier.verify_batch(&checks).into_iter().collect();
            if !bad.is_empty() && sender_verified {
                return Err(InvalidState::InvalidSignatures(bad.len()));
            }
            outcome.invalid_signatures += bad.len();
            for (i, (wire, _)) in strict_checks.into_iter().enumerate() {
                if bad.contains(&i) {
                    continue;
                }
                self.verified.insert((wire.kind, wire.round, wire.member));
                journal.accept(&mut self.state, &mut fresh, wire);
            }
        }

        if !offered.is_empty() {
            self.admit_named_bodies(ctx, offered, journal)?;
        }

        // Justification: drop fresh slots the merged state cannot justify, to a fixpoint (a
        // dropped vote may have been what justified another).
        loop {
            // Slots of one (kind, round, value) share their answer; an update carries many.
            type Group = (VoteKind, Round, Option<ValueHash>);
            let mut answers: Vec<(Group, bool)> = Vec::new();
            let mut justified = |w: &WireBallot| {
                let group = (w.kind, w.round, w.ballot.vote_value());
                if let Some((_, answer)) = answers.iter().find(|(g, _)| *g == group) {
                    return *answer;
                }
                let answer = self.state.ballot_justified(w.kind, w.round, &w.ballot, q);
                answers.push((group, answer));
                answer
            };
            let unjustified: Vec<WireBallot> =
                fresh.iter().filter(|w| !justified(w)).copied().collect();
            if unjustified.is_empty() {
                break;
            }
            // A whole state that does not justify itself is the sender's fault — unless we just
            // dropped invalid signatures from it, which the sender (on the fast path) may have
            // counted in good faith.
            if update.complete && outcome.invalid_signatures == 0 {
                let w = unjustified[0];
                return Err(InvalidState::Unjustified(w.kind, w.round, w.member));
            }
            for w in &unjustified {
                journal.remove(&mut self.state, w.kind, w.round, w.member);
                let verified = self.verified.remove(&(w.kind, w.round, w.member));
                // A single COMMIT waits for its PRE-COMMIT quorum, which is on its way by
                // another path. Anything else lacks what no path is bringing (a value's body,
                // the round's existence): ask for the whole state at once.
                if update.complete {
                    continue;
                }
                let waits = w.kind == VoteKind::Commit && matches!(w.ballot, Ballot::Vote { .. });
                if !waits {
                    outcome.need_full_state = true;
                    continue;
                }
                if self.parked.len() < max_parked(n) && !self.parked.iter().any(|(p, _)| p == w) {
                    self.parked.push((*w, verified));
                }
                outcome.parked = true;
            }
            fresh.retain(|w| !unjustified.contains(w));
            // An equivocation proof stays valid on its own even if unjustified here.
        }
        Ok(fresh)
    }

    /// Admits the offered bodies that a single PRE-COMMIT in the merged state names, each after
    /// the validation hook accepts it; the rest are ignored. A body is thereby charged to the
    /// slot that names it: a Byzantine member can make us hold at most one body per slot of its
    /// own, and no number of junk bodies can keep out the body an honest vote needs.
    fn admit_named_bodies(
        &mut self,
        ctx: &Context<'_>,
        offered: BTreeMap<ValueHash, Value>,
        journal: &mut Journal,
    ) -> Result<(), InvalidState> {
        let named = self.state.named_values();
        let old = self.state.accepted.clone();
        for (hash, value) in offered {
            if !named.contains(&hash) {
                continue;
            }
            ctx.hook
                .validate(ctx.key, old.as_ref(), &value)
                .map_err(|e| match e {
                    HookError::Rejected(why) => InvalidState::HookRejected(why),
                    HookError::Unavailable(why) => InvalidState::Deferred(why),
                })?;
            journal.insert_value(&mut self.state, hash, value);
        }
        Ok(())
    }

    fn check_evidence(
        &self,
        ctx: &Context<'_>,
        wire: &WireBallot,
        first: (ValueHash, beaufort_crypto::bls::Signature),
        second: (ValueHash, beaufort_crypto::bls::Signature),
    ) -> Result<Equivocation, InvalidState> {
        let vote = |(value, signature)| SignedVote {
            member: wire.member,
            subject: VoteSubject {
                view: self.state.view,
                round: wire.round,
                kind: wire.kind,
                value,
            },
            signature,
        };
        let (a, b) = (vote(first), vote(second));
        let checks = [a, b].map(|v| SignatureCheck {
            member: v.member,
            message: ctx.message(&v.subject),
            signature: v.signature,
        });
        if !ctx.verifier.verify_batch(&checks).is_empty() {
            return Err(InvalidState::ForgedEvidence(wire.member));
        }
        Ok(Equivocation::new(ctx.key.clone(), a, b))
    }

    /// Moves parked COMMITs that the state now justifies into it, logging them for the push.
    /// One pass is enough: only PRE-COMMITs justify a COMMIT, and none are parked. Parked votes
    /// whose slot got filled otherwise are dropped. A strict register vouches for every vote it
    /// holds, so there a vote parked before the switch has its signature checked first. Returns
    /// how many entered.
    pub(super) fn unpark(&mut self, ctx: &Context<'_>) -> usize {
        let q = ctx.quorum();
        let mut entered = 0;
        let mut i = 0;
        while i < self.parked.len() {
            let (wire, verified) = self.parked[i];
            let slot = (wire.kind, wire.round, wire.member);
            if self
                .state
                .ballot(wire.kind, wire.round, wire.member)
                .is_some()
            {
                self.parked.swap_remove(i);
                continue;
            }
            if !self
                .state
                .ballot_justified(wire.kind, wire.round, &wire.ballot, q)
            {
                i += 1;
                continue;
            }
            self.parked.swap_remove(i);
            let checked = verified || (self.strict && self.signature_holds(ctx, &wire));
            if self.strict && !checked {
                continue;
            }
            self.state
                .put(wire.kind, wire.round, wire.member, wire.ballot);
            if checked {
                self.verified.insert(slot);
            }
            self.log.push(slot);
            entered += 1;
        }
        entered
    }

    /// Checks one single vote's signature now.
    fn signature_holds(&self, ctx: &Context<'_>, wire: &WireBallot) -> bool {
        let Ballot::Vote { value, signature } = wire.ballot else {
            return false;
        };
        let check = self.single_check(ctx, wire, value, signature);
        ctx.verifier.verify_batch(&[check]).is_empty()
    }

    /// The check of a single vote for `value` in `wire`'s slot, in the open view.
    fn single_check(
        &self,
        ctx: &Context<'_>,
        wire: &WireBallot,
        value: ValueHash,
        signature: Signature,
    ) -> SignatureCheck {
        SignatureCheck {
            member: wire.member,
            message: ctx.message(&VoteSubject {
                view: self.state.view,
                round: wire.round,
                kind: wire.kind,
                value,
            }),
            signature,
        }
    }
}

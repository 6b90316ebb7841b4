//! Merging a peer's state into a register: bounds, the slot lattice, bodies charged to the votes
//! that name them, evidence, justification, and the journal that undoes a merge that fails
//! half-way (docs/PROTOCOL.md §2, §4, §7).

use super::{
    max_parked, piece_id, Context, InvalidState, KeyUpdate, MergeOutcome, Register, SlotId,
    UpdateCertificate, WireBallot,
};
use crate::auth::{PieceCheck, SignatureCheck};
use crate::hook::HookError;
use crate::state::{Ballot, Piece, RegisterState};
use crate::types::{MemberIndex, Round, Value, ValueHash, MAX_ROUND};
use crate::vote::{Equivocation, SignedVote, VoteKind, VoteSubject};
use beaufort_crypto::aggregate::Aggregate;
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
    Piece,
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

    /// Adds a piece to the state.
    fn push_piece(&mut self, state: &mut RegisterState, piece: Piece) {
        state.pieces.push(piece);
        self.undo.push(Undo::Piece);
    }

    /// Adds a piece and fills the slots it covers that nothing fills yet.
    fn admit_piece(
        &mut self,
        state: &mut RegisterState,
        fresh: &mut Vec<WireBallot>,
        piece: Piece,
        members: &[MemberIndex],
    ) {
        for &member in members {
            let ballot = Ballot::Covered { value: piece.value };
            self.accept(
                state,
                fresh,
                WireBallot {
                    kind: piece.kind,
                    round: piece.round,
                    member,
                    ballot,
                },
            );
        }
        self.push_piece(state, piece);
    }

    fn added_values(&self) -> impl Iterator<Item = ValueHash> + '_ {
        self.undo.iter().filter_map(|u| match u {
            Undo::Value(hash) => Some(*hash),
            Undo::Slot(..) | Undo::Piece => None,
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
                Undo::Piece => {
                    state.pieces.pop();
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
                (_, Ballot::Covered { .. } | Ballot::Conflicted { .. }) => {
                    return Err(InvalidState::Malformed(
                        "a slot without the pieces it needs",
                    ));
                }
                (Some(Ballot::Equivocated { .. } | Ballot::Conflicted { .. }), _) => {}
                (Some(Ballot::Covered { value: held }), Ballot::Vote { value, .. })
                    if held == value => {}
                (Some(Ballot::Covered { .. }), Ballot::Vote { value, signature }) => {
                    // A single vote for another value where we hold this member's vote inside
                    // a piece: both checked, they prove equivocation.
                    let single = self.single_piece(ctx, &wire, value, signature)?;
                    let check = self.single_check(ctx, &wire, value, signature);
                    if !ctx.verifier.verify_batch(&[check]).is_empty() {
                        if sender_verified {
                            return Err(InvalidState::InvalidSignatures(1));
                        }
                        outcome.invalid_signatures += 1;
                    } else {
                        self.verified_pieces.insert(piece_id(&single));
                        if self.convict(ctx, &single, wire.member, journal, &mut fresh, outcome) {
                            journal.push_piece(&mut self.state, single);
                        }
                    }
                }
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

        self.merge_pieces(
            ctx,
            update.pieces,
            sender_verified,
            journal,
            &mut fresh,
            outcome,
        )?;

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
            // An entry a later one in this merge replaced (a covered vote that became a proof)
            // is judged by what the slot holds now.
            let current = |w: &&WireBallot| {
                self.state.ballot(w.kind, w.round, w.member).copied() == Some(w.ballot)
            };
            let unjustified: Vec<WireBallot> = fresh
                .iter()
                .filter(current)
                .filter(|w| !justified(w))
                .copied()
                .collect();
            if unjustified.is_empty() {
                break;
            }
            // A whole state that does not justify itself is the sender's fault — unless we just
            // dropped invalid signatures from it, which the sender (on the fast path) may have
            // counted in good faith.
            // A covered vote is not something the sender's state asserts: a piece it keeps as
            // the proof of one member's equivocation may also hold votes it never counted (their
            // bodies or rounds missing there too), so those are dropped here, never blamed.
            if update.complete && outcome.invalid_signatures == 0 {
                if let Some(w) = unjustified.iter().find(|w| !w.ballot.travels_in_pieces()) {
                    return Err(InvalidState::Unjustified(w.kind, w.round, w.member));
                }
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

    /// Takes in a peer's pieces. A piece enters only if it covers a slot nothing fills yet (our
    /// own only once the piece is checked), which bounds the pieces by the slots. On the fast
    /// path pieces enter unchecked, for deferred verification; a strict register checks them
    /// first. A piece's member whose slot already holds another value keeps that slot.
    fn merge_pieces(
        &mut self,
        ctx: &Context<'_>,
        pieces: Vec<Piece>,
        sender_verified: bool,
        journal: &mut Journal,
        fresh: &mut Vec<WireBallot>,
        outcome: &mut MergeOutcome,
    ) -> Result<(), InvalidState> {
        let n = ctx.verifier.members();
        let mut to_check = Vec::new();
        for piece in pieces {
            let weights = &piece.aggregate.weights;
            if weights.validate(n).is_err() || weights.is_empty() || piece.round > MAX_ROUND {
                return Err(InvalidState::Malformed("piece out of range"));
            }
            let open = self.open_slots(ctx, &piece);
            let conflicts = self.conflicting(&piece);
            // A piece that claims a vote of ours our state does not hold is checked at once: we
            // know what we signed, and a forged claim must count as the invalid signature it is,
            // or its sender's count of that vote would make a later whole state of its look
            // unjustified to us.
            let me = ctx.me();
            let claims_me = weights.contains(me)
                && self
                    .state
                    .ballot(piece.kind, piece.round, me)
                    .and_then(Ballot::vote_value)
                    != Some(piece.value);
            if open.is_empty() && conflicts.is_empty() && !claims_me {
                continue;
            }
            // A conflict convicts only on checked signatures; a strict register checks all.
            let checked = self.verified_pieces.contains(&piece_id(&piece));
            if !checked && (self.strict || !conflicts.is_empty() || claims_me) {
                to_check.push(piece);
                continue;
            }
            self.take_piece(ctx, piece, journal, fresh, outcome);
        }
        if to_check.is_empty() {
            return Ok(());
        }
        let checks: Vec<PieceCheck<'_>> = to_check
            .iter()
            .map(|piece| PieceCheck {
                message: ctx.message(&self.subject_of(piece)),
                piece: &piece.aggregate,
            })
            .collect();
        let bad: BTreeSet<usize> = ctx.verifier.verify_pieces(&checks).into_iter().collect();
        if !bad.is_empty() && sender_verified {
            return Err(InvalidState::InvalidSignatures(bad.len()));
        }
        outcome.invalid_signatures += bad.len();
        for (i, piece) in to_check.into_iter().enumerate() {
            if bad.contains(&i) {
                continue;
            }
            self.verified_pieces.insert(piece_id(&piece));
            self.take_piece(ctx, piece, journal, fresh, outcome);
        }
        Ok(())
    }

    /// Admits `piece` (checked already if it conflicts with anything held): fills its open slots
    /// and turns each conflicting slot into a proof when the held side checks too. The piece is
    /// kept if it did either.
    fn take_piece(
        &mut self,
        ctx: &Context<'_>,
        piece: Piece,
        journal: &mut Journal,
        fresh: &mut Vec<WireBallot>,
        outcome: &mut MergeOutcome,
    ) {
        let open = self.open_slots(ctx, &piece);
        let mut needed = !open.is_empty();
        for member in self.conflicting(&piece) {
            needed |= self.convict(ctx, &piece, member, journal, fresh, outcome);
        }
        if needed {
            journal.admit_piece(&mut self.state, fresh, piece, &open);
        }
    }

    /// The members of `piece` whose slot holds a vote for another value.
    fn conflicting(&self, piece: &Piece) -> Vec<MemberIndex> {
        piece
            .aggregate
            .weights
            .members()
            .map(|(member, _)| member)
            .filter(|&member| {
                self.state
                    .ballot(piece.kind, piece.round, member)
                    .and_then(Ballot::vote_value)
                    .is_some_and(|held| held != piece.value)
            })
            .collect()
    }

    /// `member`'s slot holds a vote for another value than the checked `piece`, which contains
    /// it: if what we hold for it checks too (its single vote, or the piece that covers it), the
    /// slot becomes a [`Ballot::Conflicted`] proof, with a single vote kept as a piece of one so
    /// the proof travels. Returns whether the slot changed.
    fn convict(
        &mut self,
        ctx: &Context<'_>,
        piece: &Piece,
        member: MemberIndex,
        journal: &mut Journal,
        fresh: &mut Vec<WireBallot>,
        outcome: &mut MergeOutcome,
    ) -> bool {
        let (kind, round) = (piece.kind, piece.round);
        let held = match self.state.ballot(kind, round, member).copied() {
            Some(Ballot::Vote { value, signature }) => {
                let wire = WireBallot {
                    kind,
                    round,
                    member,
                    ballot: Ballot::Vote { value, signature },
                };
                match self.single_piece(ctx, &wire, value, signature) {
                    Ok(single) => single,
                    Err(_) => return false,
                }
            }
            Some(Ballot::Covered { value }) => {
                match self
                    .state
                    .pieces_of(kind, round, value)
                    .find(|p| p.aggregate.weights.contains(member))
                {
                    Some(p) => p.clone(),
                    None => return false,
                }
            }
            _ => return false,
        };
        if !self.verified_pieces.contains(&piece_id(&held)) {
            let check = PieceCheck {
                message: ctx.message(&self.subject_of(&held)),
                piece: &held.aggregate,
            };
            if !ctx.verifier.verify_pieces(&[check]).is_empty() {
                // Ours is the bad one: the next advance removes it, and the slot opens.
                outcome.invalid_signatures += 1;
                self.recheck = true;
                return false;
            }
            self.verified_pieces.insert(piece_id(&held));
        }
        let (first, second) = if held.value < piece.value {
            (held.value, piece.value)
        } else {
            (piece.value, held.value)
        };
        let ballot = Ballot::Conflicted { first, second };
        let was_single = matches!(
            self.state.ballot(kind, round, member),
            Some(Ballot::Vote { .. })
        );
        journal.put(&mut self.state, kind, round, member, ballot);
        fresh.push(WireBallot {
            kind,
            round,
            member,
            ballot,
        });
        if was_single {
            journal.push_piece(&mut self.state, held);
        }
        true
    }

    /// A single vote as a piece of one.
    fn single_piece(
        &self,
        ctx: &Context<'_>,
        wire: &WireBallot,
        value: ValueHash,
        signature: Signature,
    ) -> Result<Piece, InvalidState> {
        let aggregate = Aggregate::single(ctx.verifier.members(), wire.member, signature)
            .map_err(|_| InvalidState::Malformed("vote slot out of range"))?;
        Ok(Piece {
            kind: wire.kind,
            round: wire.round,
            value,
            aggregate,
        })
    }

    /// The members of `piece` whose slot nothing fills yet. Our own slot only from a checked
    /// piece: then we did sign that vote (a restart lost it), and must count it again as our
    /// peers do, as a single vote of ours coming back is taken after its check.
    fn open_slots(&self, ctx: &Context<'_>, piece: &Piece) -> Vec<MemberIndex> {
        let ours_checked = self.verified_pieces.contains(&piece_id(piece));
        piece
            .aggregate
            .weights
            .members()
            .map(|(member, _)| member)
            .filter(|&member| {
                (member != ctx.me() || ours_checked)
                    && self.state.ballot(piece.kind, piece.round, member).is_none()
            })
            .collect()
    }

    /// What every share of `piece` signed, in the open view.
    pub(super) fn subject_of(&self, piece: &Piece) -> VoteSubject {
        VoteSubject {
            view: self.state.view,
            round: piece.round,
            kind: piece.kind,
            value: piece.value,
        }
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

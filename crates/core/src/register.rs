//! One key's consensus instance: merging peers' states and deciding what to vote.
//!
//! This is Algorithm 1 of the BeauForT paper with the locking rule that makes it safe (see
//! docs/PROTOCOL.md §5). Pure: it gets its signer, verifier and hook through [`Context`] and
//! returns what happened; the caller persists and sends.

use crate::auth::{SignatureCheck, Verifier, VoteSigner};
use crate::changelog::ChangeLog;
use crate::hook::{HookError, ValidationHook};
use crate::state::{Ballot, Certified, RegisterState};
use crate::types::{Key, MemberIndex, Round, Value, ValueHash, View, MAX_ROUND};
use crate::vote::{vote_message, Equivocation, SignedVote, VoteKind, VoteSubject};
use beaufort_crypto::bls::Signature;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Everything a register needs from its replica to take a step.
pub struct Context<'a> {
    /// The key this register is for (part of every signed message).
    pub key: &'a Key,
    /// The local member's signer.
    pub signer: &'a dyn VoteSigner,
    /// The consortium's verifier.
    pub verifier: &'a dyn Verifier,
    /// The application's validation hook.
    pub hook: &'a dyn ValidationHook,
    /// Members proven to have equivocated; their votes no longer count towards decisions.
    pub excluded: &'a BTreeSet<MemberIndex>,
    /// The runtime's clock in milliseconds, as of its last tick (monotone; any origin). Only
    /// used to wait out a split round ([`patience`]); `u64::MAX` means every wait is over.
    pub now: u64,
}

/// How long a member waits, after it first sees its round split, before it opens the next one:
/// 20 ms more for every round, up to 2 s. A member that moves on as soon as it sees `q` votes
/// disagree can be moved by the `f` Byzantine votes that arrive first, before the honest votes
/// that would have formed a quorum, round after round for as long as the Byzantine members keep
/// doing it; waiting lets every honest vote of the round arrive once messages are timely again,
/// and growing the wait with the round finds the network's delay without knowing it (the same
/// reason Tendermint's round timeouts grow). It also bounds how fast a Byzantine member can
/// push a view through rounds.
pub fn patience(round: Round) -> u64 {
    const STEP_MS: u64 = 20;
    const MAX_MS: u64 = 2_000;
    STEP_MS.saturating_mul(u64::from(round) + 1).min(MAX_MS)
}

impl Context<'_> {
    fn quorum(&self) -> usize {
        self.verifier.quorum()
    }

    fn me(&self) -> MemberIndex {
        self.signer.member()
    }

    /// The most Byzantine members the consortium tolerates.
    fn faulty(&self) -> usize {
        self.verifier.members().saturating_sub(1) / 3
    }

    fn message(&self, subject: &VoteSubject) -> beaufort_crypto::hash::Digest {
        vote_message(&self.verifier.network_id(), self.key, subject)
    }
}

/// One vote slot as it travels in an update.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireBallot {
    /// PRE-COMMIT or COMMIT.
    pub kind: VoteKind,
    /// The round.
    pub round: Round,
    /// The member the slot belongs to.
    pub member: MemberIndex,
    /// The slot's content.
    pub ballot: Ballot,
}

/// Part or all of a peer's state for one key. Its encoding is in [`crate::wire`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyUpdate {
    /// The register.
    pub key: Key,
    /// The sender's open view.
    pub view: View,
    /// The sender's certified value, when the receiver may lack it.
    pub accepted: Option<UpdateCertificate>,
    /// Bodies of proposed values the receiver may lack.
    pub values: Vec<Value>,
    /// Vote slots the receiver may lack.
    pub votes: Vec<WireBallot>,
    /// True if this is the sender's whole state for the key, so anything it cannot justify is the
    /// sender's fault rather than a gap in what the receiver already had.
    pub complete: bool,
    /// The single votes name their values by the first [`crate::wire::SHORT_REF_BYTES`] bytes of
    /// the hash only (the rest of each hash is zero): every one of those values has crossed this
    /// link in this view, so the receiver can resolve the names against what the link carried
    /// ([`crate::replica::Replica::receive`] does before merging). Saves 24 of the ~36 bytes
    /// of a vote group's header; never set on complete updates or by a member checking every
    /// signature.
    pub short_refs: bool,
}

impl KeyUpdate {
    /// A register's whole state as one complete update (what a peer gets when we do not know
    /// what it holds, and what Merkle repair exchanges).
    pub fn whole(key: &Key, state: &RegisterState) -> KeyUpdate {
        let mut votes = Vec::with_capacity(state.vote_count());
        for kind in [VoteKind::PreCommit, VoteKind::Commit] {
            for (&round, ballots) in state.ballots(kind) {
                for (&member, &ballot) in ballots {
                    votes.push(WireBallot {
                        kind,
                        round,
                        member,
                        ballot,
                    });
                }
            }
        }
        KeyUpdate {
            key: key.clone(),
            view: state.view,
            accepted: state.accepted.clone().map(UpdateCertificate::Whole),
            values: state.values.values().cloned().collect(),
            votes,
            complete: true,
            short_refs: false,
        }
    }
}

/// The certificate a key update carries for the view that closed before the update's own.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum UpdateCertificate {
    /// With the decided value's body.
    Whole(Certified),
    /// Naming the decided value by its hash, for a receiver that holds the body from the view
    /// the certificate closes (the link carried it): 140 fewer bytes for a 170-byte value. The
    /// replica resolves it from the receiver's own state before merging (docs/PROTOCOL.md §11.4).
    Named {
        /// The view that decided the value.
        view: View,
        /// The round whose COMMIT votes form the certificate.
        round: Round,
        /// The decided value's hash.
        value: ValueHash,
        /// The certificate.
        qc: beaufort_crypto::qc::QuorumCertificate,
    },
}

impl UpdateCertificate {
    /// The hash of the decided value.
    pub fn value_hash(&self) -> ValueHash {
        match self {
            UpdateCertificate::Whole(cert) => cert.value.hash(),
            UpdateCertificate::Named { value, .. } => *value,
        }
    }

    /// The aggregate and its signers.
    pub fn qc(&self) -> &beaufort_crypto::qc::QuorumCertificate {
        match self {
            UpdateCertificate::Whole(cert) => &cert.qc,
            UpdateCertificate::Named { qc, .. } => qc,
        }
    }
}

/// Why a peer's state was refused. Each is something an honest peer never sends, except
/// [`InvalidState::Deferred`] (see [`InvalidState::is_fault`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidState {
    /// A field was out of bounds or inconsistent.
    #[error("malformed state: {0}")]
    Malformed(&'static str),
    /// A higher view came with a certificate that does not verify.
    #[error("invalid certificate for view {0}")]
    InvalidCertificate(View),
    /// A vote for a value the validation hook rejects.
    #[error("value rejected by the validation hook: {0}")]
    HookRejected(String),
    /// A complete state holding votes its own content does not justify.
    #[error("unjustified vote: {0:?} round {1} by member {2}")]
    Unjustified(VoteKind, Round, MemberIndex),
    /// Signatures the sender claimed to have verified are invalid.
    #[error("{0} invalid signature(s) in a message marked verified")]
    InvalidSignatures(usize),
    /// An equivocation proof whose signatures do not verify.
    #[error("forged equivocation proof against member {0}")]
    ForgedEvidence(MemberIndex),
    /// The hook cannot judge a value yet ([`HookError::Unavailable`]); nothing was merged.
    #[error("set aside until a dependency arrives: {0}")]
    Deferred(String),
}

impl InvalidState {
    /// Whether the sender is to blame: every refusal except a deferral proves it faulty.
    pub fn is_fault(&self) -> bool {
        !matches!(self, InvalidState::Deferred(_))
    }
}

/// What merging an update did.
#[derive(Debug, Default)]
#[must_use]
pub struct MergeOutcome {
    /// The local state changed (persist it, push the change to neighbours).
    pub changed: bool,
    /// The update came with a higher view whose certificate we adopted.
    pub learned: Option<Certified>,
    /// The sender is behind us (send it our state).
    pub sender_behind: bool,
    /// The update cannot be placed in our view (it assumes a certificate, a value's body or a
    /// round we lack): ask the sender for its whole state.
    pub need_full_state: bool,
    /// Some votes arrived before what justifies them and wait aside ([`Register::has_parked`]);
    /// if they are still waiting a while later, ask the sender for its whole state.
    pub parked: bool,
    /// New proofs of equivocation.
    pub evidence: Vec<Equivocation>,
    /// Invalid signatures were found (not necessarily the sender's fault).
    pub invalid_signatures: usize,
}

/// What an [`Register::advance`] did.
#[derive(Debug, Default)]
#[must_use]
pub struct AdvanceOutcome {
    /// Our own new votes (the state changed; persist before sending).
    pub cast: Vec<SignedVote>,
    /// A decision reached by forming a certificate.
    pub decided: Option<Certified>,
    /// Invalid signatures were found and removed during deferred verification.
    pub invalid_signatures: usize,
}

/// Result of a local proposal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proposed {
    /// Our round-0 vote for the value is cast.
    Voted,
    /// We already voted in this view; the value waits for the next view.
    Queued,
}

/// A local proposal the hook refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("proposal rejected by the validation hook: {0}")]
pub struct ProposalRejected(pub HookError);

/// One key's register: the replicated state plus what only this member knows.
#[derive(Clone, Debug, Default)]
pub struct Register {
    /// The replicated state (persisted as is).
    pub state: RegisterState,
    verified: BTreeSet<SlotId>,
    strict: bool,
    pending: Option<Value>,
    /// Every slot written in this view, in order (a slot may appear again when it changes), so
    /// the sync layer can push what changed since it last looked without rescanning the state.
    log: ChangeLog<SlotId>,
    /// Every proposal body added in this view, in order.
    value_log: ChangeLog<ValueHash>,
    /// Single COMMITs of incomplete updates that arrived before the PRE-COMMIT quorum they
    /// stand on (which relay trees bring by another path), each with whether its signature was
    /// checked. Not part of the replicated state: they enter it when
    /// a later merge justifies them (docs/PROTOCOL.md §11.1). At most [`max_parked`] of them.
    parked: Vec<(WireBallot, bool)>,
    /// When (by [`Context::now`]) we first saw our current round split with no quorum, and that
    /// round: we open the next round only after [`patience`]. Not persisted: a restarted
    /// member waits again, which costs time, never safety.
    split_seen: Option<(Round, u64)>,
}

/// Most parked COMMITs per register: two rounds' worth of every member's.
fn max_parked(members: usize) -> usize {
    2 * members
}

/// Names one vote slot: (kind, round, member).
pub type SlotId = (VoteKind, Round, MemberIndex);

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

/// A planned own vote.
struct Plan {
    kind: VoteKind,
    round: Round,
    value: ValueHash,
}

impl Register {
    /// Restores a register from persisted state. Every vote in it was verified or cast before it
    /// was persisted, but verification is cheap to redo, so restored votes count as unverified.
    pub fn restore(state: RegisterState) -> Register {
        let log = ChangeLog::from_current(held_slots(&state));
        let value_log = ChangeLog::from_current(state.values.keys().copied().collect());
        Register {
            state,
            log,
            value_log,
            ..Register::default()
        }
    }

    /// Whether votes wait aside for their justification (see [`MergeOutcome::parked`]).
    pub fn has_parked(&self) -> bool {
        !self.parked.is_empty()
    }

    /// Slots written in this view, in order, from position `from` on (see [`Register::log_len`]).
    pub fn slots_since(&self, from: usize) -> &[SlotId] {
        self.log.since(from)
    }

    /// Proposal bodies added in this view, in order, from position `from` on.
    pub fn values_since(&self, from: usize) -> &[ValueHash] {
        self.value_log.since(from)
    }

    /// Positions just past the last logged slot and value: what a reader has now seen.
    pub fn log_len(&self) -> (usize, usize) {
        (self.log.end(), self.value_log.end())
    }

    /// True after invalid signatures were seen in this view: votes are then checked on arrival.
    pub fn is_strict(&self) -> bool {
        self.strict
    }

    /// The value waiting for the next view, if any.
    pub fn pending(&self) -> Option<&Value> {
        self.pending.as_ref()
    }

    /// Drops the waiting proposal (the caller gave up on it).
    pub fn clear_pending(&mut self) -> Option<Value> {
        self.pending.take()
    }

    /// The highest round we PRE-COMMIT-voted in this view.
    pub fn my_round(&self, me: MemberIndex) -> Option<Round> {
        self.state
            .precommits
            .iter()
            .rev()
            .find(|(_, b)| b.contains_key(&me))
            .map(|(r, _)| *r)
    }

    /// Our lock: the highest round we COMMIT-voted in this view, and the value.
    pub fn lock(&self, me: MemberIndex) -> Option<(Round, ValueHash)> {
        self.state.commits.iter().rev().find_map(|(r, b)| {
            b.get(&me)
                .and_then(|ballot| ballot.vote_value())
                .map(|v| (*r, v))
        })
    }

    /// Proposes `value` in the current view, or queues it for the next one.
    pub fn propose(
        &mut self,
        ctx: &Context<'_>,
        value: Value,
    ) -> Result<(Proposed, AdvanceOutcome), ProposalRejected> {
        ctx.hook
            .validate(ctx.key, self.state.accepted.as_ref(), &value)
            .map_err(ProposalRejected)?;
        if self.my_round(ctx.me()).is_some() {
            self.pending = Some(value);
            return Ok((Proposed::Queued, AdvanceOutcome::default()));
        }
        let hash = value.hash();
        if self.state.values.insert(hash, value.clone()).is_none() {
            self.value_log.push(hash);
        }
        self.pending = Some(value);
        let mut outcome = AdvanceOutcome::default();
        self.cast(
            ctx,
            Plan {
                kind: VoteKind::PreCommit,
                round: 0,
                value: hash,
            },
            &mut outcome,
        );
        let more = self.advance(ctx);
        outcome.cast.extend(more.cast);
        outcome.decided = more.decided;
        outcome.invalid_signatures += more.invalid_signatures;
        Ok((Proposed::Voted, outcome))
    }

    /// After a decision, re-proposes the waiting value in the new view unless it was the one
    /// decided or the hook now refuses it. Returns the value if it was dropped.
    pub fn repropose_pending(
        &mut self,
        ctx: &Context<'_>,
    ) -> (Option<Value>, Option<AdvanceOutcome>) {
        let Some(value) = self.pending.take() else {
            return (None, None);
        };
        if self.state.current_value() == Some(&value) {
            return (None, None);
        }
        match self.propose(ctx, value.clone()) {
            Ok((_, outcome)) => (None, Some(outcome)),
            Err(_) => (Some(value), None),
        }
    }

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

    /// Takes every step the protocol allows from the current state: forms a certificate and
    /// accepts, or casts our next PRE-COMMIT or COMMIT vote. Signatures are verified in one batch
    /// just before each decision.
    pub fn advance(&mut self, ctx: &Context<'_>) -> AdvanceOutcome {
        let mut outcome = AdvanceOutcome::default();
        // Each iteration casts a vote (following the top round, a COMMIT, opening the next
        // round: at most three before we wait for others), removes invalid votes (at most once
        // per vote held), or stops; the bound keeps a hostile state from spinning us.
        let bound = 8 + self.state.vote_count();
        for _ in 0..bound {
            match self.try_certify(ctx, &mut outcome) {
                Certify::Decided(cert) => {
                    outcome.decided = Some(cert);
                    return outcome;
                }
                Certify::Retry => continue,
                Certify::Nothing => {}
            }
            self.note_split(ctx);
            let Some(plan) = self.plan(ctx) else { break };
            let needs_check = plan.kind == VoteKind::Commit || plan.round > 0;
            if needs_check && !self.verify_unverified(ctx, &mut outcome) {
                continue;
            }
            self.cast(ctx, plan, &mut outcome);
        }
        self.state.prune(ctx.quorum(), ctx.me());
        self.compact_logs();
        outcome
    }

    /// Keeps the change logs proportional to the state they describe (see [`ChangeLog`]).
    fn compact_logs(&mut self) {
        let state = &self.state;
        self.log
            .compact_if_long(state.vote_count(), || held_slots(state));
        self.value_log.compact_if_long(state.values.len(), || {
            state.values.keys().copied().collect()
        });
    }

    fn cast(&mut self, ctx: &Context<'_>, plan: Plan, outcome: &mut AdvanceOutcome) {
        let me = ctx.me();
        debug_assert!(self.state.ballot(plan.kind, plan.round, me).is_none());
        let subject = VoteSubject {
            view: self.state.view,
            round: plan.round,
            kind: plan.kind,
            value: plan.value,
        };
        let signature = ctx.signer.sign(&ctx.message(&subject));
        self.state.put(
            plan.kind,
            plan.round,
            me,
            Ballot::Vote {
                value: plan.value,
                signature,
            },
        );
        self.verified.insert((plan.kind, plan.round, me));
        self.log.push((plan.kind, plan.round, me));
        // Our own vote may be what a parked vote was waiting for.
        self.unpark(ctx);
        outcome.cast.push(SignedVote {
            member: me,
            subject,
            signature,
        });
    }

    /// The value with a quorum of PRE-COMMITs in `round`. Equivocators count here (see
    /// [`RegisterState::supporters`]): quorums must be monotone, or a member locked on a quorum
    /// that later lost an excluded voter could never convince the others, and the view would
    /// stall.
    fn quorum_value(&self, ctx: &Context<'_>, round: Round) -> Option<ValueHash> {
        self.state.quorum_value(round, ctx.quorum())
    }

    /// The round-0 value with the most counted votes, ties to the highest hash.
    fn round0_winner(&self, ctx: &Context<'_>) -> Option<ValueHash> {
        let mut counts: BTreeMap<ValueHash, usize> = BTreeMap::new();
        for (member, ballot) in self.state.precommits.get(&0)? {
            if let Some(value) = ballot.vote_value() {
                if !ctx.excluded.contains(member) && self.state.values.contains_key(&value) {
                    *counts.entry(value).or_default() += 1;
                }
            }
        }
        counts
            .into_iter()
            .max_by_key(|(v, c)| (*c, *v))
            .map(|(v, _)| v)
    }

    /// The value we PRE-COMMIT in `round`: the value of the highest-round quorum we know at or
    /// above our lock round; else our locked value; else the round-0 winner.
    fn choose_value(&self, ctx: &Context<'_>, round: Round) -> Option<ValueHash> {
        let lock = self.lock(ctx.me());
        let floor = lock.map_or(0, |(l, _)| l);
        for h in (floor..=round).rev() {
            if let Some(value) = self.quorum_value(ctx, h) {
                return Some(value);
            }
        }
        if let Some((_, value)) = lock {
            return Some(value);
        }
        self.round0_winner(ctx)
    }

    /// Whether we are waiting for [`patience`] to run out before we leave our current round:
    /// the runtime's next tick should advance this register again.
    pub fn is_waiting(&self, ctx: &Context<'_>) -> bool {
        let Some(current) = self.my_round(ctx.me()) else {
            return false;
        };
        matches!(self.split_seen, Some((round, _)) if round == current)
            && !self.patience_over(ctx, current)
    }

    /// Starts the wait on our current round when it is split: `q` signers and no quorum.
    fn note_split(&mut self, ctx: &Context<'_>) {
        let Some(current) = self.my_round(ctx.me()) else {
            return;
        };
        if matches!(self.split_seen, Some((round, _)) if round == current) {
            return;
        }
        if self.state.signers(current) >= ctx.quorum() && self.quorum_value(ctx, current).is_none()
        {
            self.split_seen = Some((current, ctx.now));
        }
    }

    /// Whether we saw `round` split at least [`patience`] ago.
    fn patience_over(&self, ctx: &Context<'_>, round: Round) -> bool {
        matches!(self.split_seen, Some((r, seen))
            if r == round && ctx.now >= seen.saturating_add(patience(round)))
    }

    /// Our next vote, if the state calls for one.
    fn plan(&self, ctx: &Context<'_>) -> Option<Plan> {
        let me = ctx.me();
        let top = self.state.top_round()?;
        let current = self.my_round(me);
        if let Some(round) = current {
            // Commit only in our current round: never for a round below it.
            if let Some(value) = self.quorum_value(ctx, round) {
                if self.state.ballot(VoteKind::Commit, round, me).is_none() {
                    return Some(Plan {
                        kind: VoteKind::Commit,
                        round,
                        value,
                    });
                }
            }
        }
        let target = match current {
            Some(round) if round == top => {
                let split = self.state.signers(top) >= ctx.quorum()
                    && self.quorum_value(ctx, top).is_none();
                if split && top < MAX_ROUND && self.patience_over(ctx, top) {
                    top + 1
                } else {
                    return None;
                }
            }
            // The next round is open: join it once our own wait is over, once our round has a
            // quorum (we committed to it; we go on to vote its value), or once f + 1 members
            // are in the next round (one of them honest, who waited or followed one who did).
            // Byzantine votes alone cannot pull us out of a round early.
            Some(round) if round + 1 == top => {
                if self.state.signers(top) > ctx.faulty()
                    || self.patience_over(ctx, round)
                    || self.quorum_value(ctx, round).is_some()
                {
                    top
                } else {
                    return None;
                }
            }
            // Not voted yet, or more than a round behind: catch up at once.
            _ => top,
        };
        let value = self.choose_value(ctx, target)?;
        Some(Plan {
            kind: VoteKind::PreCommit,
            round: target,
            value,
        })
    }

    fn try_certify(&mut self, ctx: &Context<'_>, outcome: &mut AdvanceOutcome) -> Certify {
        let q = ctx.quorum();
        let mut candidate = None;
        'search: for (&round, ballots) in self.state.commits.iter().rev() {
            if ballots.len() < q {
                continue;
            }
            for value in self.commit_values(round) {
                let signed_by = |ballot: &Ballot| ballot.signature_for(value).is_some();
                if ballots.values().filter(|b| signed_by(b)).count() < q {
                    continue;
                }
                let members: Vec<MemberIndex> = ballots
                    .iter()
                    .filter(|(_, b)| signed_by(b))
                    .map(|(m, _)| *m)
                    .collect();
                candidate = Some((round, value, members));
                break 'search;
            }
        }
        let Some((round, value, members)) = candidate else {
            return Certify::Nothing;
        };
        if !self.verify_unverified(ctx, outcome) {
            return Certify::Retry;
        }
        let Some(body) = self.state.values.get(&value).cloned() else {
            return Certify::Nothing;
        };
        let subject = VoteSubject {
            view: self.state.view,
            round,
            kind: VoteKind::Commit,
            value,
        };
        let shares: Vec<_> = members
            .iter()
            .filter_map(|m| {
                let ballot = self.state.ballot(VoteKind::Commit, round, *m)?;
                ballot.signature_for(value).map(|signature| (*m, signature))
            })
            .collect();
        let Some(qc) = ctx.verifier.certify(&ctx.message(&subject), &shares) else {
            return Certify::Nothing;
        };
        let cert = Certified {
            view: self.state.view,
            round,
            value: body,
            qc,
        };
        self.jump_to(cert.clone());
        Certify::Decided(cert)
    }

    /// The values with any COMMIT vote in `round`.
    fn commit_values(&self, round: Round) -> BTreeSet<ValueHash> {
        self.state
            .commits
            .get(&round)
            .map(|b| b.values().flat_map(|ballot| ballot.values()).collect())
            .unwrap_or_default()
    }

    /// The single votes whose signature we have not checked yet, in slot order.
    fn unverified_votes(&self) -> Vec<SignedVote> {
        let mut out = Vec::new();
        for kind in [VoteKind::PreCommit, VoteKind::Commit] {
            for (&round, ballots) in self.state.ballots(kind) {
                for (&member, ballot) in ballots {
                    let Ballot::Vote { value, signature } = *ballot else {
                        continue;
                    };
                    if self.verified.contains(&(kind, round, member)) {
                        continue;
                    }
                    out.push(SignedVote {
                        member,
                        subject: VoteSubject {
                            view: self.state.view,
                            round,
                            kind,
                            value,
                        },
                        signature,
                    });
                }
            }
        }
        out
    }

    /// Verifies every not-yet-verified vote in one batch; removes invalid ones and switches to
    /// verify-on-arrival. Returns true if all were valid.
    fn verify_unverified(&mut self, ctx: &Context<'_>, outcome: &mut AdvanceOutcome) -> bool {
        let pending = self.unverified_votes();
        if pending.is_empty() {
            return true;
        }
        let checks: Vec<SignatureCheck> = pending
            .iter()
            .map(|v| SignatureCheck {
                member: v.member,
                message: ctx.message(&v.subject),
                signature: v.signature,
            })
            .collect();
        let bad: BTreeSet<usize> = ctx.verifier.verify_batch(&checks).into_iter().collect();
        for (i, vote) in pending.iter().enumerate() {
            let slot = (vote.subject.kind, vote.subject.round, vote.member);
            if !bad.contains(&i) {
                self.verified.insert(slot);
                continue;
            }
            self.state
                .remove(vote.subject.kind, vote.subject.round, vote.member);
        }
        if bad.is_empty() {
            return true;
        }
        outcome.invalid_signatures += bad.len();
        self.strict = true;
        self.prune_unjustified(ctx.quorum(), ctx.me());
        false
    }

    /// After removing votes, drops any that lost their justification (to a fixpoint). Our own
    /// votes are never dropped: forgetting one could let us vote twice in a round.
    fn prune_unjustified(&mut self, q: usize, me: MemberIndex) {
        loop {
            let mut doomed = Vec::new();
            for kind in [VoteKind::PreCommit, VoteKind::Commit] {
                for (&round, ballots) in self.state.ballots(kind) {
                    for (&member, ballot) in ballots {
                        if member != me && !self.state.ballot_justified(kind, round, ballot, q) {
                            doomed.push((kind, round, member));
                        }
                    }
                }
            }
            if doomed.is_empty() {
                break;
            }
            for (kind, round, member) in doomed {
                self.verified.remove(&(kind, round, member));
                self.state.remove(kind, round, member);
            }
        }
    }

    /// Moves parked COMMITs that the state now justifies into it, logging them for the push.
    /// One pass is enough: only PRE-COMMITs justify a COMMIT, and none are parked. Parked votes
    /// whose slot got filled otherwise are dropped. A strict register vouches for every vote it
    /// holds, so there a vote parked before the switch has its signature checked first. Returns
    /// how many entered.
    fn unpark(&mut self, ctx: &Context<'_>) -> usize {
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

    fn jump_to(&mut self, cert: Certified) {
        self.state = RegisterState {
            view: cert.view + 1,
            accepted: Some(cert),
            ..RegisterState::default()
        };
        self.verified.clear();
        self.parked.clear();
        self.split_seen = None;
        self.strict = false;
        self.log.clear();
        self.value_log.clear();
    }
}

/// Every slot a state holds, in slot order.
fn held_slots(state: &RegisterState) -> Vec<SlotId> {
    let mut slots = Vec::with_capacity(state.vote_count());
    for kind in [VoteKind::PreCommit, VoteKind::Commit] {
        for (&round, ballots) in state.ballots(kind) {
            slots.extend(ballots.keys().map(|&member| (kind, round, member)));
        }
    }
    slots
}

enum Certify {
    Decided(Certified),
    Retry,
    Nothing,
}

//! One key's consensus instance: merging peers' states and deciding what to vote.
//!
//! This is Algorithm 1 of the BeauForT paper with the locking rule that makes it safe (see
//! docs/PROTOCOL.md §6). Pure: it gets its signer, verifier and hook through [`Context`] and
//! returns what happened; the caller persists and sends. `merge` takes in a peer's state, `decide`
//! chooses our votes and forms certificates; this module holds the types and the register's life
//! (propose, advance, a new view).

use crate::auth::{Verifier, VoteSigner};
use crate::changelog::ChangeLog;
use crate::hook::{HookError, ValidationHook};
use crate::state::{Ballot, Certified, Piece, RegisterState};
use crate::types::{Key, MemberIndex, Round, Value, ValueHash, View};
use crate::vote::{vote_message, Equivocation, SignedVote, VoteKind, VoteSubject};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

mod decide;
mod merge;

pub use decide::patience;
use decide::{Certify, Plan};

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
    /// Vote slots the receiver may lack (never a [`Ballot::Covered`] slot: its signature travels
    /// in `pieces`).
    pub votes: Vec<WireBallot>,
    /// Partial aggregates the receiver may lack (docs/AGGREGATION.md).
    pub pieces: Vec<Piece>,
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
                for (member, &ballot) in ballots {
                    if ballot.travels_in_pieces() {
                        continue;
                    }
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
            pieces: state.pieces.clone(),
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
    /// The pieces whose aggregate we checked, by group and signature bytes.
    verified_pieces: BTreeSet<PieceId>,
    strict: bool,
    /// A held piece failed a check during a merge (it stood in the way of a conflicting vote):
    /// the next [`Register::advance`] runs deferred verification at once, so the bad piece and
    /// the slots only it filled go before they hide anything else.
    recheck: bool,
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

/// Names one piece: its group, its signature and its signers. The signers are part of the name:
/// a forged piece may carry the signature bytes of a genuine one with more signers claimed.
type PieceId = (
    VoteKind,
    Round,
    ValueHash,
    beaufort_crypto::bls::Signature,
    beaufort_crypto::weights::SignerWeights,
);

fn piece_id(piece: &Piece) -> PieceId {
    (
        piece.kind,
        piece.round,
        piece.value,
        piece.aggregate.signature,
        piece.aggregate.weights.clone(),
    )
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

    /// Takes every step the protocol allows from the current state: forms a certificate and
    /// accepts, or casts our next PRE-COMMIT or COMMIT vote. Signatures are verified in one batch
    /// just before each decision.
    pub fn advance(&mut self, ctx: &Context<'_>) -> AdvanceOutcome {
        let mut outcome = AdvanceOutcome::default();
        if std::mem::take(&mut self.recheck) {
            let _all_valid = self.verify_unverified(ctx, &mut outcome);
        }
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

    fn jump_to(&mut self, cert: Certified) {
        self.state = RegisterState {
            view: cert.view + 1,
            accepted: Some(cert),
            ..RegisterState::default()
        };
        self.verified.clear();
        self.verified_pieces.clear();
        self.recheck = false;
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
            slots.extend(ballots.keys().map(|member| (kind, round, member)));
        }
    }
    slots
}

//! Deciding what to vote: the round-0 winner, locks, the wait on split rounds, certificates and
//! the deferred batch verification before each decision (docs/PROTOCOL.md §6, §9).

use super::{piece_id, AdvanceOutcome, Context, Register};
use crate::auth::{PieceCheck, SignatureCheck};
use crate::state::{Ballot, Certified};
use crate::types::{MemberIndex, Round, ValueHash, MAX_ROUND};
use crate::vote::{SignedVote, VoteKind, VoteSubject};
use std::collections::{BTreeMap, BTreeSet};

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

/// A planned own vote.
pub(super) struct Plan {
    pub(super) kind: VoteKind,
    pub(super) round: Round,
    pub(super) value: ValueHash,
}

/// What a look for a certificate found.
pub(super) enum Certify {
    Decided(Certified),
    Retry,
    Nothing,
}

impl Register {
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
                if !ctx.excluded.contains(&member) && self.state.values.contains_key(&value) {
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
    pub(super) fn note_split(&mut self, ctx: &Context<'_>) {
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
    pub(super) fn plan(&self, ctx: &Context<'_>) -> Option<Plan> {
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

    pub(super) fn try_certify(
        &mut self,
        ctx: &Context<'_>,
        outcome: &mut AdvanceOutcome,
    ) -> Certify {
        let q = ctx.quorum();
        let mut candidate = None;
        'search: for (&round, ballots) in self.state.commits.iter().rev() {
            if ballots.len() < q {
                continue;
            }
            for value in self.commit_values(round) {
                let signed_by = |ballot: &Ballot| {
                    ballot.signature_for(value).is_some() || *ballot == Ballot::Covered { value }
                };
                if ballots.values().filter(|b| signed_by(b)).count() < q {
                    continue;
                }
                let members: Vec<MemberIndex> = ballots
                    .iter()
                    .filter(|(_, b)| signed_by(b))
                    .map(|(m, _)| m)
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
        // Single shares of members no piece holds, and every piece: a certificate with every
        // count at 1 unless pieces overlapped.
        let pieces: Vec<_> = self
            .state
            .pieces_of(VoteKind::Commit, round, value)
            .map(|piece| &piece.aggregate)
            .collect();
        let shares: Vec<_> = members
            .iter()
            .filter(|m| !pieces.iter().any(|piece| piece.weights.contains(**m)))
            .filter_map(|m| {
                let ballot = self.state.ballot(VoteKind::Commit, round, *m)?;
                ballot.signature_for(value).map(|signature| (*m, signature))
            })
            .collect();
        let Some(qc) = ctx
            .verifier
            .certify(&ctx.message(&subject), &shares, &pieces)
        else {
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
                for (member, ballot) in ballots {
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

    /// Verifies every not-yet-verified vote and piece, each kind in one batch; removes invalid
    /// ones (a piece with the covered slots only it filled) and switches to verify-on-arrival.
    /// Returns true if all were valid.
    pub(super) fn verify_unverified(
        &mut self,
        ctx: &Context<'_>,
        outcome: &mut AdvanceOutcome,
    ) -> bool {
        let pieces_valid = self.verify_unverified_pieces(ctx, outcome);
        let votes_valid = self.verify_unverified_votes(ctx, outcome);
        pieces_valid && votes_valid
    }

    /// The pieces half of [`Register::verify_unverified`].
    fn verify_unverified_pieces(
        &mut self,
        ctx: &Context<'_>,
        outcome: &mut AdvanceOutcome,
    ) -> bool {
        let pending: Vec<usize> = (0..self.state.pieces.len())
            .filter(|&i| {
                !self
                    .verified_pieces
                    .contains(&piece_id(&self.state.pieces[i]))
            })
            .collect();
        if pending.is_empty() {
            return true;
        }
        let checks: Vec<PieceCheck<'_>> = pending
            .iter()
            .map(|&i| {
                let piece = &self.state.pieces[i];
                PieceCheck {
                    message: ctx.message(&self.subject_of(piece)),
                    piece: &piece.aggregate,
                }
            })
            .collect();
        let bad: BTreeSet<usize> = ctx.verifier.verify_pieces(&checks).into_iter().collect();
        for (n, &i) in pending.iter().enumerate() {
            if !bad.contains(&n) {
                let id = piece_id(&self.state.pieces[i]);
                self.verified_pieces.insert(id);
            }
        }
        if bad.is_empty() {
            return true;
        }
        let mut index = 0;
        self.state.pieces.retain(|_| {
            let doomed = pending
                .iter()
                .position(|&i| i == index)
                .is_some_and(|n| bad.contains(&n));
            index += 1;
            !doomed
        });
        self.state.tidy_pieces();
        outcome.invalid_signatures += bad.len();
        self.strict = true;
        self.prune_unjustified(ctx.quorum(), ctx.me());
        false
    }

    /// The single-vote half of [`Register::verify_unverified`].
    fn verify_unverified_votes(&mut self, ctx: &Context<'_>, outcome: &mut AdvanceOutcome) -> bool {
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
                    for (member, ballot) in ballots {
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
        self.state.tidy_pieces();
    }
}

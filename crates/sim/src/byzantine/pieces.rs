//! A Byzantine member that speaks in pieces (docs/PROTOCOL.md §7.1): the single votes it would
//! relay leave combined, and each combination is one of the attacks a piece allows — a poisoned
//! share inside an otherwise good aggregate, a signer claimed without its share, overlapping and
//! repeated pieces, or its own vote for another value hidden among honest votes (an equivocation
//! inside an aggregate). Honest members must catch every bad piece, keep the honest votes the
//! good ones carry, and never blame each other.

use super::Adversary;
use beaufort_core::register::{KeyUpdate, WireBallot};
use beaufort_core::replica::Replica;
use beaufort_core::state::{Ballot, Piece};
use beaufort_core::types::{Round, ValueHash};
use beaufort_core::vote::VoteKind;
use beaufort_crypto::aggregate::Aggregate;
use beaufort_crypto::weights::SignerWeights;
use rand::Rng;
use std::collections::BTreeMap;

/// One (kind, round, value) group of an update.
type Group = (VoteKind, Round, ValueHash);

impl Adversary {
    /// Replaces the single votes of `update` by pieces, one per group, each attacked at random.
    pub(super) fn send_pieces(
        &mut self,
        replica: &Replica,
        update: &mut KeyUpdate,
        rng: &mut impl Rng,
    ) {
        let mut groups: BTreeMap<Group, Vec<WireBallot>> = BTreeMap::new();
        let mut kept = Vec::new();
        for wire in update.votes.drain(..) {
            match wire.ballot {
                Ballot::Vote { value, .. } => groups
                    .entry((wire.kind, wire.round, value))
                    .or_default()
                    .push(wire),
                _ => kept.push(wire),
            }
        }
        update.votes = kept;
        for (group, votes) in groups {
            let Some(piece) = self.combine(group, &votes) else {
                update.votes.extend(votes);
                continue;
            };
            self.stats.pieces += 1;
            match rng.gen_range(0..5) {
                0 => update.pieces.push(piece),
                1 => {
                    update.pieces.push(self.poisoned(update, piece));
                    self.stats.bad_pieces += 1;
                }
                2 => {
                    update.pieces.push(self.claiming(piece, rng));
                    self.stats.bad_pieces += 1;
                }
                3 => {
                    // Overlapping and repeated: the piece, a piece of its first half, the piece
                    // again.
                    let half = &votes[..votes.len().div_ceil(2)];
                    if let Some(part) = self.combine(group, half) {
                        update.pieces.push(part);
                    }
                    update.pieces.push(piece.clone());
                    update.pieces.push(piece);
                }
                _ => update
                    .pieces
                    .push(self.hiding_own_vote(replica, update, piece)),
            }
        }
    }

    /// The piece of `votes` (all of `group`), or `None` if they do not combine.
    fn combine(&self, group: Group, votes: &[WireBallot]) -> Option<Piece> {
        let (kind, round, value) = group;
        let mut sum: Option<Aggregate> = None;
        for wire in votes {
            let Ballot::Vote { signature, .. } = wire.ballot else {
                continue;
            };
            let single = Aggregate::single(self.members, wire.member, signature).ok()?;
            match sum.as_mut() {
                Some(sum) => {
                    if !self.verifier.combine(sum, &single) {
                        return None;
                    }
                }
                None => sum = Some(single),
            }
        }
        Some(Piece {
            kind,
            round,
            value,
            aggregate: sum?,
        })
    }

    /// `piece` with our own share for another value added as if it were for the piece's value:
    /// one bad share inside a good aggregate.
    fn poisoned(&mut self, update: &KeyUpdate, mut piece: Piece) -> Piece {
        let other = self.invented(update.view).hash();
        let Ballot::Vote { signature, .. } =
            self.sign(&update.key, update.view, piece.round, piece.kind, other)
        else {
            return piece;
        };
        if let Ok(share) = Aggregate::single(self.members, self.member, signature) {
            let _ = self.verifier.combine(&mut piece.aggregate, &share);
        }
        piece
    }

    /// `piece` claiming one more member than it holds the share of.
    fn claiming(&self, mut piece: Piece, rng: &mut impl Rng) -> Piece {
        let victim = self.other_member(rng);
        if let Ok(extra) = SignerWeights::single(self.members, victim) {
            let _ = piece.aggregate.weights.add(&extra);
        }
        piece
    }

    /// `piece` with our own, validly signed vote for its value added, whatever our replica voted
    /// in that slot: when that was another value, an equivocation hidden inside an aggregate.
    fn hiding_own_vote(
        &mut self,
        replica: &Replica,
        update: &KeyUpdate,
        mut piece: Piece,
    ) -> Piece {
        if piece.aggregate.weights.contains(self.member) {
            return piece;
        }
        let own = replica
            .state(&update.key)
            .filter(|s| s.view == update.view)
            .and_then(|s| s.ballot(piece.kind, piece.round, self.member).copied())
            .and_then(|b| b.vote_value());
        if own.is_some_and(|value| value != piece.value) {
            self.stats.equivocating_votes += 1;
        }
        let Ballot::Vote { signature, .. } = self.sign(
            &update.key,
            update.view,
            piece.round,
            piece.kind,
            piece.value,
        ) else {
            return piece;
        };
        if let Ok(share) = Aggregate::single(self.members, self.member, signature) {
            let _ = self.verifier.combine(&mut piece.aggregate, &share);
        }
        piece
    }
}

//! What one link carries: our record of what a neighbour holds for each key (slots and bodies
//! sent either way), and the delta that pushes it only what it may lack (docs/PROTOCOL.md §11.1).

use crate::register::{KeyUpdate, Register, UpdateCertificate, WireBallot};
use crate::relay::RelayTrees;
use crate::state::{Ballot, RegisterState};
use crate::types::{Key, MemberIndex, Round, Value, ValueHash, View, RETAINED_ROUNDS};
use crate::vote::VoteKind;
use std::collections::BTreeSet;

/// What we believe a neighbour holds for one key: what it sent us and what we sent it.
#[derive(Clone, Debug, Default)]
pub(super) struct Known {
    pub(super) view: Option<View>,
    /// The peer is known to hold `view` with the certificate that opened it: it sent us an update
    /// in that view, or we sent it our whole state. Until then it gets the whole state; after,
    /// only deltas, so a decision's certificate crosses each link once.
    pub(super) in_view: bool,
    /// How far into the register's change logs (slots, bodies) we have looked for this peer.
    pub(super) seen: (usize, usize),
    pub(super) slots: SlotSet,
    pub(super) values: BTreeSet<ValueHash>,
    /// Votes the relay trees held back from this peer since the last [`crate::replica::Replica::second_chance`].
    pub(super) held_recently: Vec<SentSlot>,
    /// Votes held back before that call; the next call makes them due.
    pub(super) held_earlier: Vec<SentSlot>,
    /// Held-back votes whose grace period is over, offered by the next flush.
    pub(super) retry: Vec<SentSlot>,
}

impl Known {
    /// Forgets slots and bodies of rounds the register no longer holds, once the record outgrows
    /// what a state can hold: a view driven through many rounds, or a peer sending votes for
    /// rounds we drop, must not grow the record without bound. Forgetting only costs a resend.
    pub(super) fn forget_dropped(&mut self, state: &RegisterState) {
        if self.slots.rounds.len() > 4 * RETAINED_ROUNDS {
            self.slots
                .rounds
                .retain(|((kind, round, _), _)| state.ballots(*kind).contains_key(round));
        }
        if self.values.len() > 2 * state.values.len() + 64 {
            self.values.retain(|hash| state.values.contains_key(hash));
        }
    }
}

/// A set of vote slots (kind, round, member, whether it is an equivocation proof), one bitmap per
/// (kind, round, proof): the flush asks it about every slot it might send to every neighbour.
#[derive(Clone, Debug, Default)]
pub(super) struct SlotSet {
    pub(super) rounds: Vec<((VoteKind, Round, bool), Vec<u64>)>,
}

impl SlotSet {
    fn bits(&self, (kind, round, member, proof): SentSlot) -> Option<(&Vec<u64>, usize)> {
        let (_, bits) = self
            .rounds
            .iter()
            .find(|(group, _)| *group == (kind, round, proof))?;
        Some((bits, usize::from(member)))
    }

    pub(super) fn contains(&self, slot: &SentSlot) -> bool {
        self.bits(*slot)
            .is_some_and(|(bits, m)| bits.get(m / 64).is_some_and(|w| w & (1 << (m % 64)) != 0))
    }

    /// Adds a slot.
    pub(super) fn insert(&mut self, (kind, round, member, proof): SentSlot) {
        let group = (kind, round, proof);
        let index = match self.rounds.iter().position(|(g, _)| *g == group) {
            Some(index) => index,
            None => {
                self.rounds.push((group, Vec::new()));
                self.rounds.len() - 1
            }
        };
        let bits = &mut self.rounds[index].1;
        let m = usize::from(member);
        if bits.len() <= m / 64 {
            bits.resize(m / 64 + 1, 0);
        }
        bits[m / 64] |= 1 << (m % 64);
    }
}

/// A vote slot as a link's record ([`SlotSet`]) keys it: the register's slot name plus whether
/// its content is an equivocation proof (a proof crosses a link even after the vote it replaced).
pub(super) type SentSlot = (VoteKind, Round, MemberIndex, bool);

/// One (kind, round, value) of a view: what a quorum counts.
type VoteGroup = (VoteKind, Round, ValueHash);

/// Which vote groups a peer is known to hold a quorum of, during one [`delta`]. Once it has a
/// quorum of PRE-COMMITs for a value (counted from what it sent us and what we sent it, or shown
/// by its own COMMIT in that round, which needs one) or of COMMITs, more single votes of that
/// group give it nothing: it can already vote or decide, and a quorum value is unique per round.
/// The eager push leaves them out; anti-entropy still repairs any difference that matters.
#[derive(Default)]
struct QuorumKnowledge {
    /// (group, how many of its votes the peer holds); a delta touches few groups.
    counts: Vec<(VoteGroup, usize)>,
}

impl QuorumKnowledge {
    fn has_quorum(
        &mut self,
        state: &RegisterState,
        known: &Known,
        group: VoteGroup,
        peer: MemberIndex,
        quorum: usize,
    ) -> bool {
        let (kind, round, value) = group;
        if kind == VoteKind::PreCommit
            && known
                .slots
                .contains(&(VoteKind::Commit, round, peer, false))
        {
            return true;
        }
        let count = match self.counts.iter().find(|(g, _)| *g == group) {
            Some((_, count)) => *count,
            None => {
                let count = state.ballots(kind).get(&round).map_or(0, |ballots| {
                    ballots
                        .iter()
                        .filter(|(member, ballot)| {
                            ballot.supports(value)
                                && known
                                    .slots
                                    .contains(&(kind, round, **member, ballot.is_proof()))
                        })
                        .count()
                });
                self.counts.push((group, count));
                count
            }
        };
        count >= quorum
    }

    fn count_sent(&mut self, group: VoteGroup) {
        if let Some((_, count)) = self.counts.iter_mut().find(|(g, _)| *g == group) {
            *count += 1;
        }
    }
}

pub(super) fn sent_slot(w: &WireBallot) -> SentSlot {
    (w.kind, w.round, w.member, w.ballot.is_proof())
}

/// What `register` has that a peer believed to hold `known` may lack; updates `known` as sent.
/// A peer not known to be in our view gets the certificate and every slot and body of the view;
/// otherwise only the slots and bodies logged since we last looked are considered, so a flush
/// costs what changed, plus the held-back votes whose grace period is over. `relay` holds back
/// single votes whose origin's tree does not go from us to this peer. With `whole` (the peer
/// asked, or repair found it different) nothing is left out and the update is marked complete.
pub(super) fn delta(
    key: &Key,
    register: &Register,
    known: &mut Known,
    peer: MemberIndex,
    quorum: usize,
    relay: Option<&RelayTrees>,
    whole: bool,
) -> Option<KeyUpdate> {
    let state = &register.state;
    // The link carried the decided value in the view it closed: the certificate can name it.
    let peer_has_decided_body = state.accepted.as_ref().is_some_and(|cert| {
        known.view == Some(cert.view) && known.values.contains(&cert.value.hash())
    });
    match known.view {
        Some(view) if view > state.view => return None,
        Some(view) if view == state.view => {}
        _ => {
            *known = Known {
                view: Some(state.view),
                ..Known::default()
            }
        }
    }
    if whole {
        *known = Known {
            view: Some(state.view),
            ..Known::default()
        };
    }
    known.forget_dropped(state);
    let fresh = !known.in_view;
    known.in_view = true;
    let (slot_from, value_from) = if fresh { (0, 0) } else { known.seen };
    known.seen = register.log_len();
    let mut votes = Vec::new();
    // Indices into the state's pieces, in the order they are first needed.
    let mut pieces: Vec<usize> = Vec::new();
    let mut saturated = QuorumKnowledge::default();
    let mut offer = |kind, round, member, ballot: Ballot, known: &mut Known, due: bool| {
        let wire = WireBallot {
            kind,
            round,
            member,
            ballot,
        };
        let id = sent_slot(&wire);
        if known.slots.contains(&id) {
            return;
        }
        // A covered vote travels inside the pieces that hold it, which then cover their other
        // members for this peer too; a conflicted slot travels as its two proof pieces.
        if ballot.travels_in_pieces() {
            if let Ballot::Covered { value } = ballot {
                let group = (kind, round, value);
                if !whole && saturated.has_quorum(state, known, group, peer, quorum) {
                    return;
                }
            }
            let values: Vec<ValueHash> = ballot.values().collect();
            for (i, piece) in state.pieces.iter().enumerate() {
                let holds = piece.kind == kind
                    && piece.round == round
                    && values.contains(&piece.value)
                    && piece.aggregate.weights.contains(member);
                if !holds || pieces.contains(&i) {
                    continue;
                }
                pieces.push(i);
                for (covered, _) in piece.aggregate.weights.members() {
                    known.slots.insert((kind, round, covered, false));
                    saturated.count_sent((kind, round, piece.value));
                }
            }
            known.slots.insert(id);
            return;
        }
        // A complete state must hold everything (the peer checks that it justifies itself).
        // Equivocation proofs always travel at once.
        if let (false, Ballot::Vote { value, .. }) = (whole, ballot) {
            let group = (kind, round, value);
            if saturated.has_quorum(state, known, group, peer, quorum) {
                return;
            }
            if !due && relay.is_some_and(|trees| !trees.relays(member, peer)) {
                known.held_recently.push(id);
                return;
            }
            saturated.count_sent(group);
        }
        known.slots.insert(id);
        votes.push(wire);
    };
    if fresh {
        for kind in [VoteKind::PreCommit, VoteKind::Commit] {
            for (&round, ballots) in state.ballots(kind) {
                for (&member, &ballot) in ballots {
                    offer(kind, round, member, ballot, known, false);
                }
            }
        }
    } else {
        for &(kind, round, member) in register.slots_since(slot_from) {
            if let Some(&ballot) = state.ballot(kind, round, member) {
                offer(kind, round, member, ballot, known, false);
            }
        }
    }
    for (kind, round, member, _) in std::mem::take(&mut known.retry) {
        if let Some(&ballot) = state.ballot(kind, round, member) {
            offer(kind, round, member, ballot, known, true);
        }
    }
    let hashes: Vec<ValueHash> = if fresh {
        state.values.keys().copied().collect()
    } else {
        register.values_since(value_from).to_vec()
    };
    let values: Vec<Value> = hashes
        .into_iter()
        .filter(|hash| known.values.insert(*hash))
        .filter_map(|hash| state.values.get(&hash).cloned())
        .collect();
    let pieces: Vec<_> = pieces
        .into_iter()
        .map(|i| state.pieces[i].clone())
        .collect();
    let empty = votes.is_empty() && values.is_empty() && pieces.is_empty();
    if empty && !(fresh && state.accepted.is_some()) {
        return None;
    }
    // Every value named here has now crossed the link (above, or earlier in this view), so short
    // names resolve at the peer. A strict member's updates keep whole names: it vouches for
    // every signature, so what it names must be unambiguous.
    let short_refs = !whole
        && !register.is_strict()
        && votes.iter().all(|w| match w.ballot {
            Ballot::Vote { value, .. } | Ballot::Covered { value } => known.values.contains(&value),
            Ballot::Equivocated { .. } | Ballot::Conflicted { .. } => true,
        })
        && pieces
            .iter()
            .all(|piece| known.values.contains(&piece.value));
    Some(KeyUpdate {
        key: key.clone(),
        view: state.view,
        accepted: match &state.accepted {
            Some(cert) if fresh && peer_has_decided_body && !whole => {
                Some(UpdateCertificate::Named {
                    view: cert.view,
                    round: cert.round,
                    value: cert.value.hash(),
                    qc: cert.qc.clone(),
                })
            }
            Some(cert) if fresh => Some(UpdateCertificate::Whole(cert.clone())),
            _ => None,
        },
        values,
        votes,
        pieces,
        complete: whole,
        short_refs,
    })
}

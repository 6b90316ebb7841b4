//! What one link carries: our record of what a neighbour holds for each key (slots and bodies
//! sent either way), and the delta that pushes it only what it may lack (docs/PROTOCOL.md §11.1).

use super::bodies::Relayed;
use super::tree_push::{combine, holds_commit_quorum, may_go, Push};
use crate::register::{KeyUpdate, Register, UpdateCertificate, WireBallot};
use crate::state::{Ballot, Piece, RegisterState};
use crate::types::{Key, MemberIndex, Round, Value, ValueHash, View, MAX_ROUND, RETAINED_ROUNDS};
use crate::vote::VoteKind;
use std::collections::{BTreeMap, BTreeSet};

/// What we believe a neighbour holds for one key: what it sent us and what we sent it. Most
/// keys on most links are quiet (decided, nothing held back), and a record is kept for every
/// key ever written on every link, so what only an open view needs lives in a [`Traffic`]
/// allocated on first write and dropped once empty again ([`Known::compact`]): at n = 100 the
/// records were most of the simulator's memory and grew with the store.
#[derive(Clone, Debug, Default)]
pub(super) struct Known {
    pub(super) view: Option<View>,
    /// The peer is known to hold `view` with the certificate that opened it: it sent us an update
    /// in that view, or we sent it our whole state. Until then it gets the whole state; after,
    /// only deltas, so a decision's certificate crosses each link once.
    pub(super) in_view: bool,
    /// How far into the register's change logs (slots, bodies) we have looked for this peer.
    pub(super) seen: (usize, usize),
    /// With pieces, when (by the replica's clock) our view opened without a word to this peer
    /// (it was off the key's tree and not known to hold the COMMIT quorum), so only the tree
    /// told it of the decision: if the tree failed it, anti-entropy must not leave the key for
    /// later as one still being synced once a fallback has passed since then (docs/PROTOCOL.md
    /// §11.2.1, "Decisions"). Cleared with the record: a whole state sent, a later view on either
    /// side, a new connection, or the repair itself.
    pub(super) unannounced: Option<u64>,
    /// What crossed the link in `view` and what is held back from it; `None` when empty.
    traffic: Option<Box<Traffic>>,
}

/// The part of a link's record of one key that only a view in progress fills: the slots and
/// bodies that crossed, and the votes held back. Read through [`Known`] (`Deref`); the first
/// write allocates it.
#[derive(Clone, Debug, Default)]
pub(super) struct Traffic {
    pub(super) slots: SlotSet,
    pub(super) values: BTreeSet<ValueHash>,
    /// Bodies the peer evidently holds though none crossed this link: it sent us its own
    /// PRE-COMMIT for them (an honest member votes only for a body it holds). Kept apart from
    /// `values`, which both ends agree on for short names.
    pub(super) holds: BTreeSet<ValueHash>,
    /// Values whose companion single PRE-COMMIT crossed the link either way: the body's relay
    /// tree has passed here (`tree_push::companion`).
    pub(super) relayed: BTreeSet<ValueHash>,
    /// Votes the relay trees held back from this peer since the last [`crate::replica::Replica::second_chance`].
    pub(super) held_recently: Vec<SentSlot>,
    /// Votes held back before that call; the next call makes them due.
    pub(super) held_earlier: Vec<SentSlot>,
    /// Held-back votes whose grace period is over, offered by the next flush.
    pub(super) retry: Vec<SentSlot>,
    /// The (kind, round)s this peer sent us pieces in, in `view`: on a key's tree, a link has
    /// reported once it did (docs/AGGREGATION.md §3.6). Single votes do not count: with pieces
    /// they only travel beside a body.
    pub(super) heard: BTreeSet<(VoteKind, Round)>,
    /// The (kind, round)s whose pieces we have started sending this peer: later arrivals of
    /// them go at once.
    pub(super) opened: BTreeSet<(VoteKind, Round)>,
    /// Votes held back from this peer while pieces gather on the key's tree.
    pub(super) tree_held: HeldSlots,
    /// When (by the replica's clock) `tree_held` goes regardless: the wait for the other tree
    /// links, or the fallback for a peer off the tree.
    pub(super) tree_due: Option<u64>,
}

/// What a record without traffic reads as.
static NO_TRAFFIC: Traffic = Traffic {
    slots: SlotSet { rounds: Vec::new() },
    values: BTreeSet::new(),
    holds: BTreeSet::new(),
    relayed: BTreeSet::new(),
    held_recently: Vec::new(),
    held_earlier: Vec::new(),
    retry: Vec::new(),
    heard: BTreeSet::new(),
    opened: BTreeSet::new(),
    tree_held: HeldSlots {
        ids: SlotSet { rounds: Vec::new() },
    },
    tree_due: None,
};

impl Traffic {
    /// Whether nothing is recorded or held: the record may drop it.
    fn is_empty(&self) -> bool {
        self.slots.rounds.is_empty()
            && self.values.is_empty()
            && self.holds.is_empty()
            && self.relayed.is_empty()
            && self.held_recently.is_empty()
            && self.held_earlier.is_empty()
            && self.retry.is_empty()
            && self.heard.is_empty()
            && self.opened.is_empty()
            && self.tree_held.is_empty()
            && self.tree_due.is_none()
    }
}

impl std::ops::Deref for Known {
    type Target = Traffic;

    fn deref(&self) -> &Traffic {
        self.traffic.as_deref().unwrap_or(&NO_TRAFFIC)
    }
}

impl std::ops::DerefMut for Known {
    fn deref_mut(&mut self) -> &mut Traffic {
        self.traffic.get_or_insert_with(Box::default)
    }
}

impl Known {
    /// A record of a peer in `view`, nothing known of it yet.
    pub(super) fn of_view(view: View) -> Known {
        Known {
            view: Some(view),
            ..Known::default()
        }
    }

    /// Drops the traffic once nothing is recorded or held in it (after a write that may have
    /// allocated it for nothing, or a view that moved on).
    pub(super) fn compact(&mut self) {
        if self.traffic.as_deref().is_some_and(Traffic::is_empty) {
            self.traffic = None;
        }
    }

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
        if self.holds.len() > 2 * state.values.len() + 64 {
            self.holds.retain(|hash| state.values.contains_key(hash));
        }
        if self.relayed.len() > 2 * state.values.len() + 64 {
            self.relayed.retain(|hash| state.values.contains_key(hash));
        }
        let held = |&(kind, round): &(VoteKind, Round)| state.ballots(kind).contains_key(&round);
        if self.heard.len() > 4 * RETAINED_ROUNDS {
            self.heard.retain(held);
        }
        if self.opened.len() > 4 * RETAINED_ROUNDS {
            self.opened.retain(held);
        }
    }

    /// Whether the peer holds this body: it crossed the link, or the peer voted for it.
    pub(super) fn holds_body(&self, hash: &ValueHash) -> bool {
        self.values.contains(hash) || self.holds.contains(hash)
    }

    /// Records what an update from the peer, in the view of this record, shows it holds, so we
    /// never send it back: its slots (those out of range are not recorded, the merge rejects
    /// them, so a hostile update cannot grow the record), the (kind, round)s it reported pieces
    /// in, its bodies, and the bodies it voted for itself (`holds`). `ours` is our state of the
    /// key, which decides which slots a piece carries.
    pub(super) fn record_received(
        &mut self,
        from: MemberIndex,
        update: &KeyUpdate,
        ours: &RegisterState,
        members: usize,
    ) {
        self.in_view = true;
        for w in &update.votes {
            if usize::from(w.member) < members && w.round <= MAX_ROUND {
                self.slots.insert(sent_slot(w));
            }
        }
        for piece in &update.pieces {
            let weights = &piece.aggregate.weights;
            if piece.round <= MAX_ROUND && weights.validate(members).is_ok() {
                for member in carried_slots(ours, piece) {
                    self.slots.insert((piece.kind, piece.round, member, false));
                }
                self.heard_from([(piece.kind, piece.round)]);
            }
        }
        self.values.extend(update.values.iter().map(|v| v.hash()));
        // An honest member PRE-COMMITs only to a body it holds. A short name is of a body that
        // crossed the link already.
        if !update.short_refs {
            let own_votes = update.votes.iter().filter_map(|w| match w.ballot {
                Ballot::Vote { value, .. } if w.member == from && w.kind == VoteKind::PreCommit => {
                    Some(value)
                }
                _ => None,
            });
            let own_pieces = update
                .pieces
                .iter()
                .filter(|p| p.kind == VoteKind::PreCommit && p.aggregate.weights.contains(from))
                .map(|p| p.value);
            self.holds.extend(own_votes.chain(own_pieces));
        }
        self.forget_dropped(ours);
    }

    /// Records the single PRE-COMMITs of an update from the peer (its names resolved): each
    /// carried its body's relay tree past this link.
    pub(super) fn relayed_from(&mut self, update: &KeyUpdate) {
        self.relayed
            .extend(update.votes.iter().filter_map(|w| match w.ballot {
                Ballot::Vote { value, .. } if w.kind == VoteKind::PreCommit => Some(value),
                _ => None,
            }));
    }

    /// The peer sent us pieces of these (kind, round)s.
    pub(super) fn heard_from(&mut self, rounds: impl IntoIterator<Item = (VoteKind, Round)>) {
        self.heard.extend(rounds);
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

    /// Every slot, group by group in the order groups were first inserted, members ascending.
    fn iter(&self) -> impl Iterator<Item = SentSlot> + '_ {
        self.rounds
            .iter()
            .flat_map(|&((kind, round, proof), ref bits)| {
                bits.iter().enumerate().flat_map(move |(word, &w)| {
                    (0..64)
                        .filter(move |bit| w & (1u64 << bit) != 0)
                        .filter_map(move |bit| MemberIndex::try_from(word * 64 + bit).ok())
                        .map(move |member| (kind, round, member, proof))
                })
            })
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

/// Votes held back from one peer, each once, as bitmaps: an off-tree peer has every vote of a
/// key held back from it until the fallback, and at n = 1000 a list of them (8 bytes a slot,
/// for each neighbour and key in flight) took gigabytes where the bitmaps take kilobytes.
#[derive(Clone, Debug, Default)]
pub(super) struct HeldSlots {
    ids: SlotSet,
}

impl HeldSlots {
    /// Holds a slot back (again: holding is idempotent).
    fn hold(&mut self, id: SentSlot) {
        self.ids.insert(id);
    }

    /// Every held slot, by group in the order groups were first held, members ascending; none
    /// is held after.
    fn take(&mut self) -> Vec<SentSlot> {
        let held = std::mem::take(&mut self.ids);
        held.iter().collect()
    }

    /// Whether nothing is held.
    pub(super) fn is_empty(&self) -> bool {
        self.ids.rounds.is_empty()
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
                                    .contains(&(kind, round, *member, ballot.is_proof()))
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

/// The members whose slot a piece carries to a peer, by what `state` (ours) holds in them: a
/// member whose slot holds a vote for another value is not carried, though the piece holds a
/// vote of theirs. That slot is an attestation of its own (the other half of an equivocation,
/// or what split a round) and must still cross: recorded as crossed, it was left out of whole
/// states, whose later votes it justified, and their sender was blamed (1000-seed check, n = 10
/// seed 813: a round-1 PRE-COMMIT sent without the round-0 piece that split its round).
fn carried_slots<'a>(
    state: &'a RegisterState,
    piece: &'a Piece,
) -> impl Iterator<Item = MemberIndex> + 'a {
    piece
        .aggregate
        .weights
        .members()
        .map(|(member, _)| member)
        .filter(move |&member| {
            state
                .ballot(piece.kind, piece.round, member)
                .is_none_or(|ballot| ballot.supports(piece.value))
        })
}

pub(super) fn sent_slot(w: &WireBallot) -> SentSlot {
    (w.kind, w.round, w.member, w.ballot.is_proof())
}

/// What `register` has that a peer believed to hold `known` may lack; updates `known` as sent.
/// A peer not known to be in our view gets the certificate and every slot and body of the view;
/// otherwise only the slots and bodies logged since we last looked are considered, so a flush
/// costs what changed, plus the held-back votes whose grace period is over. `relay` holds back
/// single votes whose origin's tree does not go from us to this peer; with pieces, votes are
/// combined per group and held back until the key's tree says they may go. With `whole` (the
/// peer asked, or repair found it different) nothing is left out and the update is marked
/// complete.
pub(super) fn delta(
    key: &Key,
    register: &Register,
    known: &mut Known,
    peer: MemberIndex,
    push: &Push<'_>,
    whole: bool,
) -> Option<KeyUpdate> {
    let (quorum, relay) = (push.quorum, push.relay);
    let state = &register.state;
    // The link carried the decided value in the view it closed: the certificate can name it.
    let peer_has_decided_body = state
        .accepted
        .as_ref()
        .is_some_and(|cert| known.view == Some(cert.view) && known.holds_body(&cert.value.hash()));
    // With pieces the key's tree brings every member the decision's COMMIT quorum, so a new
    // view is announced on its own (its certificate alone) only to a tree link that may still
    // lack that quorum; the others get the certificate with our first vote or body of the view,
    // and anti-entropy repairs a member the tree failed.
    let mut announce = true;
    match known.view {
        Some(view) if view > state.view => return None,
        Some(view) if view == state.view => {}
        previous => {
            let decided = holds_commit_quorum(state, known, quorum);
            announce = push.pieces.is_none()
                || previous.is_none()
                || !(known.opened.is_empty() && known.heard.is_empty() || decided);
            *known = Known {
                view: Some(state.view),
                unannounced: (!announce && !decided)
                    .then(|| push.pieces.as_ref().map_or(0, |p| p.now)),
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
    // With pieces: the members of each group to send, combined at the end.
    let mut bundle: BTreeMap<(VoteKind, Round, ValueHash), Vec<MemberIndex>> = BTreeMap::new();
    let mut saturated = QuorumKnowledge::default();
    // The (kind, round)s the key's tree holds back from this peer, as found during this delta:
    // nothing else in a delta reopens one but a send in it, so each is asked once, not once per
    // held slot at every flush.
    let mut closed: Vec<(VoteKind, Round)> = Vec::new();
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
        // A whole state (asked for, or repair) sends every part as it is held, never summed: a
        // sum that takes in an unchecked share that turns out bad is dropped whole by its
        // receiver, honest votes in it included, and the whole state is how a member that lost
        // votes that way gets them back (1000-seed datagram check with pieces, n = 4 seed 832:
        // two members summed a Byzantine member's bad share with their own round-0 votes, and the
        // third never saw the split that let round 1 exist).
        if let (Some(pieces), Some(value), false) = (&push.pieces, ballot.vote_value(), whole) {
            if saturated.has_quorum(state, known, (kind, round, value), peer, quorum) {
                return;
            }
            let was_closed = closed.contains(&(kind, round));
            if !due && (was_closed || !may_go(pieces, state, known, peer, (kind, round), quorum)) {
                if !was_closed {
                    closed.push((kind, round));
                }
                known.tree_held.hold(id);
                // Only the way up waits a fixed time for what the children bring. A child gets
                // what the rest of the tree reports, which comes back down from the root, or a
                // quorum (`may_go`): it used to be sent our partial sum once the wait was up, and
                // the rest in one more piece per arrival, which doubled the pieces sent down.
                // Bounded like a peer off the tree, for a parent that withholds.
                let wait = match pieces.tree {
                    Some(tree) if tree.links.parent == Some(peer) => pieces.wait,
                    Some(_) => pieces.fallback,
                    None => 0,
                };
                let due_at = pieces.now.saturating_add(wait);
                known.tree_due = Some(known.tree_due.map_or(due_at, |d| d.min(due_at)));
                return;
            }
            known.opened.insert((kind, round));
            closed.retain(|&group| group != (kind, round));
            known.slots.insert(id);
            saturated.count_sent((kind, round, value));
            bundle.entry((kind, round, value)).or_default().push(member);
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
                // In a whole state every slot goes as it is held: a member whose single vote
                // we hold gets it sent on its own too, not only inside this piece, which a bad
                // share in it may sink (1000-seed check with pieces, n = 4 seed 862).
                if whole {
                    continue;
                }
                for covered in carried_slots(state, piece) {
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
                for (member, &ballot) in ballots {
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
    // Votes held for the key's tree: offered again, and sent regardless once their time is up.
    let released = push
        .pieces
        .as_ref()
        .is_some_and(|p| known.tree_due.is_some_and(|due| due <= p.now));
    if released {
        known.tree_due = None;
    }
    // A peer off the key's tree gets nothing before its fallback time: offering it the held
    // votes again would only hold them again (what it meanwhile got some other way is left
    // out when they are released).
    let off_tree = push
        .pieces
        .as_ref()
        .and_then(|p| p.tree)
        .is_some_and(|tree| !tree.links.contains(peer));
    if released || !off_tree {
        for (kind, round, member, _) in known.tree_held.take() {
            if let Some(&ballot) = state.ballot(kind, round, member) {
                offer(kind, round, member, ballot, known, released);
            }
        }
    }
    if known.tree_held.is_empty() {
        known.tree_due = None;
    }
    let mut hashes: Vec<ValueHash> = if fresh {
        state.values.keys().copied().collect()
    } else {
        register.values_since(value_from).to_vec()
    };
    if let (Some(pieces), false) = (&push.pieces, fresh) {
        // Another member's single PRE-COMMIT held since we last looked (it may come after its
        // body, which came beside a piece) takes the body on along that member's relay tree.
        for &(kind, round, member) in register.slots_since(slot_from) {
            if let (VoteKind::PreCommit, Some(Ballot::Vote { value, .. })) =
                (kind, state.ballot(kind, round, member))
            {
                if member != pieces.me && !hashes.contains(value) {
                    hashes.push(*value);
                }
            }
        }
    }
    hashes.retain(|hash| state.values.contains_key(hash));
    let hashes: Vec<ValueHash> = match (&push.pieces, whole) {
        (Some(pieces), false) => {
            let relayed = Relayed {
                state,
                pieces,
                relay,
                peer,
                released,
            };
            let named = bundle
                .keys()
                .filter(|&&(kind, _, _)| kind == VoteKind::PreCommit)
                .map(|&(_, _, value)| value);
            relayed.bodies(known, hashes, named, &mut votes)
        }
        _ => hashes
            .into_iter()
            .filter(|hash| !known.values.contains(hash))
            .collect(),
    };
    known.values.extend(hashes.iter().copied());
    let values: Vec<Value> = hashes
        .into_iter()
        .filter_map(|hash| state.values.get(&hash).cloned())
        .collect();
    let mut pieces: Vec<Piece> = pieces
        .into_iter()
        .map(|i| state.pieces[i].clone())
        .collect();
    if let Some(push) = &push.pieces {
        for ((kind, round, value), members) in bundle {
            for piece in combine(push.verifier, state, (kind, round, value), &members) {
                for covered in carried_slots(state, &piece) {
                    known.slots.insert((kind, round, covered, false));
                }
                pieces.push(piece);
            }
        }
    }
    let empty = votes.is_empty() && values.is_empty() && pieces.is_empty();
    if empty && fresh && !announce && !whole {
        known.in_view = false;
        return None;
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A quiet key's record is a few words: its traffic is allocated by the first write and
    /// dropped once empty again, and without it the record reads as empty.
    #[test]
    fn a_record_keeps_its_traffic_only_while_something_is_in_it() {
        assert!(
            std::mem::size_of::<Known>() <= 72,
            "what only an open view needs belongs in Traffic"
        );
        let mut known = Known::of_view(3);
        assert!(known.traffic.is_none());
        assert!(
            known.slots.rounds.is_empty() && known.heard.is_empty() && known.tree_held.is_empty()
        );
        known.heard.insert((VoteKind::PreCommit, 0));
        assert!(known.traffic.is_some(), "the first write allocates it");
        known.compact();
        assert!(known.traffic.is_some(), "kept while something is in it");
        assert!(known.heard.contains(&(VoteKind::PreCommit, 0)));
        known.heard.clear();
        known.compact();
        assert!(known.traffic.is_none(), "dropped once empty");
        assert_eq!(known.view, Some(3), "the record itself stays");
    }

    /// A slot held again (a flush that finds the peer's view unannounced offers everything
    /// anew) is held once; taking empties the set, in group order with members ascending.
    #[test]
    fn held_slots_hold_each_slot_once_and_give_them_back_in_order() {
        let mut held = HeldSlots::default();
        assert!(held.is_empty());
        for _ in 0..3 {
            for member in [900, 3, 64, 0] {
                held.hold((VoteKind::PreCommit, 0, member, false));
            }
            held.hold((VoteKind::Commit, 0, 5, false));
        }
        assert!(!held.is_empty());
        assert_eq!(
            held.take(),
            vec![
                (VoteKind::PreCommit, 0, 0, false),
                (VoteKind::PreCommit, 0, 3, false),
                (VoteKind::PreCommit, 0, 64, false),
                (VoteKind::PreCommit, 0, 900, false),
                (VoteKind::Commit, 0, 5, false),
            ]
        );
        assert!(held.is_empty());
        assert!(held.take().is_empty());
    }
}

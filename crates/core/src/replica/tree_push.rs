//! How votes leave when they travel as pieces (docs/AGGREGATION.md §3.6–3.8): one tree per key
//! and view, the wait for the other tree links before telling one what we hold, the fallback to
//! neighbours off the tree, and the sum of what goes into one piece. [`super::link::delta`] asks
//! these questions for every slot it offers.

use super::link::Known;
use crate::auth::Verifier;
use crate::register::WireBallot;
use crate::relay::{RelayTrees, TreeLinks};
use crate::state::{Ballot, Piece, RegisterState};
use crate::types::{MemberIndex, Round, ValueHash};
use crate::vote::VoteKind;
use beaufort_crypto::aggregate::Aggregate;
use std::collections::{BTreeMap, BTreeSet};

/// How votes leave in one flush: the quorum, the per-origin relay trees for single votes, and,
/// when votes travel as pieces, the key's tree.
pub(super) struct Push<'a> {
    pub quorum: usize,
    pub relay: Option<&'a RelayTrees>,
    pub pieces: Option<PiecePush<'a>>,
}

/// Votes travel combined into pieces (docs/AGGREGATION.md §3.6–3.8).
pub(super) struct PiecePush<'a> {
    pub verifier: &'a dyn Verifier,
    pub me: MemberIndex,
    /// The replica's clock.
    pub now: u64,
    /// How long we wait for the other tree links before telling one what we hold.
    pub wait: u64,
    /// How long a peer off the key's tree waits for what the tree should have brought it.
    pub fallback: u64,
    /// The key's tree in our view, when we know our place in it; without it pieces go to every
    /// neighbour at once.
    pub tree: Option<&'a KeyTree>,
}

/// One key's tree as a flush sees it: our links, and what each has reported.
#[derive(Debug)]
pub(super) struct KeyTree {
    pub links: TreeLinks,
    pub heard: BTreeMap<MemberIndex, BTreeSet<(VoteKind, Round)>>,
}

impl KeyTree {
    /// Whether every tree link but `peer` has reported in (kind, round): then what we hold is
    /// all `peer` can learn from our side of the tree.
    fn others_reported(&self, peer: MemberIndex, group: (VoteKind, Round)) -> bool {
        self.links
            .others(peer)
            .all(|link| self.heard.get(&link).is_some_and(|h| h.contains(&group)))
    }
}

/// Whether votes of (kind, round) may go to `peer` now. Without a known tree they go at once.
/// To a tree link: once we have voted in it ourselves and every other link has reported, or
/// after we already started sending it that round; to a child also once we hold a quorum of
/// signers in (kind, round), which settles the round for it (a value's quorum, or a split)
/// whatever the links still to report bring. To a peer off the tree: only when their fallback
/// time is up (the caller's `due`), as for a child whose parent never reports.
pub(super) fn may_go(
    pieces: &PiecePush<'_>,
    state: &RegisterState,
    known: &Known,
    peer: MemberIndex,
    group: (VoteKind, Round),
    quorum: usize,
) -> bool {
    let Some(tree) = pieces.tree else {
        return true;
    };
    if !tree.links.contains(peer) {
        return false;
    }
    let (kind, round) = group;
    let down = tree.links.children.contains(&peer);
    let decisive = || {
        state
            .ballots(kind)
            .get(&round)
            .is_some_and(|ballots| ballots.len() >= quorum)
    };
    known.opened.contains(&group)
        || (state.ballot(kind, round, pieces.me).is_some()
            && (tree.others_reported(peer, group) || down && decisive()))
}

/// The pieces that carry the votes of `members` in one group: their single votes and the held
/// pieces that cover the rest, summed into one aggregate (a part that cannot be added, such as
/// a count past 255, travels as a piece of its own).
pub(super) fn combine(
    verifier: &dyn Verifier,
    state: &RegisterState,
    (kind, round, value): (VoteKind, Round, ValueHash),
    members: &[MemberIndex],
) -> Vec<Piece> {
    let n = verifier.members();
    let mut parts: Vec<Aggregate> = Vec::new();
    let mut covered: BTreeSet<MemberIndex> = BTreeSet::new();
    for &member in members {
        if covered.contains(&member) {
            continue;
        }
        match state.ballot(kind, round, member) {
            Some(Ballot::Vote { signature, .. }) => {
                if let Ok(single) = Aggregate::single(n, member, *signature) {
                    covered.insert(member);
                    parts.push(single);
                }
            }
            Some(Ballot::Covered { .. }) => {
                let holder = state
                    .pieces_of(kind, round, value)
                    .find(|p| p.aggregate.weights.contains(member));
                if let Some(holder) = holder {
                    covered.extend(holder.aggregate.weights.members().map(|(m, _)| m));
                    parts.push(holder.aggregate.clone());
                }
            }
            _ => {}
        }
    }
    let mut out: Vec<Aggregate> = Vec::new();
    for part in parts {
        let added = out
            .first_mut()
            .is_some_and(|sum| verifier.combine(sum, &part));
        if !added {
            out.push(part);
        }
    }
    out.into_iter()
        .map(|aggregate| Piece {
            kind,
            round,
            value,
            aggregate,
        })
        .collect()
}

/// The single PRE-COMMIT a body travels beside, along that vote's relay tree: another member's
/// (the lowest round first), which as the body spreads is its proposer's; our own only when no
/// other member's slot names the value, that is when we proposed it. A member that got the body
/// beside a piece, before the proposer's vote, does not pass it on under its own name: it used
/// to, to every neighbour, and that was a fifth of all the bodies sent at n = 100.
pub(super) fn companion(
    state: &RegisterState,
    value: ValueHash,
    me: MemberIndex,
) -> Option<WireBallot> {
    let mut others_name_it = false;
    let mut own = None;
    for (&round, ballots) in &state.precommits {
        for (member, &ballot) in ballots {
            if ballot.vote_value() != Some(value) {
                continue;
            }
            let wire = WireBallot {
                kind: VoteKind::PreCommit,
                round,
                member,
                ballot,
            };
            match ballot {
                Ballot::Vote { .. } if member != me => return Some(wire),
                Ballot::Vote { .. } => own = own.or(Some(wire)),
                _ => others_name_it |= member != me,
            }
        }
    }
    own.filter(|_| !others_name_it)
}

/// Whether the peer is known (from what the link carried) to hold a quorum of COMMIT votes in
/// the round that decided our certified value: then it decided too.
pub(super) fn holds_commit_quorum(state: &RegisterState, known: &Known, quorum: usize) -> bool {
    let Some(cert) = &state.accepted else {
        return false;
    };
    known
        .slots
        .rounds
        .iter()
        .find(|(group, _)| *group == (VoteKind::Commit, cert.round, false))
        .is_some_and(|(_, bits)| {
            let held: u32 = bits.iter().map(|word| word.count_ones()).sum();
            usize::try_from(held).is_ok_and(|held| held >= quorum)
        })
}

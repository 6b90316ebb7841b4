//! Relay plans: which neighbours a member forwards another member's votes to.
//!
//! Flooding every vote to every neighbour delivers it to each member once per neighbour (about
//! seven times on the paper's overlay), and almost all of those copies arrive within one link
//! latency of each other, so no knowledge of what a neighbour holds can suppress them in time.
//! A relay plan instead forwards the votes *cast by* an origin along a shortest-path tree rooted
//! at that origin: each member receives each vote once per parent, along a shortest path, so
//! the first copy arrives as early as flooding would deliver it. Votes a plan holds back are not
//! lost: the replica offers them again after a grace period (see `Replica::second_chance`)
//! unless the neighbour has meanwhile shown it has them or no longer needs them, which repairs a
//! tree cut by a crashed or withholding relay. Whole states are never thinned.
//!
//! Every member computes the trees from the same overlay snapshot with the same deterministic
//! tie-break, so a member knows which neighbours count on it as their parent. A plan built from a
//! stale snapshot costs at most duplicates (two parents) or a grace period (none).

use crate::types::MemberIndex;

/// Most neighbours a plan covers; further neighbours (rare: the overlay keeps about seven) get
/// every vote, as without a plan.
pub const MAX_PLANNED_NEIGHBOURS: usize = 64;

/// Hop counts between all members of an overlay, for building every member's plan from one
/// breadth-first search per origin.
#[derive(Clone, Debug)]
pub struct HopDistances {
    members: usize,
    /// Row-major `members × members`; `u16::MAX` means unreachable.
    hops: Vec<u16>,
}

impl HopDistances {
    /// Distances over `adjacency` (member index → its neighbours; links must be symmetric).
    pub fn new(adjacency: &[Vec<MemberIndex>]) -> HopDistances {
        let members = adjacency.len();
        let mut hops = vec![u16::MAX; members * members];
        let mut queue = std::collections::VecDeque::new();
        for origin in 0..members {
            let row = &mut hops[origin * members..(origin + 1) * members];
            row[origin] = 0;
            queue.clear();
            queue.push_back(origin);
            while let Some(a) = queue.pop_front() {
                let next = row[a].saturating_add(1);
                for &b in &adjacency[a] {
                    let b = usize::from(b);
                    if b < members && row[b] == u16::MAX {
                        row[b] = next;
                        queue.push_back(b);
                    }
                }
            }
        }
        HopDistances { members, hops }
    }

    /// Hops from `from` to `to`, or `None` if `to` cannot be reached (or is out of range).
    pub fn get(&self, from: MemberIndex, to: MemberIndex) -> Option<u16> {
        let (from, to) = (usize::from(from), usize::from(to));
        if from >= self.members || to >= self.members {
            return None;
        }
        Some(self.hops[from * self.members + to]).filter(|&h| h != u16::MAX)
    }
}

/// One member's relay plan: for every origin, the neighbours that count on this member to
/// forward that origin's votes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RelayPlan {
    /// The neighbours the plan covers, sorted; bit `i` of a mask stands for `planned[i]`.
    planned: Vec<MemberIndex>,
    /// Per origin, the covered neighbours to forward to.
    masks: Vec<u64>,
}

impl RelayPlan {
    /// The plan of `me` on `adjacency`: neighbour `v` gets the votes of origin `o` from us when
    /// we are one of `v`'s `parents` chosen among its neighbours one hop closer to `o`. Parents
    /// are chosen by a hash of (origin, child, candidate), the same on every member, which also
    /// spreads the relaying load over the candidates.
    pub fn build(
        me: MemberIndex,
        adjacency: &[Vec<MemberIndex>],
        distances: &HopDistances,
        parents: usize,
    ) -> RelayPlan {
        let members = adjacency.len();
        let mut planned: Vec<MemberIndex> = adjacency
            .get(usize::from(me))
            .map(|n| {
                n.iter()
                    .copied()
                    .filter(|&v| usize::from(v) < members)
                    .collect()
            })
            .unwrap_or_default();
        planned.sort_unstable();
        planned.dedup();
        planned.truncate(MAX_PLANNED_NEIGHBOURS);
        let masks = (0..members)
            .map(|origin| {
                let origin = member(origin);
                if distances.get(origin, me).is_none() {
                    // Its votes reach us anyway: the snapshot is stale, so flood them.
                    return u64::MAX;
                }
                let mut mask = 0u64;
                for (bit, &child) in planned.iter().enumerate() {
                    let chosen = chosen_parents(origin, child, adjacency, distances, parents);
                    if chosen.contains(&me) {
                        mask |= 1 << bit;
                    }
                }
                mask
            })
            .collect();
        RelayPlan { planned, masks }
    }

    /// Whether votes cast by `origin` go to `neighbour` at once. Neighbours and origins the plan
    /// does not know (a link made after it was built, an origin it found unreachable) get
    /// everything.
    pub fn relays(&self, origin: MemberIndex, neighbour: MemberIndex) -> bool {
        let Ok(bit) = self.planned.binary_search(&neighbour) else {
            return true;
        };
        self.masks
            .get(usize::from(origin))
            .is_none_or(|mask| mask & (1 << bit) != 0)
    }
}

/// The parents `child` has in the tree of `origin`: up to `parents` of its neighbours one hop
/// closer to the origin, those with the lowest tie-break hash.
fn chosen_parents(
    origin: MemberIndex,
    child: MemberIndex,
    adjacency: &[Vec<MemberIndex>],
    distances: &HopDistances,
    parents: usize,
) -> Vec<MemberIndex> {
    let Some(depth) = distances.get(origin, child) else {
        return Vec::new();
    };
    if depth == 0 {
        return Vec::new();
    }
    let mut candidates: Vec<(u64, MemberIndex)> = adjacency
        .get(usize::from(child))
        .into_iter()
        .flatten()
        .filter(|&&u| distances.get(origin, u) == Some(depth - 1))
        .map(|&u| (tie_break(origin, child, u), u))
        .collect();
    candidates.sort_unstable();
    candidates.dedup();
    candidates
        .into_iter()
        .take(parents)
        .map(|(_, u)| u)
        .collect()
}

/// A fixed mixing function (SplitMix64's finaliser) over the three indices: cheap, the same on
/// every platform, and well spread, so each child's parents differ from origin to origin.
fn tie_break(origin: MemberIndex, child: MemberIndex, candidate: MemberIndex) -> u64 {
    let mut x = (u64::from(origin) << 32) ^ (u64::from(child) << 16) ^ u64::from(candidate);
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn member(i: usize) -> MemberIndex {
    MemberIndex::try_from(i).unwrap_or(MemberIndex::MAX)
}

//! The overlay graph (who is connected to whom) and partitions (who can currently reach whom).

use beaufort_core::types::MemberIndex;
use rand::seq::SliceRandom;
use rand::Rng;
use std::collections::BTreeSet;

/// A symmetric partial mesh: each member's set of neighbours.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Overlay {
    neighbours: Vec<BTreeSet<MemberIndex>>,
}

impl Overlay {
    /// An overlay with no links.
    pub fn empty(members: usize) -> Overlay {
        Overlay {
            neighbours: vec![BTreeSet::new(); members],
        }
    }

    /// A random overlay in which every member has `degree` neighbours (or everyone, in a small
    /// network): a random regular graph, the overlay the paper's propagation floor assumes. Each
    /// member links first to random members that still lack neighbours; only when none is left
    /// (the last few stubs) does it link to one that already has enough, so a handful of members
    /// may end with one neighbour more. Links are symmetric.
    pub fn random(members: usize, degree: usize, rng: &mut impl Rng) -> Overlay {
        let mut overlay = Overlay::empty(members);
        let target = degree.min(members.saturating_sub(1));
        let mut order: Vec<usize> = (0..members).collect();
        order.shuffle(rng);
        for &a in &order {
            let mut others: Vec<usize> = (0..members).filter(|&b| b != a).collect();
            others.shuffle(rng);
            let (short, full): (Vec<usize>, Vec<usize>) = others
                .into_iter()
                .partition(|&b| overlay.neighbours[b].len() < target);
            for b in short.into_iter().chain(full) {
                if overlay.neighbours[a].len() >= target {
                    break;
                }
                overlay.connect(index(a), index(b));
            }
        }
        overlay
    }

    /// Number of members.
    pub fn members(&self) -> usize {
        self.neighbours.len()
    }

    /// Whether `a` and `b` are linked.
    pub fn linked(&self, a: MemberIndex, b: MemberIndex) -> bool {
        self.neighbours
            .get(usize::from(a))
            .is_some_and(|n| n.contains(&b))
    }

    /// Links `a` and `b`; false if they already were (or are the same member, or out of range).
    pub fn connect(&mut self, a: MemberIndex, b: MemberIndex) -> bool {
        let n = self.neighbours.len();
        if a == b || usize::from(a) >= n || usize::from(b) >= n || self.linked(a, b) {
            return false;
        }
        self.neighbours[usize::from(a)].insert(b);
        self.neighbours[usize::from(b)].insert(a);
        true
    }

    /// Removes the link; false if there was none.
    pub fn disconnect(&mut self, a: MemberIndex, b: MemberIndex) -> bool {
        if !self.linked(a, b) {
            return false;
        }
        self.neighbours[usize::from(a)].remove(&b);
        self.neighbours[usize::from(b)].remove(&a);
        true
    }

    /// The neighbours of `a`, in index order.
    pub fn neighbours(&self, a: MemberIndex) -> impl Iterator<Item = MemberIndex> + '_ {
        self.neighbours
            .get(usize::from(a))
            .into_iter()
            .flat_map(|n| n.iter().copied())
    }

    /// Connected components of the subgraph induced by `within`, each in index order.
    pub fn components(&self, within: &BTreeSet<MemberIndex>) -> Vec<Vec<MemberIndex>> {
        let mut seen = BTreeSet::new();
        let mut components = Vec::new();
        for &start in within {
            if !seen.insert(start) {
                continue;
            }
            let mut component = vec![start];
            let mut stack = vec![start];
            while let Some(a) = stack.pop() {
                for b in self.neighbours(a) {
                    if within.contains(&b) && seen.insert(b) {
                        component.push(b);
                        stack.push(b);
                    }
                }
            }
            component.sort_unstable();
            components.push(component);
        }
        components
    }
}

/// Which group each member is in while the network is partitioned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partition {
    group: Vec<usize>,
}

impl Partition {
    /// A partition into `groups`; members listed nowhere form one more group together.
    pub fn new(members: usize, groups: &[Vec<MemberIndex>]) -> Partition {
        let mut group = vec![groups.len(); members];
        for (g, list) in groups.iter().enumerate() {
            for &m in list {
                if let Some(slot) = group.get_mut(usize::from(m)) {
                    *slot = g;
                }
            }
        }
        Partition { group }
    }

    /// Whether a message from `a` reaches `b`.
    pub fn reachable(&self, a: MemberIndex, b: MemberIndex) -> bool {
        self.group.get(usize::from(a)) == self.group.get(usize::from(b))
    }
}

/// Converts a member position to its index (members are fewer than 2^16 by construction).
pub fn index(i: usize) -> MemberIndex {
    MemberIndex::try_from(i).unwrap_or(MemberIndex::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn the_random_overlay_is_connected_and_nearly_regular() {
        for (members, seed) in [(10, 1), (40, 2), (100, 3), (1000, 4)] {
            let overlay = Overlay::random(members, 7, &mut StdRng::seed_from_u64(seed));
            let degrees: Vec<usize> = (0..members)
                .map(|a| overlay.neighbours(index(a)).count())
                .collect();
            assert!(degrees.iter().all(|&d| d >= 7), "{members}: {degrees:?}");
            let above = degrees.iter().filter(|&&d| d > 7).count();
            assert!(
                above <= 2 + members / 20,
                "{members}: {above} members above 7"
            );
            assert!(degrees.iter().all(|&d| d <= 8), "{members}: {degrees:?}");
            let everyone: BTreeSet<MemberIndex> = (0..members).map(index).collect();
            assert_eq!(overlay.components(&everyone).len(), 1, "{members}");
        }
    }

    #[test]
    fn a_small_network_is_a_full_mesh() {
        let overlay = Overlay::random(5, 7, &mut StdRng::seed_from_u64(9));
        for a in 0..5 {
            assert_eq!(overlay.neighbours(index(a)).count(), 4);
        }
    }
}

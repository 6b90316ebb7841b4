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

    /// A random overlay: every member links to random others until it has at least `degree`
    /// neighbours (or everyone, in a small network). Links are symmetric, so some members end up
    /// with more.
    pub fn random(members: usize, degree: usize, rng: &mut impl Rng) -> Overlay {
        let mut overlay = Overlay::empty(members);
        let target = degree.min(members.saturating_sub(1));
        for a in 0..members {
            let mut others: Vec<usize> = (0..members).filter(|&b| b != a).collect();
            others.shuffle(rng);
            for b in others {
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
pub(crate) fn index(i: usize) -> MemberIndex {
    MemberIndex::try_from(i).unwrap_or(MemberIndex::MAX)
}

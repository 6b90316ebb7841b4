//! Relay plans: every member gets every origin's votes from its chosen parents, along shortest
//! paths, and nobody else sends them at once.

use beaufort_core::relay::{HopDistances, RelayPlan};
use beaufort_core::types::MemberIndex;
use std::collections::BTreeSet;

/// A circulant graph: member i is linked to i ± each offset (mod n).
fn circulant(n: usize, offsets: &[usize]) -> Vec<Vec<MemberIndex>> {
    (0..n)
        .map(|i| {
            let set: BTreeSet<MemberIndex> = offsets
                .iter()
                .flat_map(|&d| [(i + d) % n, (i + n - d) % n])
                .map(|j| MemberIndex::try_from(j).unwrap())
                .collect();
            set.into_iter().collect()
        })
        .collect()
}

fn plans(adjacency: &[Vec<MemberIndex>], parents: usize) -> Vec<RelayPlan> {
    let distances = HopDistances::new(adjacency);
    (0..adjacency.len())
        .map(|m| RelayPlan::build(m as MemberIndex, adjacency, &distances, parents))
        .collect()
}

#[test]
fn each_member_gets_each_origins_votes_from_its_parents_along_shortest_paths() {
    let adjacency = circulant(30, &[1, 4, 11]);
    let distances = HopDistances::new(&adjacency);
    for parents in [1, 2] {
        let plans = plans(&adjacency, parents);
        for origin in 0..30u16 {
            for child in 0..30u16 {
                let senders: Vec<MemberIndex> = adjacency[usize::from(child)]
                    .iter()
                    .copied()
                    .filter(|&u| plans[usize::from(u)].relays(origin, child))
                    .collect();
                let depth = distances.get(origin, child).unwrap();
                let closer = adjacency[usize::from(child)]
                    .iter()
                    .filter(|&&u| distances.get(origin, u) == Some(depth.wrapping_sub(1)))
                    .count();
                if origin == child {
                    assert!(senders.is_empty(), "nobody sends {origin} its own votes");
                    continue;
                }
                assert_eq!(senders.len(), parents.min(closer), "{origin} -> {child}");
                for u in senders {
                    assert_eq!(distances.get(origin, u), Some(depth - 1), "{u} is closer");
                }
            }
        }
    }
}

#[test]
fn following_the_plans_reaches_everyone_in_as_few_hops_as_flooding() {
    let adjacency = circulant(40, &[1, 5, 13]);
    let distances = HopDistances::new(&adjacency);
    let plans = plans(&adjacency, 1);
    for origin in 0..40u16 {
        let mut reached = [None; 40];
        reached[usize::from(origin)] = Some(0u16);
        let mut frontier = vec![origin];
        let mut hops = 0;
        while !frontier.is_empty() {
            hops += 1;
            let mut next = Vec::new();
            for &u in &frontier {
                for &v in &adjacency[usize::from(u)] {
                    if plans[usize::from(u)].relays(origin, v) && reached[usize::from(v)].is_none()
                    {
                        reached[usize::from(v)] = Some(hops);
                        next.push(v);
                    }
                }
            }
            frontier = next;
        }
        for m in 0..40u16 {
            assert_eq!(
                reached[usize::from(m)],
                distances.get(origin, m),
                "{origin} -> {m}"
            );
        }
    }
}

#[test]
fn links_and_origins_the_plan_does_not_know_get_everything() {
    let adjacency = circulant(10, &[1, 2]);
    let plan = plans(&adjacency, 1).remove(0);
    assert!(
        plan.relays(3, 5),
        "5 is not our neighbour in the plan: a newer link"
    );
    assert!(plan.relays(200, 1), "an origin outside the plan");
    assert!(RelayPlan::default().relays(3, 1), "an empty plan floods");
}

#[test]
fn unreachable_members_have_no_distance() {
    let adjacency = vec![vec![1], vec![0], vec![3], vec![2]];
    let distances = HopDistances::new(&adjacency);
    assert_eq!(distances.get(0, 1), Some(1));
    assert_eq!(distances.get(0, 2), None);
    assert_eq!(distances.get(0, 9), None);
    let plan = RelayPlan::build(0, &adjacency, &distances, 1);
    assert!(
        plan.relays(2, 1),
        "an origin the snapshot cannot reach: the plan is stale, flood"
    );
}

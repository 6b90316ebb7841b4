//! Relay trees learnt from neighbours' adverts: once the adverts have settled, every member gets
//! every origin's votes from its chosen parents, along shortest paths, and nobody else sends
//! them at once; a member without a route is flooded.

use beaufort_core::relay::{root_candidate, Advert, RelayTrees, UNREACHABLE};
use beaufort_core::types::MemberIndex;
use std::collections::{BTreeSet, VecDeque};

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

/// Hops from `origin` to every member by breadth-first search (`None`: unreachable).
fn bfs(adjacency: &[Vec<MemberIndex>], origin: usize) -> Vec<Option<u8>> {
    let mut hops = vec![None; adjacency.len()];
    hops[origin] = Some(0);
    let mut queue = VecDeque::from([origin]);
    while let Some(a) = queue.pop_front() {
        for &b in &adjacency[a] {
            let b = usize::from(b);
            if hops[b].is_none() {
                hops[b] = Some(hops[a].unwrap() + 1);
                queue.push_back(b);
            }
        }
    }
    hops
}

/// Every member's trees on `adjacency`, with the adverts exchanged until none is owed.
fn settled(adjacency: &[Vec<MemberIndex>], parents: usize) -> Vec<RelayTrees> {
    let n = adjacency.len();
    let mut trees: Vec<RelayTrees> = (0..n)
        .map(|m| RelayTrees::new(m as MemberIndex, n, parents))
        .collect();
    for (m, neighbours) in adjacency.iter().enumerate() {
        for &peer in neighbours {
            trees[m].link_up(peer);
        }
    }
    exchange(&mut trees);
    trees
}

/// Delivers owed adverts in rounds until none is owed; returns how many rounds it took.
fn exchange(trees: &mut [RelayTrees]) -> usize {
    for round in 0..1_000 {
        let mut mail: Vec<(usize, MemberIndex, Advert)> = Vec::new();
        for (m, t) in trees.iter_mut().enumerate() {
            for (to, advert) in t.take_owed() {
                mail.push((usize::from(to), m as MemberIndex, advert));
            }
        }
        if mail.is_empty() {
            return round;
        }
        for (to, from, advert) in mail {
            trees[to].heard(from, advert);
        }
    }
    panic!("adverts never settled");
}

#[test]
fn each_member_gets_each_origins_votes_from_its_parents_along_shortest_paths() {
    let adjacency = circulant(30, &[1, 4, 11]);
    for parents in [1, 2] {
        let trees = settled(&adjacency, parents);
        for origin in 0..30usize {
            let distances = bfs(&adjacency, origin);
            for child in 0..30usize {
                let o = origin as MemberIndex;
                let senders: Vec<MemberIndex> = adjacency[child]
                    .iter()
                    .copied()
                    .filter(|&u| trees[usize::from(u)].relays(o, child as MemberIndex))
                    .collect();
                let depth = distances[child].unwrap();
                assert_eq!(trees[child].hops_to(o), depth, "{origin} -> {child}");
                if origin == child {
                    assert!(senders.is_empty(), "nobody sends {origin} its own votes");
                    continue;
                }
                let closer = adjacency[child]
                    .iter()
                    .filter(|&&u| distances[usize::from(u)] == Some(depth - 1))
                    .count();
                assert_eq!(senders.len(), parents.min(closer), "{origin} -> {child}");
                for u in senders {
                    assert_eq!(distances[usize::from(u)], Some(depth - 1), "{u} is closer");
                }
            }
        }
    }
}

#[test]
fn following_the_trees_reaches_everyone_in_as_few_hops_as_flooding() {
    let adjacency = circulant(40, &[1, 5, 13]);
    let trees = settled(&adjacency, 1);
    for origin in 0..40usize {
        let o = origin as MemberIndex;
        let mut reached = vec![None; 40];
        reached[origin] = Some(0u8);
        let mut frontier = vec![origin];
        let mut hops = 0;
        while !frontier.is_empty() {
            hops += 1;
            let mut next = Vec::new();
            for &u in &frontier {
                for &v in &adjacency[u] {
                    let v = usize::from(v);
                    if trees[u].relays(o, v as MemberIndex) && reached[v].is_none() {
                        reached[v] = Some(hops);
                        next.push(v);
                    }
                }
            }
            frontier = next;
        }
        assert_eq!(reached, bfs(&adjacency, origin), "from {origin}");
    }
}

#[test]
fn a_neighbour_that_has_not_advertised_gets_everything_and_a_member_without_a_route_is_flooded() {
    let mut trees = RelayTrees::new(0, 10, 1);
    trees.link_up(1);
    trees.link_up(2);
    assert!(trees.relays(3, 1), "1 has not said what it wants");
    let owed = trees.take_owed();
    assert_eq!(owed.len(), 2, "both new neighbours are owed our advert");
    for (_, advert) in owed {
        assert_eq!(advert.hops[0], 0);
        assert!(advert.hops[1..].iter().all(|&h| h == UNREACHABLE));
        // We know no route to anyone yet: we want everyone's votes from everyone but ourselves.
        assert_eq!(advert.wants, vec![0b1111_1110, 0b11]);
    }
}

#[test]
fn a_broken_link_reroutes_and_a_lying_neighbour_is_believed_only_about_itself() {
    // A ring of 6: 0-1-2-3-4-5-0.
    let ring: Vec<Vec<MemberIndex>> = (0..6)
        .map(|i| vec![((i + 5) % 6) as MemberIndex, ((i + 1) % 6) as MemberIndex])
        .collect();
    let mut trees = settled(&ring, 1);
    assert_eq!(trees[0].hops_to(2), 2);
    assert_eq!(trees[0].parents_of(2), vec![1]);
    // The link 1-2 breaks: 0 now reaches 2 the other way round, in 4 hops.
    trees[1].link_down(2);
    trees[2].link_down(1);
    exchange(&mut trees);
    assert_eq!(trees[0].hops_to(2), 4);
    assert_eq!(trees[0].parents_of(2), vec![5]);

    // A neighbour claiming to be at distance 0 from everyone is taken to be one hop from them.
    let mut lied_to = RelayTrees::new(0, 4, 1);
    lied_to.link_up(1);
    lied_to.heard(
        1,
        Advert {
            hops: vec![0, 0, 0, 0],
            wants: vec![0xff],
        },
    );
    assert_eq!(lied_to.hops_to(0), 0, "still at 0 from ourselves");
    assert_eq!(lied_to.hops_to(1), 1);
    assert_eq!(lied_to.hops_to(2), 2, "1 cannot be at 0 from 2");
    // An advert of the wrong length is ignored.
    lied_to.heard(
        1,
        Advert {
            hops: vec![0; 3],
            wants: vec![0],
        },
    );
    assert_eq!(lied_to.hops_to(2), 2);
}

/// A key's tree (`tree_towards`) is one spanning tree once adverts settle: every member but the
/// root has a parent one hop closer to the root, each member's children are exactly the members
/// that name it as parent, so both ends of every link agree on it (what saturation relies on),
/// and there are n − 1 links. With more than one parent per origin no key tree is claimed.
#[test]
fn a_keys_tree_is_one_spanning_tree_whose_links_both_ends_agree_on() {
    let n = 30;
    let adjacency = circulant(n, &[1, 4, 11]);
    let trees = settled(&adjacency, 1);
    for root in [0usize, 7, 29] {
        let distances = bfs(&adjacency, root);
        let root_index = MemberIndex::try_from(root).unwrap();
        let mut links = 0;
        for (m, t) in trees.iter().enumerate() {
            let tree = t.tree_towards(root_index).expect("a route to the root");
            match tree.parent {
                None => assert_eq!(m, root, "only the root has no parent"),
                Some(parent) => {
                    let parent = usize::from(parent);
                    assert!(adjacency[m].contains(&(parent as MemberIndex)));
                    assert_eq!(distances[parent].unwrap() + 1, distances[m].unwrap());
                    links += 1;
                }
            }
            for &child in &tree.children {
                let theirs = trees[usize::from(child)]
                    .tree_towards(root_index)
                    .expect("a route to the root");
                assert_eq!(theirs.parent, Some(m as MemberIndex), "{child} names {m}");
            }
        }
        assert_eq!(links, n - 1);
    }
    let two_parents = settled(&adjacency, 2);
    assert!(two_parents[3].tree_towards(0).is_none());
}

/// A crashed member (every link to it down) stops being routed to within a few advert rounds,
/// not after a count to 254, and a key whose first root it was gathers on the tree of its next
/// candidate root, the same at every member.
#[test]
fn routes_to_a_crashed_member_end_soon_and_its_keys_gather_on_the_next_root() {
    let n = 30;
    let adjacency = circulant(n, &[1, 4, 11]);
    let mut trees = settled(&adjacency, 1);
    let key = (0u32..)
        .map(|i| format!("k{i}").into_bytes())
        .find(|key| root_candidate(key, 3, n, 0) != root_candidate(key, 3, n, 1))
        .expect("two candidates differ for some key");
    let crashed = root_candidate(&key, 3, n, 0);
    let next = root_candidate(&key, 3, n, 1);
    for &peer in &adjacency[usize::from(crashed)] {
        trees[usize::from(peer)].link_down(crashed);
        trees[usize::from(crashed)].link_down(peer);
    }
    let rounds = exchange(&mut trees);
    assert!(rounds <= 40, "routes settled only after {rounds} rounds");
    for (m, t) in trees.iter().enumerate() {
        if m == usize::from(crashed) {
            continue;
        }
        assert_eq!(
            t.hops_to(crashed),
            UNREACHABLE,
            "{m} still routes to {crashed}"
        );
        let tree = t.key_tree(&key, 3).expect("a route to the next root");
        assert_eq!(
            tree,
            t.tree_towards(next).expect("a route to the next root")
        );
        assert_eq!(tree.parent.is_none(), m == usize::from(next));
    }
}

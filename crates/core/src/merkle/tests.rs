//! Tests of the index and the diff: canonical shape, bounds, and sessions against hostile answers.

use super::*;
use std::collections::BTreeSet;

fn key(i: u64) -> Vec<u8> {
    format!("key-{i}").into_bytes()
}

fn digest(i: u64) -> Digest {
    hash(Domain::Other, &[&i.to_le_bytes()])
}

fn index_of(pairs: impl IntoIterator<Item = (Vec<u8>, Digest)>) -> MerkleIndex {
    let mut index = MerkleIndex::new();
    for (key, digest) in pairs {
        index.insert(&key, digest);
    }
    index
}

/// Tiny deterministic RNG for the randomized tests.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Runs a whole session of `local` against `remote`, answers served by `remote.node`.
fn run_diff(local: &mut MerkleIndex, remote: &mut MerkleIndex) -> Result<DiffOutcome, MerkleError> {
    let mut diff = MerkleDiff::new(remote.root());
    let mut ask = diff.start(local);
    while !ask.is_empty() {
        assert!(ask.len() <= MAX_PATHS_PER_REQUEST);
        let answers = ask.iter().map(|path| (*path, remote.node(path))).collect();
        ask = diff.on_answers(local, answers)?;
    }
    Ok(diff.finish())
}

/// Makes `local` equal to `remote` using only what the diff reported.
fn apply(local: &mut MerkleIndex, remote: &MerkleIndex, outcome: &DiffOutcome) {
    for key in &outcome.differing {
        local.insert(key, remote.get(key).expect("reported key exists remotely"));
    }
    for key in &outcome.local_only {
        local.remove(key).expect("reported key exists locally");
    }
}

fn set(keys: &[Vec<u8>]) -> BTreeSet<Vec<u8>> {
    let set: BTreeSet<Vec<u8>> = keys.iter().cloned().collect();
    assert_eq!(set.len(), keys.len(), "duplicate keys reported");
    set
}

/// What the diff of `local` against `remote` must report, computed naively.
fn expected(local: &MerkleIndex, remote: &MerkleIndex) -> (BTreeSet<Vec<u8>>, BTreeSet<Vec<u8>>) {
    let differing = remote
        .iter()
        .filter(|(key, digest)| local.get(key) != Some(*digest))
        .map(|(key, _)| key.to_vec())
        .collect();
    let local_only = local
        .iter()
        .filter(|(key, _)| remote.get(key).is_none())
        .map(|(key, _)| key.to_vec())
        .collect();
    (differing, local_only)
}

/// `count` keys whose paths all start with the byte `first` (two nibbles), tagged by `tag`.
fn keys_under(first: u8, count: usize, tag: &str) -> Vec<Vec<u8>> {
    (0u64..)
        .map(|i| format!("{tag}-{i}").into_bytes())
        .filter(|key| key_path(key).0[0] == first)
        .take(count)
        .collect()
}

#[test]
fn empty_index() {
    let mut index = MerkleIndex::new();
    assert_eq!(index.root(), Digest::ZERO);
    assert!(index.is_empty());
    assert_eq!(index.node(&NodePath::root()), NodeSummary::Empty);
    assert_eq!(index.iter().count(), 0);
}

#[test]
fn insert_get_remove_iter() {
    let mut index = MerkleIndex::new();
    for i in 0..500 {
        assert_eq!(index.insert(&key(i), digest(i)), None);
    }
    assert_eq!(index.insert(&key(7), digest(1000)), Some(digest(7)));
    assert_eq!(index.insert(&key(7), digest(1000)), Some(digest(1000)));
    assert_eq!(index.len(), 500);
    assert_eq!(index.get(&key(7)), Some(digest(1000)));
    assert_eq!(index.get(&key(9)), Some(digest(9)));
    assert_eq!(index.get(b"absent"), None);
    assert_eq!(index.remove(&key(9)), Some(digest(9)));
    assert_eq!(index.remove(&key(9)), None);
    assert_eq!(index.get(&key(9)), None);
    assert_eq!(index.len(), 499);

    let listed: Vec<(Vec<u8>, Digest)> = index
        .iter()
        .map(|(key, digest)| (key.to_vec(), digest))
        .collect();
    assert_eq!(listed.len(), 499);
    assert!(listed
        .windows(2)
        .all(|pair| key_path(&pair[0].0) < key_path(&pair[1].0)));
    for (key, digest) in listed {
        assert_eq!(index.get(&key), Some(digest));
    }
}

#[test]
fn root_is_order_and_history_independent() {
    let pairs: Vec<(Vec<u8>, Digest)> = (0..3000).map(|i| (key(i), digest(i))).collect();
    let mut forward = index_of(pairs.iter().cloned());

    // Reverse order, with churn: extra keys inserted then removed, digests changed then
    // restored, and root computations in between so stale caches would show.
    let mut churned = MerkleIndex::new();
    for (i, (key, digest)) in pairs.iter().enumerate().rev() {
        churned.insert(key, *digest);
        if i % 7 == 0 {
            churned.insert(format!("extra-{i}").as_bytes(), *digest);
        }
        if i % 11 == 0 {
            churned.insert(key, Digest::ZERO);
            churned.root();
            churned.insert(key, *digest);
        }
    }
    churned.root();
    for i in (0..3000).step_by(7) {
        assert!(churned.remove(format!("extra-{i}").as_bytes()).is_some());
    }
    assert_eq!(forward.root(), churned.root());
    assert_ne!(forward.root(), Digest::ZERO);

    // A single changed digest changes the root; restoring it restores the root.
    let before = forward.root();
    forward.insert(&key(1234), digest(999_999));
    assert_ne!(forward.root(), before);
    forward.insert(&key(1234), digest(1234));
    assert_eq!(forward.root(), before);
}

#[test]
fn removing_all_keys_gives_zero() {
    let mut index = index_of((0..2000).map(|i| (key(i), digest(i))));
    assert_ne!(index.root(), Digest::ZERO);
    for i in (0..2000).rev() {
        assert_eq!(index.remove(&key(i)), Some(digest(i)));
        if i % 100 == 0 {
            index.root();
        }
    }
    assert!(index.is_empty());
    assert_eq!(index.root(), Digest::ZERO);
    assert_eq!(index.node(&NodePath::root()), NodeSummary::Empty);
}

#[test]
fn shape_follows_leaf_capacity() {
    let mut index = index_of((0..LEAF_CAPACITY as u64).map(|i| (key(i), digest(i))));
    let leaf_root = index.root();
    assert!(
        matches!(index.node(&NodePath::root()), NodeSummary::Leaf { entries } if entries.len() == LEAF_CAPACITY)
    );
    index.insert(b"one more", digest(0));
    assert!(matches!(
        index.node(&NodePath::root()),
        NodeSummary::Inner { .. }
    ));
    index.remove(b"one more");
    assert!(matches!(
        index.node(&NodePath::root()),
        NodeSummary::Leaf { .. }
    ));
    assert_eq!(index.root(), leaf_root);
}

#[test]
fn node_resolves_prefixes_inside_buckets() {
    let keys: Vec<Vec<u8>> = (0..10).map(key).collect();
    let mut index = index_of(keys.iter().map(|key| (key.clone(), digest(1))));
    for nibble in 0..16u8 {
        let path = NodePath::root().child(nibble).expect("valid nibble");
        let under: BTreeSet<Vec<u8>> = keys
            .iter()
            .filter(|key| path.contains(&key_path(key)))
            .cloned()
            .collect();
        match index.node(&path) {
            NodeSummary::Empty => assert!(under.is_empty()),
            NodeSummary::Leaf { entries } => {
                assert_eq!(
                    entries
                        .iter()
                        .map(|(k, _)| k.clone())
                        .collect::<BTreeSet<_>>(),
                    under
                );
            }
            NodeSummary::Inner { .. } => panic!("ten keys cannot form an inner node"),
        }
    }

    // Below an empty child of an inner node, and deep inside a bucket.
    let mut big = index_of((0..1000).map(|i| (key(i), digest(i))));
    let mut deep = NodePath::root();
    for _ in 0..NodePath::MAX_DEPTH {
        deep = deep.child(0xf).expect("within depth");
    }
    assert!(deep.child(0).is_none());
    assert_eq!(big.node(&deep), NodeSummary::Empty);
    let path = key_path(&key(5));
    let mut prefix = NodePath::root();
    for i in 0..6 {
        prefix = prefix
            .child(nibble_at(&path.0, i) as u8)
            .expect("within depth");
    }
    assert_eq!(
        big.node(&prefix),
        NodeSummary::Leaf {
            entries: vec![(key(5), digest(5))]
        }
    );
}

#[test]
fn equal_indexes_need_no_query() {
    let mut a = index_of((0..1000).map(|i| (key(i), digest(i))));
    let mut b = a.clone();
    let outcome = run_diff(&mut a, &mut b).expect("honest remote");
    assert_eq!(outcome, DiffOutcome::default());
}

#[test]
fn single_changed_digest_found_with_few_queries() {
    let mut local = index_of((0..10_000).map(|i| (key(i), digest(i))));
    let mut remote = local.clone();
    remote.insert(&key(4321), digest(0));
    let outcome = run_diff(&mut local, &mut remote).expect("honest remote");
    assert_eq!(outcome.differing, vec![key(4321)]);
    assert!(outcome.local_only.is_empty());
    // One query per level on the way down to the bucket (10,000 keys: ~4 levels).
    assert!(outcome.queries < 20, "{} queries", outcome.queries);
    assert!(outcome.queries <= 6, "{} queries", outcome.queries);
}

#[test]
fn missing_keys_reported_in_the_right_list() {
    let base: Vec<(Vec<u8>, Digest)> = (0..5000).map(|i| (key(i), digest(i))).collect();
    let mut local = index_of(base.iter().cloned());
    let mut remote = index_of(base.iter().cloned());
    local.insert(b"only here", digest(1));
    remote.insert(b"only there", digest(2));
    remote.remove(&key(17));
    let outcome = run_diff(&mut local, &mut remote).expect("honest remote");
    assert_eq!(outcome.differing, vec![b"only there".to_vec()]);
    assert_eq!(
        set(&outcome.local_only),
        [b"only here".to_vec(), key(17)].into_iter().collect()
    );
    apply(&mut local, &remote, &outcome);
    assert_eq!(local.root(), remote.root());
}

#[test]
fn remote_empty_or_local_empty() {
    let mut full = index_of((0..300).map(|i| (key(i), digest(i))));
    let mut empty = MerkleIndex::new();
    let outcome = run_diff(&mut full, &mut empty).expect("honest remote");
    assert_eq!(outcome.queries, 0);
    assert_eq!(outcome.local_only.len(), 300);
    let outcome = run_diff(&mut empty, &mut full).expect("honest remote");
    assert_eq!(set(&outcome.differing).len(), 300);
    apply(&mut empty, &full, &outcome);
    assert_eq!(empty.root(), full.root());
}

#[test]
fn different_shapes_at_the_same_prefix_converge() {
    // 400 keys elsewhere, plus a group under the prefix 0xab: 17 keys (an inner node at depth
    // 2) on one side, 16 of them (a bucket) on the other, one with a different digest.
    let base: Vec<Vec<u8>> = (0u64..)
        .map(key)
        .filter(|key| key_path(key).0[0] != 0xab)
        .take(400)
        .collect();
    let group = keys_under(0xab, LEAF_CAPACITY + 1, "group");
    let seventeen = index_of(
        base.iter()
            .chain(&group)
            .map(|key| (key.clone(), digest(1))),
    );
    let mut sixteen = index_of(
        base.iter()
            .chain(&group[..LEAF_CAPACITY])
            .map(|key| (key.clone(), digest(1))),
    );
    sixteen.insert(&group[3], digest(2));

    let prefix = NodePath::root()
        .child(0xa)
        .and_then(|path| path.child(0xb))
        .expect("within depth");
    assert!(matches!(
        seventeen.clone().node(&prefix),
        NodeSummary::Inner { .. }
    ));
    assert!(matches!(sixteen.node(&prefix), NodeSummary::Leaf { .. }));

    // Local has the inner node, remote the bucket.
    let mut local = seventeen.clone();
    let outcome = run_diff(&mut local, &mut sixteen).expect("honest remote");
    assert_eq!(outcome.differing, vec![group[3].clone()]);
    assert_eq!(outcome.local_only, vec![group[LEAF_CAPACITY].clone()]);
    apply(&mut local, &sixteen, &outcome);
    assert_eq!(local.root(), sixteen.root());

    // Local has the bucket, remote the inner node.
    let mut local = sixteen.clone();
    let mut remote = seventeen.clone();
    let outcome = run_diff(&mut local, &mut remote).expect("honest remote");
    assert_eq!(
        set(&outcome.differing),
        [group[3].clone(), group[LEAF_CAPACITY].clone()]
            .into_iter()
            .collect()
    );
    assert!(outcome.local_only.is_empty());
    apply(&mut local, &remote, &outcome);
    assert_eq!(local.root(), remote.root());
}

#[test]
fn local_changes_during_a_session_cause_no_error() {
    let mut local = index_of((0..5000).map(|i| (key(i), digest(i))));
    let mut remote = local.clone();
    remote.insert(&key(10), digest(0));
    let mut diff = MerkleDiff::new(remote.root());
    let mut ask = diff.start(&mut local);
    let mut step = 0;
    while !ask.is_empty() {
        let answers = ask.iter().map(|path| (*path, remote.node(path))).collect();
        // Churn the local side between every step, including the key being synced.
        local.insert(&key(10), digest(step + 100));
        local.remove(&key(20 + step));
        local.insert(format!("new-{step}").as_bytes(), digest(step));
        ask = diff.on_answers(&mut local, answers).expect("honest remote");
        step += 1;
    }
    let outcome = diff.finish();
    assert!(outcome.differing.contains(&key(10)));
}

/// A session against `remote` that has sent its first request (the root).
fn started(local: &mut MerkleIndex, remote: &mut MerkleIndex) -> MerkleDiff {
    let mut diff = MerkleDiff::new(remote.root());
    assert_eq!(diff.start(local), vec![NodePath::root()]);
    diff
}

#[test]
fn malformed_answers_are_rejected() {
    let mut local = index_of((0..1000).map(|i| (key(i), digest(i))));
    let mut remote = local.clone();
    remote.insert(&key(1), digest(0));
    let root = NodePath::root();
    let leaf = |entries: Vec<(Vec<u8>, Digest)>| NodeSummary::Leaf { entries };

    let mut diff = started(&mut local, &mut remote);
    let stray = root.child(3).expect("valid nibble");
    assert_eq!(
        diff.on_answers(&mut local, vec![(stray, NodeSummary::Empty)]),
        Err(MerkleError::UnrequestedPath(stray))
    );

    let mut diff = started(&mut local, &mut remote);
    assert_eq!(
        diff.on_answers(&mut local, vec![]),
        Err(MerkleError::MissingAnswer(root))
    );

    let mut diff = started(&mut local, &mut remote);
    let answer = remote.node(&root);
    assert_eq!(
        diff.on_answers(&mut local, vec![(root, answer.clone()), (root, answer)]),
        Err(MerkleError::UnrequestedPath(root))
    );

    let mut diff = started(&mut local, &mut remote);
    let too_many = (0..MAX_LEAF_ENTRIES as u64 + 1)
        .map(|i| (key(i), digest(i)))
        .collect();
    assert_eq!(
        diff.on_answers(&mut local, vec![(root, leaf(too_many))]),
        Err(MerkleError::TooManyEntries {
            path: root,
            count: MAX_LEAF_ENTRIES + 1
        })
    );

    let mut diff = started(&mut local, &mut remote);
    let long = vec![(vec![b'x'; MAX_KEY_LEN + 1], digest(0))];
    assert_eq!(
        diff.on_answers(&mut local, vec![(root, leaf(long))]),
        Err(MerkleError::KeyTooLong {
            path: root,
            len: MAX_KEY_LEN + 1
        })
    );

    let mut diff = started(&mut local, &mut remote);
    let twice = vec![(key(1), digest(0)), (key(1), digest(1))];
    assert_eq!(
        diff.on_answers(&mut local, vec![(root, leaf(twice))]),
        Err(MerkleError::DuplicateKey(root))
    );

    // One honest step, then an entry that does not belong under the path asked.
    let mut diff = started(&mut local, &mut remote);
    let ask = diff
        .on_answers(&mut local, vec![(root, remote.node(&root))])
        .expect("honest answer");
    let path = ask[0];
    let outsider = (0u64..)
        .map(key)
        .find(|key| !path.contains(&key_path(key)))
        .expect("some key lies elsewhere");
    let answers = ask
        .iter()
        .map(|p| (*p, leaf(vec![(outsider.clone(), digest(0))])))
        .collect();
    assert_eq!(
        diff.on_answers(&mut local, answers),
        Err(MerkleError::EntryOutsidePath(path))
    );

    // No inner node at maximum depth.
    let mut deepest = root;
    for _ in 0..NodePath::MAX_DEPTH {
        deepest = deepest.child(1).expect("within depth");
    }
    let mut diff = MerkleDiff::new(remote.root());
    diff.queue.push_back(deepest);
    assert_eq!(diff.next_request(), vec![deepest]);
    let inner = NodeSummary::Inner {
        children: Box::new([digest(1); 16]),
    };
    assert_eq!(
        diff.on_answers(&mut local, vec![(deepest, inner)]),
        Err(MerkleError::InnerAtMaxDepth(deepest))
    );
}

#[test]
fn requests_are_bounded() {
    // Every child of the root differs: the remote has 16 times more keys under each.
    let mut local = index_of((0..200).map(|i| (key(i), digest(i))));
    let mut remote = index_of((0..20_000).map(|i| (key(i), digest(i + 1))));
    let mut diff = MerkleDiff::new(remote.root());
    let mut ask = diff.start(&mut local);
    let mut widest = 0;
    while !ask.is_empty() {
        widest = widest.max(ask.len());
        let answers = ask.iter().map(|path| (*path, remote.node(path))).collect();
        ask = diff.on_answers(&mut local, answers).expect("honest remote");
    }
    assert_eq!(widest, MAX_PATHS_PER_REQUEST);
    let outcome = diff.finish();
    assert_eq!(outcome.differing.len(), 20_000);
    apply(&mut local, &remote, &outcome);
    assert_eq!(local.root(), remote.root());
}

#[test]
fn random_indexes_converge() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for case in 0..300 {
        let universe = 1 + rng.below(if case % 10 == 0 { 5000 } else { 400 });
        let mut local = MerkleIndex::new();
        for _ in 0..rng.below(universe + 1) {
            local.insert(&key(rng.below(universe)), digest(rng.below(3)));
        }
        let mut remote = if case % 2 == 0 {
            // A few edits away from the local state.
            let mut remote = local.clone();
            for _ in 0..rng.below(40) {
                let key = key(rng.below(universe));
                if rng.below(3) == 0 {
                    remote.remove(&key);
                } else {
                    remote.insert(&key, digest(rng.below(3)));
                }
            }
            remote
        } else {
            let mut remote = MerkleIndex::new();
            for _ in 0..rng.below(universe + 1) {
                remote.insert(&key(rng.below(universe)), digest(rng.below(3)));
            }
            remote
        };

        let (differing, local_only) = expected(&local, &remote);
        let outcome = run_diff(&mut local, &mut remote).expect("honest remote");
        assert_eq!(set(&outcome.differing), differing, "case {case}");
        assert_eq!(set(&outcome.local_only), local_only, "case {case}");
        apply(&mut local, &remote, &outcome);
        assert_eq!(local.root(), remote.root(), "case {case}");
        assert_eq!(local.len(), remote.len(), "case {case}");
    }
}

#[test]
fn wire_paths_are_checked() {
    let path = NodePath::root()
        .child(0xa)
        .and_then(|p| p.child(0xb))
        .and_then(|p| p.child(0xc))
        .expect("within depth");
    assert_eq!(format!("{path:?}"), "m/abc");
    let wire = WirePath::from(path);
    assert_eq!((wire.depth, wire.prefix.clone()), (3, vec![0xab, 0xc0]));
    assert_eq!(NodePath::try_from(wire), Ok(path));
    let bad = |depth: u8, prefix: Vec<u8>| NodePath::try_from(WirePath { depth, prefix });
    assert_eq!(bad(3, vec![0xab, 0xc1]), Err(MerkleError::InvalidPath));
    assert_eq!(bad(3, vec![0xab]), Err(MerkleError::InvalidPath));
    assert_eq!(bad(65, vec![0; 33]), Err(MerkleError::InvalidPath));
    assert_eq!(bad(64, vec![0x11; 32]).map(|p| p.depth()), Ok(64));
    assert_eq!(bad(0, vec![]), Ok(NodePath::root()));
}

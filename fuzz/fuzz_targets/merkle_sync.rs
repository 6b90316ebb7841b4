//! Fuzz target `merkle_sync`: the Merkle anti-entropy of `beaufort_core::merkle` (`MerkleIndex`,
//! `MerkleDiff`, `NodeSummary`) against honest and hostile remotes.
//!
//! The input describes two key sets (a block of keys both sides hold with equal digests, then
//! fuzzed edits to either side), a history of insertions and removals for the remote's index, a
//! script of lies for the remote's answers, and changes to the local index during a session.
//!
//! Asserted, with honest answers:
//! * the index is canonical: an index built through any history of inserts, replacements and
//!   removals has the root, `len`, `get` and `iter` of one built directly from the final pairs;
//! * honest answers pass the wire format's bounds and survive its round trip;
//! * the diff finds exactly the keys that differ, in both directions: `differing` is every key
//!   the remote holds with another digest or that the local side lacks, `local_only` every key
//!   only the local side holds, neither with duplicates; every request stays within
//!   `MAX_PATHS_PER_REQUEST` and no path is asked twice;
//! * answers in any order are accepted, and changes to the local index between steps never make
//!   an honest answer an error.
//!
//! Asserted, with hostile answers (answers replaced, dropped, duplicated, reordered, answers to
//! paths never asked, oversized or misplaced leaves, made-up inner hashes): no panic, bounded
//! requests, no path asked twice, and whatever the session reports is grounded: every `differing`
//! key was named by a leaf answer the session accepted, every `local_only` key is held locally,
//! without duplicates.

#![no_main]

use arbitrary::Arbitrary;
use beaufort_core::merkle::{
    MerkleDiff, MerkleIndex, NodePath, NodeSummary, MAX_LEAF_ENTRIES, MAX_PATHS_PER_REQUEST,
};
use beaufort_core::wire::{decode, encode, SyncMessage};
use beaufort_crypto::hash::{hash, Digest, Domain};
use libfuzzer_sys::fuzz_target;
use std::collections::{BTreeMap, BTreeSet, HashSet};

/// Most keys both sides share before the edits (enough for inner nodes two levels deep).
const MAX_SHARED: u16 = 260;
/// Most edits, history steps, lie batches and local changes taken from one input.
const MAX_EDITS: usize = 64;
/// Most requests one session may take before the harness stops it (an honest session over a few
/// hundred keys needs a handful).
const MAX_STEPS: usize = 80;

#[derive(Arbitrary, Debug)]
struct Input {
    /// Keys `k0`, `k1`, … held by both sides with equal digests (modulo [`MAX_SHARED`]).
    shared: u16,
    /// Then changes to either side.
    edits: Vec<Edit>,
    /// Extra history for the remote's index: keys inserted and removed again before the diff.
    churn: Vec<(KeyChoice, u8)>,
    /// What the hostile remote does to each batch of answers (honest once exhausted).
    lies: Vec<Vec<Lie>>,
    /// Changes to the local index between the steps of a session.
    local_changes: Vec<Edit>,
}

#[derive(Arbitrary, Debug, Clone)]
enum KeyChoice {
    /// `k<n>`, which may collide with the shared block.
    Numbered(u16),
    /// Any short byte string (the index takes keys up to 256 bytes, the empty one included).
    Raw(Vec<u8>),
}

impl KeyChoice {
    fn bytes(&self) -> Vec<u8> {
        match self {
            KeyChoice::Numbered(n) => numbered(n % (2 * MAX_SHARED)),
            KeyChoice::Raw(bytes) => bytes.iter().copied().take(40).collect(),
        }
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Side {
    Local,
    Remote,
    Both,
}

#[derive(Arbitrary, Debug, Clone)]
struct Edit {
    side: Side,
    key: KeyChoice,
    /// The new digest's seed, or `None` to remove the key.
    digest: Option<u8>,
}

#[derive(Arbitrary, Debug, Clone)]
enum Lie {
    /// Replace the answer at this position.
    Replace { at: u8, summary: FakeSummary },
    /// Leave the answer at this position out.
    Drop { at: u8 },
    /// Send the answer at this position twice.
    Duplicate { at: u8 },
    /// Swap two answers (allowed: answers come in any order).
    Swap { a: u8, b: u8 },
    /// Answer a path given by these nibbles, asked or not.
    Unasked {
        nibbles: Vec<u8>,
        summary: FakeSummary,
    },
}

#[derive(Arbitrary, Debug, Clone)]
enum FakeSummary {
    Empty,
    /// Children digests: 0 is the empty child, anything else a made-up hash.
    Inner([u8; 16]),
    /// Entries (possibly outside the path, duplicated, too many).
    Leaf(Vec<(KeyChoice, u8)>),
    /// A leaf built from `count` keys of the shared block, with digests from `seed`.
    BigLeaf {
        count: u8,
        seed: u8,
    },
    /// What the local side itself would answer (a remote mirroring us).
    Mirror,
}

fn numbered(n: u16) -> Vec<u8> {
    format!("k{n}").into_bytes()
}

fn digest(seed: u8) -> Digest {
    hash(Domain::RegisterState, &[b"fuzz", &[seed]])
}

type Model = BTreeMap<Vec<u8>, Digest>;

fn apply(model: &mut Model, index: &mut MerkleIndex, key: Vec<u8>, digest: Option<u8>) {
    match digest {
        Some(seed) => {
            let new = self::digest(seed);
            assert_eq!(index.insert(&key, new), model.insert(key, new));
        }
        None => assert_eq!(index.remove(&key), model.remove(&key)),
    }
}

/// Checks that `index` holds exactly `model`, and that its root is that of an index built
/// directly from `model` in reverse key order (the tree's shape depends on the pairs only).
fn check_canonical(index: &mut MerkleIndex, model: &Model) {
    assert_eq!(index.len(), model.len());
    assert_eq!(index.is_empty(), model.is_empty());
    let listed: Model = index.iter().map(|(k, d)| (k.to_vec(), d)).collect();
    assert_eq!(listed.len(), index.len(), "iter lists a key twice");
    assert_eq!(&listed, model);
    for (key, digest) in model {
        assert_eq!(index.get(key), Some(*digest));
    }
    let mut fresh = MerkleIndex::new();
    for (key, digest) in model.iter().rev() {
        fresh.insert(key, *digest);
    }
    assert_eq!(index.root(), fresh.root(), "the root depends on history");
    if model.is_empty() {
        assert_eq!(index.root(), Digest::ZERO);
    }
}

fuzz_target!(|input: Input| {
    let shared = input.shared % (MAX_SHARED + 1);
    let (mut local_model, mut remote_model) = (Model::new(), Model::new());
    let (mut local, mut remote) = (MerkleIndex::new(), MerkleIndex::new());
    for n in 0..shared {
        let key = numbered(n);
        let seed = (n % 251) as u8;
        apply(&mut local_model, &mut local, key.clone(), Some(seed));
        apply(&mut remote_model, &mut remote, key, Some(seed));
    }
    // The remote's history: keys that come and go before the diff.
    for (key, seed) in input.churn.iter().take(MAX_EDITS) {
        let key = key.bytes();
        if !remote_model.contains_key(&key) {
            apply(&mut remote_model, &mut remote, key.clone(), Some(*seed));
            remote.root(); // hashes cached half-way through the history
            apply(&mut remote_model, &mut remote, key, None);
        }
    }
    for edit in input.edits.iter().take(MAX_EDITS) {
        let key = edit.key.bytes();
        if matches!(edit.side, Side::Local | Side::Both) {
            apply(&mut local_model, &mut local, key.clone(), edit.digest);
        }
        if matches!(edit.side, Side::Remote | Side::Both) {
            apply(&mut remote_model, &mut remote, key, edit.digest);
        }
    }
    check_canonical(&mut local, &local_model);
    check_canonical(&mut remote, &remote_model);

    // Honest remotes, both directions.
    honest_session(&mut local, &local_model, &mut remote, &remote_model);
    honest_session(&mut remote, &remote_model, &mut local, &local_model);

    // A hostile remote, while the local index keeps changing.
    let lies: Vec<&Vec<Lie>> = input.lies.iter().take(MAX_EDITS).collect();
    let changes: Vec<&Edit> = input.local_changes.iter().take(MAX_EDITS).collect();
    hostile_session(&mut local, local_model, &mut remote, &lies, &changes);
});

/// What `local` should find against `remote`: (differing, local_only).
fn expected(local: &Model, remote: &Model) -> (BTreeSet<Vec<u8>>, BTreeSet<Vec<u8>>) {
    let differing = remote
        .iter()
        .filter(|(key, digest)| local.get(*key) != Some(digest))
        .map(|(key, _)| key.clone())
        .collect();
    let local_only = local
        .keys()
        .filter(|key| !remote.contains_key(*key))
        .cloned()
        .collect();
    (differing, local_only)
}

/// The answers an honest remote sends, checked against the wire format's bounds.
fn honest_answers(remote: &mut MerkleIndex, ask: &[NodePath]) -> Vec<(NodePath, NodeSummary)> {
    let nodes: Vec<(NodePath, NodeSummary)> =
        ask.iter().map(|path| (*path, remote.node(path))).collect();
    for (_, summary) in &nodes {
        if let NodeSummary::Leaf { entries } = summary {
            assert!(
                entries.len() <= MAX_LEAF_ENTRIES,
                "an honest leaf too large"
            );
        }
    }
    let message = SyncMessage::MerkleNodes {
        session: 7,
        nodes: nodes.clone(),
    };
    let bytes = encode(&message).expect("honest answers encode");
    let decoded = decode(&bytes, 4).expect("honest answers pass the wire bounds");
    assert_eq!(decoded, message);
    nodes
}

/// Checks a request: bounded, within the depth limit, no path asked before in the session.
fn check_request(ask: &[NodePath], asked: &mut HashSet<NodePath>) {
    assert!(ask.len() <= MAX_PATHS_PER_REQUEST, "request too large");
    for path in ask {
        assert!(path.depth() <= NodePath::MAX_DEPTH);
        assert!(asked.insert(*path), "path {path:?} asked twice");
    }
}

fn honest_session(
    local: &mut MerkleIndex,
    local_model: &Model,
    remote: &mut MerkleIndex,
    remote_model: &Model,
) {
    let mut diff = MerkleDiff::new(remote.root());
    let mut asked = HashSet::new();
    let mut ask = diff.start(local);
    let mut steps = 0;
    while !ask.is_empty() {
        steps += 1;
        assert!(steps <= MAX_STEPS, "an honest session does not end");
        check_request(&ask, &mut asked);
        let mut answers = honest_answers(remote, &ask);
        answers.reverse(); // any order will do
        ask = match diff.on_answers(local, answers) {
            Ok(ask) => ask,
            Err(e) => panic!("honest answers rejected: {e}"),
        };
    }
    let outcome = diff.finish();
    let (want_differing, want_local_only) = expected(local_model, remote_model);
    let differing = no_duplicates(&outcome.differing, "differing");
    let local_only = no_duplicates(&outcome.local_only, "local_only");
    assert_eq!(differing, want_differing, "honest diff: differing keys");
    assert_eq!(local_only, want_local_only, "honest diff: local-only keys");
}

fn no_duplicates(keys: &[Vec<u8>], what: &str) -> BTreeSet<Vec<u8>> {
    let set: BTreeSet<Vec<u8>> = keys.iter().cloned().collect();
    assert_eq!(set.len(), keys.len(), "{what} lists a key twice");
    set
}

fn path_of(nibbles: &[u8]) -> NodePath {
    let mut path = NodePath::root();
    for nibble in nibbles.iter().take(NodePath::MAX_DEPTH + 2) {
        // `child` refuses nibbles above 15 and paths past the maximum depth.
        if let Some(child) = path.child(nibble % 17) {
            path = child;
        }
    }
    path
}

fn fake(summary: &FakeSummary, path: &NodePath, local: &mut MerkleIndex) -> NodeSummary {
    match summary {
        FakeSummary::Empty => NodeSummary::Empty,
        FakeSummary::Inner(seeds) => NodeSummary::Inner {
            children: Box::new(seeds.map(|seed| match seed {
                0 => Digest::ZERO,
                seed => digest(seed),
            })),
        },
        FakeSummary::Leaf(entries) => NodeSummary::Leaf {
            entries: entries
                .iter()
                .take(2 * MAX_LEAF_ENTRIES)
                .map(|(key, seed)| (key.bytes(), digest(*seed)))
                .collect(),
        },
        FakeSummary::BigLeaf { count, seed } => NodeSummary::Leaf {
            entries: (0..u16::from(*count))
                .map(|n| (numbered(n), digest(seed.wrapping_add(n as u8))))
                .collect(),
        },
        FakeSummary::Mirror => local.node(path),
    }
}

/// Applies one batch of lies to the honest answers. Returns whether the batch is still honest
/// (only reordered).
fn lie(answers: &mut Vec<(NodePath, NodeSummary)>, lies: &[Lie], local: &mut MerkleIndex) -> bool {
    let mut honest = true;
    for lie in lies.iter().take(8) {
        let len = answers.len();
        match lie {
            Lie::Replace { at, summary } if len > 0 => {
                let i = usize::from(*at) % len;
                let path = answers[i].0;
                answers[i].1 = fake(summary, &path, local);
                honest = false;
            }
            Lie::Drop { at } if len > 0 => {
                answers.remove(usize::from(*at) % len);
                honest = false;
            }
            Lie::Duplicate { at } if len > 0 => {
                let copy = answers[usize::from(*at) % len].clone();
                answers.push(copy);
                honest = false;
            }
            Lie::Swap { a, b } if len > 0 => {
                answers.swap(usize::from(*a) % len, usize::from(*b) % len)
            }
            Lie::Unasked { nibbles, summary } => {
                let path = path_of(nibbles);
                let summary = fake(summary, &path, local);
                answers.push((path, summary));
                honest = false;
            }
            _ => {}
        }
    }
    honest
}

fn hostile_session(
    local: &mut MerkleIndex,
    mut local_model: Model,
    remote: &mut MerkleIndex,
    lies: &[&Vec<Lie>],
    changes: &[&Edit],
) {
    let mut diff = MerkleDiff::new(remote.root());
    let mut asked = HashSet::new();
    let mut ever_local: BTreeSet<Vec<u8>> = local_model.keys().cloned().collect();
    let mut named: BTreeSet<Vec<u8>> = BTreeSet::new();
    let mut ask = diff.start(local);
    let mut step = 0;
    while !ask.is_empty() && step < MAX_STEPS {
        check_request(&ask, &mut asked);
        let mut answers = honest_answers(remote, &ask);
        let honest = match lies.get(step) {
            Some(batch) => lie(&mut answers, batch, local),
            None => true,
        };
        // The local side changes while the answers are on their way.
        if let Some(edit) = changes.get(step) {
            if !matches!(edit.side, Side::Remote) {
                let key = edit.key.bytes();
                ever_local.insert(key.clone());
                apply(&mut local_model, local, key, edit.digest);
            }
        }
        step += 1;
        let leaves: Vec<Vec<u8>> = answers
            .iter()
            .filter_map(|(_, summary)| match summary {
                NodeSummary::Leaf { entries } => Some(entries.iter().map(|(k, _)| k.clone())),
                _ => None,
            })
            .flatten()
            .collect();
        match diff.on_answers(local, answers) {
            Ok(next) => {
                named.extend(leaves);
                ask = next;
            }
            // A malformed batch ends the session; the caller drops the peer.
            Err(e) => {
                assert!(
                    !honest,
                    "honest answers rejected while the local index changed: {e}"
                );
                break;
            }
        }
    }
    let outcome = diff.finish();
    let differing = no_duplicates(&outcome.differing, "differing");
    let local_only = no_duplicates(&outcome.local_only, "local_only");
    assert!(
        differing.is_subset(&named),
        "a differing key no accepted answer named"
    );
    assert!(
        local_only.is_subset(&ever_local),
        "a local-only key the local side never held"
    );
}

//! A canonical Merkle index over the key space, and the anti-entropy diff that runs on it.
//!
//! BeauForT replicates state by gossip (paper §3.2.4): two replicas compare the root hashes of a
//! Merkle tree over all keys, descend only where hashes differ, and finally exchange the full
//! register states of the keys that differ. This module provides the two halves of that:
//!
//! * [`MerkleIndex`]: a 16-ary trie over the key's [`key_path`] (the BLAKE3 hash of the key), whose
//!   leaves hold `(key, digest)` pairs, the digest being the hash of the key's register state
//!   (computed by the caller). Its shape, and therefore every hash in it, is a function of the
//!   current set of pairs only — never of insertion order or history — so two replicas holding the
//!   same state have the same root, and any two replicas can compare any prefix of the key space.
//! * [`MerkleDiff`]: a sans-IO driver for one anti-entropy session against one remote replica. It
//!   tells the caller which [`NodePath`]s to ask the remote about, consumes the remote's
//!   [`NodeSummary`] answers, and ends with the keys to fetch from and push to the remote.
//!
//! # Canonical shape
//!
//! A node at depth `d` covers every key whose path starts with the node's `d` nibbles. If it covers
//! at most [`LEAF_CAPACITY`] keys (or sits at [`NodePath::MAX_DEPTH`], which only a full 256-bit
//! hash collision could fill), it is a *leaf bucket* whose hash is
//! `H_leaf("bucket", h_1 ‖ … ‖ h_n)` over its entries sorted by path, with
//! `h_i = H_leaf(path_i, key_i, digest_i)`. Otherwise it is an *inner node* whose hash is
//! `H_node(c_0 ‖ … ‖ c_15)` over its sixteen children's hashes, an empty child counting as
//! [`Digest::ZERO`]. The empty tree's root is [`Digest::ZERO`].
//!
//! Because the hash of a prefix only depends on the keys under it, a replica can compute the hash
//! any prefix *would* have, even when its own tree is shaped differently there (one side has 17 keys
//! under a prefix and an inner node, the other has 16 and a leaf bucket). The diff relies on that.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;

use beaufort_crypto::hash::{hash, Digest, Domain};
use serde::{Deserialize, Serialize};

/// The most keys a node may cover and still be a leaf bucket. Part of the hash format: every
/// replica must use the same value, or equal states would have different roots.
pub const LEAF_CAPACITY: usize = 16;

/// The most entries accepted in a remote [`NodeSummary::Leaf`]; anything larger is a malformed
/// answer. An honest replica sends at most [`LEAF_CAPACITY`] (barring full hash collisions); the
/// bound caps how much work one answer from a faulty replica can cause.
pub const MAX_LEAF_ENTRIES: usize = 64;

/// The most paths a [`MerkleDiff`] asks about in one request, bounding the size of a request and of
/// its answer.
pub const MAX_PATHS_PER_REQUEST: usize = 64;

/// The longest key, in bytes, accepted from a remote. The store must not insert longer keys into a
/// [`MerkleIndex`], since peers would reject the leaves that contain them.
pub const MAX_KEY_LEN: usize = 256;

/// Children per inner node: one per nibble value.
const FANOUT: usize = 16;

/// Where `key` lives in the trie: the BLAKE3 hash of the key. Its nibbles, most significant first,
/// select the child at each depth.
pub fn key_path(key: &[u8]) -> Digest {
    hash(Domain::MerkleLeaf, &[key])
}

/// Nibble `i` (0 = most significant nibble of byte 0) of a 32-byte path.
fn nibble_at(bytes: &[u8; 32], i: usize) -> usize {
    let byte = bytes[i / 2];
    usize::from(if i % 2 == 0 { byte >> 4 } else { byte & 0x0f })
}

/// A prefix of the key space: the first `depth` nibbles of a key path. It names a node of the
/// canonical tree and is what the two sides of a diff exchange to say which node they mean.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "WirePath", into = "WirePath")]
pub struct NodePath {
    /// The prefix nibbles, packed two per byte; nibbles at and beyond `depth` are zero, so equal
    /// prefixes compare and hash equal.
    prefix: [u8; 32],
    depth: u8,
}

impl NodePath {
    /// The deepest a path can go: a key path has 64 nibbles.
    pub const MAX_DEPTH: usize = 64;

    /// The empty prefix, naming the root (all keys).
    pub fn root() -> NodePath {
        NodePath {
            prefix: [0; 32],
            depth: 0,
        }
    }

    /// The path one level down, following `nibble`. `None` if this path is already at
    /// [`Self::MAX_DEPTH`] or `nibble` is not below 16.
    pub fn child(&self, nibble: u8) -> Option<NodePath> {
        let depth = self.depth();
        if depth >= Self::MAX_DEPTH || usize::from(nibble) >= FANOUT {
            return None;
        }
        let mut prefix = self.prefix;
        let shift = if depth % 2 == 0 { 4 } else { 0 };
        prefix[depth / 2] |= nibble << shift;
        Some(NodePath {
            prefix,
            depth: self.depth + 1,
        })
    }

    /// How many nibbles the prefix has (0 for the root, at most [`Self::MAX_DEPTH`]).
    pub fn depth(&self) -> usize {
        usize::from(self.depth)
    }

    /// Whether the key path `path` (see [`key_path`]) starts with this prefix, i.e. whether the key
    /// belongs under the node this path names.
    pub fn contains(&self, path: &Digest) -> bool {
        let depth = self.depth();
        let whole = depth / 2;
        if self.prefix[..whole] != path.0[..whole] {
            return false;
        }
        depth % 2 == 0 || self.prefix[whole] >> 4 == path.0[whole] >> 4
    }

    /// Nibble `i` of the prefix; `i` must be below the depth.
    fn nibble(&self, i: usize) -> usize {
        nibble_at(&self.prefix, i)
    }
}

impl fmt::Debug for NodePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("m/")?;
        for i in 0..self.depth() {
            write!(f, "{:x}", self.nibble(i))?;
        }
        Ok(())
    }
}

/// The encoding of a [`NodePath`] on the wire: the depth and only the bytes the prefix uses, so a
/// request for 64 shallow paths stays small. Decoding checks it is canonical.
#[derive(Serialize, Deserialize)]
struct WirePath {
    depth: u8,
    prefix: Vec<u8>,
}

impl From<NodePath> for WirePath {
    fn from(path: NodePath) -> WirePath {
        WirePath {
            depth: path.depth,
            prefix: path.prefix[..path.depth().div_ceil(2)].to_vec(),
        }
    }
}

impl TryFrom<WirePath> for NodePath {
    type Error = MerkleError;

    fn try_from(wire: WirePath) -> Result<NodePath, MerkleError> {
        let depth = usize::from(wire.depth);
        if depth > NodePath::MAX_DEPTH || wire.prefix.len() != depth.div_ceil(2) {
            return Err(MerkleError::InvalidPath);
        }
        if depth % 2 == 1 && wire.prefix[depth / 2] & 0x0f != 0 {
            return Err(MerkleError::InvalidPath);
        }
        let mut prefix = [0; 32];
        prefix[..wire.prefix.len()].copy_from_slice(&wire.prefix);
        Ok(NodePath {
            prefix,
            depth: wire.depth,
        })
    }
}

/// What one replica says about one node of its tree, in answer to a [`NodePath`]. This is the unit
/// of the anti-entropy exchange: the remote sends these, [`MerkleDiff`] compares them with the local
/// index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeSummary {
    /// No key lies under the path.
    Empty,
    /// More than [`LEAF_CAPACITY`] keys lie under the path: here are the hashes of its sixteen
    /// children ([`Digest::ZERO`] for an empty child), so the asker can descend where they differ.
    Inner {
        /// Child hashes, indexed by the next nibble (boxed to keep the other variants small).
        children: Box<[Digest; 16]>,
    },
    /// Few enough keys lie under the path to list them: each key with the digest of its state,
    /// sorted by key path.
    Leaf {
        /// `(key, digest)` pairs.
        entries: Vec<(Vec<u8>, Digest)>,
    },
}

/// Why a remote's answer was rejected. Every variant means the remote sent something an honest
/// replica never sends, so the caller may treat the peer as faulty; the session should be dropped.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MerkleError {
    /// An answer for a path that was not in the last request, or a second answer for one.
    #[error("answer for path {0:?}, which was not asked or was already answered")]
    UnrequestedPath(NodePath),
    /// The answers to a request left one of its paths unanswered.
    #[error("no answer for requested path {0:?}")]
    MissingAnswer(NodePath),
    /// A leaf summary listing more than [`MAX_LEAF_ENTRIES`] entries.
    #[error("leaf at {path:?} lists {count} entries")]
    TooManyEntries {
        /// The path answered.
        path: NodePath,
        /// How many entries it listed.
        count: usize,
    },
    /// A leaf summary containing a key longer than [`MAX_KEY_LEN`].
    #[error("leaf at {path:?} holds a key of {len} bytes")]
    KeyTooLong {
        /// The path answered.
        path: NodePath,
        /// The key's length.
        len: usize,
    },
    /// A leaf summary containing a key whose path does not start with the requested prefix.
    #[error("leaf at {0:?} holds a key that does not belong under it")]
    EntryOutsidePath(NodePath),
    /// A leaf summary listing the same key twice.
    #[error("leaf at {0:?} lists a key twice")]
    DuplicateKey(NodePath),
    /// An inner summary at [`NodePath::MAX_DEPTH`], where no node can have children.
    #[error("inner node at maximum depth {0:?}")]
    InnerAtMaxDepth(NodePath),
    /// An encoded [`NodePath`] that is too deep, of the wrong length or not canonical.
    #[error("malformed node path")]
    InvalidPath,
}

/// One key in a leaf bucket.
#[derive(Clone)]
struct Entry {
    /// `key_path(key)`, kept to route and sort without rehashing.
    path: Digest,
    key: Box<[u8]>,
    digest: Digest,
}

impl Entry {
    /// The entry's contribution to its bucket's hash.
    fn hash(&self) -> Digest {
        hash(
            Domain::MerkleLeaf,
            &[&self.path.0, &self.key, &self.digest.0],
        )
    }
}

/// Hash of a leaf bucket holding `entries` (in path order); [`Digest::ZERO`] if there are none.
fn bucket_hash<'a>(entries: impl ExactSizeIterator<Item = &'a Entry>) -> Digest {
    if entries.len() == 0 {
        return Digest::ZERO;
    }
    let mut concat = Vec::with_capacity(32 * entries.len());
    for entry in entries {
        concat.extend_from_slice(&entry.hash().0);
    }
    hash(Domain::MerkleLeaf, &[b"bucket", &concat])
}

/// Hash of an inner node from its children's hashes.
fn inner_hash(children: &[Digest; FANOUT]) -> Digest {
    let mut concat = [0u8; 32 * FANOUT];
    for (chunk, child) in concat.chunks_exact_mut(32).zip(children) {
        chunk.copy_from_slice(&child.0);
    }
    hash(Domain::MerkleNode, &[&concat])
}

/// A node of the trie, with its cached hash.
#[derive(Clone)]
struct Node {
    /// Valid when `dirty` is false.
    hash: Digest,
    /// Set on every node an update passes through; cleared when the hash is recomputed.
    dirty: bool,
    kind: Kind,
}

/// Whether a node is a bucket or has children.
#[derive(Clone)]
enum Kind {
    /// A leaf bucket: entries sorted by `(path, key)`. At most [`LEAF_CAPACITY`] unless at
    /// maximum depth. Only the root may be an empty leaf.
    Leaf(Vec<Entry>),
    /// An inner node covering `count` (> [`LEAF_CAPACITY`]) keys. Empty children are `None`.
    Inner {
        children: [Option<Box<Node>>; FANOUT],
        count: usize,
    },
}

/// What an insertion did.
#[derive(PartialEq, Eq)]
enum Inserted {
    /// The key was new.
    Added,
    /// The key was present with this other digest.
    Replaced(Digest),
    /// The key was present with the same digest: nothing changed.
    Unchanged(Digest),
}

impl Node {
    /// A leaf bucket holding `entries` (sorted by path), hash not yet computed.
    fn leaf(entries: Vec<Entry>) -> Node {
        Node {
            hash: Digest::ZERO,
            dirty: true,
            kind: Kind::Leaf(entries),
        }
    }

    /// The canonical node at `depth` for `entries` (sorted by path, all sharing the node's prefix).
    fn build(entries: Vec<Entry>, depth: usize) -> Node {
        if entries.len() <= LEAF_CAPACITY || depth >= NodePath::MAX_DEPTH {
            return Node::leaf(entries);
        }
        let count = entries.len();
        let mut groups: [Vec<Entry>; FANOUT] = Default::default();
        for entry in entries {
            groups[nibble_at(&entry.path.0, depth)].push(entry);
        }
        let children = groups
            .map(|group| (!group.is_empty()).then(|| Box::new(Node::build(group, depth + 1))));
        Node {
            hash: Digest::ZERO,
            dirty: true,
            kind: Kind::Inner { children, count },
        }
    }

    /// How many keys the subtree holds.
    fn len(&self) -> usize {
        match &self.kind {
            Kind::Leaf(entries) => entries.len(),
            Kind::Inner { count, .. } => *count,
        }
    }

    /// Inserts or replaces `key` in this subtree at `depth`, splitting buckets that overflow.
    fn insert(&mut self, depth: usize, path: Digest, key: &[u8], digest: Digest) -> Inserted {
        let inserted = match &mut self.kind {
            Kind::Leaf(entries) => {
                match entries.binary_search_by(|e| (&e.path, &*e.key).cmp(&(&path, key))) {
                    Ok(i) if entries[i].digest == digest => Inserted::Unchanged(digest),
                    Ok(i) => Inserted::Replaced(std::mem::replace(&mut entries[i].digest, digest)),
                    Err(i) => {
                        let key = key.into();
                        entries.insert(i, Entry { path, key, digest });
                        if entries.len() > LEAF_CAPACITY && depth < NodePath::MAX_DEPTH {
                            *self = Node::build(std::mem::take(entries), depth);
                        }
                        Inserted::Added
                    }
                }
            }
            Kind::Inner { children, count } => {
                let slot = &mut children[nibble_at(&path.0, depth)];
                let inserted = match slot {
                    Some(child) => child.insert(depth + 1, path, key, digest),
                    None => {
                        let key = key.into();
                        *slot = Some(Box::new(Node::leaf(vec![Entry { path, key, digest }])));
                        Inserted::Added
                    }
                };
                if inserted == Inserted::Added {
                    *count += 1;
                }
                inserted
            }
        };
        if !matches!(inserted, Inserted::Unchanged(_)) {
            self.dirty = true;
        }
        inserted
    }

    /// Removes `key` from this subtree at `depth`, collapsing inner nodes that shrink to a bucket.
    fn remove(&mut self, depth: usize, path: &Digest, key: &[u8]) -> Option<Digest> {
        let removed = match &mut self.kind {
            Kind::Leaf(entries) => {
                let i = entries
                    .binary_search_by(|e| (&e.path, &*e.key).cmp(&(path, key)))
                    .ok()?;
                entries.remove(i).digest
            }
            Kind::Inner { children, count } => {
                let slot = &mut children[nibble_at(&path.0, depth)];
                let child = slot.as_mut()?;
                let removed = child.remove(depth + 1, path, key)?;
                if child.len() == 0 {
                    *slot = None;
                }
                *count -= 1;
                if *count <= LEAF_CAPACITY {
                    // Collapse back into a bucket. Children in nibble order, each in path order,
                    // concatenate into path order.
                    let mut entries = Vec::with_capacity(*count);
                    for child in children.iter_mut().flatten() {
                        child.drain_into(&mut entries);
                    }
                    self.kind = Kind::Leaf(entries);
                }
                removed
            }
        };
        self.dirty = true;
        Some(removed)
    }

    /// Moves every entry of the subtree, in path order, to `out`.
    fn drain_into(&mut self, out: &mut Vec<Entry>) {
        match &mut self.kind {
            Kind::Leaf(entries) => out.append(entries),
            Kind::Inner { children, .. } => {
                for child in children.iter_mut().flatten() {
                    child.drain_into(out);
                }
            }
        }
    }

    /// Appends references to every entry of the subtree, in path order, to `out`.
    fn collect<'a>(&'a self, out: &mut Vec<&'a Entry>) {
        match &self.kind {
            Kind::Leaf(entries) => out.extend(entries),
            Kind::Inner { children, .. } => {
                for child in children.iter().flatten() {
                    child.collect(out);
                }
            }
        }
    }

    /// Recomputes the hashes of dirty nodes in the subtree and returns this node's hash.
    fn refresh(&mut self) -> Digest {
        if self.dirty {
            self.hash = match &mut self.kind {
                Kind::Leaf(entries) => bucket_hash(entries.iter()),
                Kind::Inner { children, .. } => {
                    inner_hash(&children.each_mut().map(|child| match child {
                        Some(child) => child.refresh(),
                        None => Digest::ZERO,
                    }))
                }
            };
            self.dirty = false;
        }
        self.hash
    }
}

/// The local view of one prefix, resolved against a refreshed tree.
enum Found<'a> {
    /// The prefix names an inner node of the local tree.
    Inner(&'a [Option<Box<Node>>; FANOUT]),
    /// The prefix names a leaf bucket, lies inside one, or lies under an empty child: these are
    /// all local entries under it, in path order (possibly none).
    Entries(Vec<&'a Entry>),
}

impl<'a> Found<'a> {
    /// The canonical hashes of the sixteen children of the prefix, which is at `depth`. For an
    /// inner node these are its children's cached hashes; for a handful of entries they are the
    /// hashes of the buckets the entries would form, which is what a tree shaped differently here
    /// reports.
    fn children_hashes(&self, depth: usize) -> [Digest; FANOUT] {
        match self {
            Found::Inner(children) => children
                .each_ref()
                .map(|child| child.as_ref().map_or(Digest::ZERO, |child| child.hash)),
            Found::Entries(entries) => {
                let mut groups: [Vec<&Entry>; FANOUT] = Default::default();
                for &entry in entries {
                    groups[nibble_at(&entry.path.0, depth)].push(entry);
                }
                groups.map(|group| bucket_hash(group.into_iter()))
            }
        }
    }

    /// Every local entry under the prefix, in path order.
    fn into_entries(self) -> Vec<&'a Entry> {
        match self {
            Found::Inner(children) => {
                let mut out = Vec::new();
                for child in children.iter().flatten() {
                    child.collect(&mut out);
                }
                out
            }
            Found::Entries(entries) => entries,
        }
    }
}

/// The canonical Merkle index of a replica's state: which keys it holds and the digest of each
/// key's register state. Updates are cheap and lazy; the root and any node summary are available for
/// comparison with other replicas.
#[derive(Clone)]
pub struct MerkleIndex {
    root: Node,
}

impl Default for MerkleIndex {
    fn default() -> Self {
        MerkleIndex::new()
    }
}

impl fmt::Debug for MerkleIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MerkleIndex")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl MerkleIndex {
    /// An empty index (root [`Digest::ZERO`]).
    pub fn new() -> MerkleIndex {
        MerkleIndex {
            root: Node::leaf(Vec::new()),
        }
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.root.len()
    }

    /// Whether the index holds no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The digest recorded for `key`, if present.
    pub fn get(&self, key: &[u8]) -> Option<Digest> {
        let path = key_path(key);
        let mut node = &self.root;
        let mut depth = 0;
        loop {
            match &node.kind {
                Kind::Inner { children, .. } => {
                    node = children[nibble_at(&path.0, depth)].as_ref()?;
                    depth += 1;
                }
                Kind::Leaf(entries) => {
                    let i = entries
                        .binary_search_by(|e| (&e.path, &*e.key).cmp(&(&path, key)))
                        .ok()?;
                    return Some(entries[i].digest);
                }
            }
        }
    }

    /// Records `digest` as the state digest of `key`, returning the digest it replaces. Only the
    /// nodes on the key's path are touched, and their hashes are recomputed on the next
    /// [`root`](Self::root) or [`node`](Self::node). Keys longer than [`MAX_KEY_LEN`] must not be
    /// inserted: peers reject leaves containing them.
    pub fn insert(&mut self, key: &[u8], digest: Digest) -> Option<Digest> {
        match self.root.insert(0, key_path(key), key, digest) {
            Inserted::Added => None,
            Inserted::Replaced(old) | Inserted::Unchanged(old) => Some(old),
        }
    }

    /// Removes `key`, returning its digest if it was present. Like [`insert`](Self::insert), it
    /// only touches the key's path.
    pub fn remove(&mut self, key: &[u8]) -> Option<Digest> {
        self.root.remove(0, &key_path(key), key)
    }

    /// The root hash, recomputing the hashes of nodes updated since the last call (once each,
    /// however many updates touched them).
    pub fn root(&mut self) -> Digest {
        self.root.refresh()
    }

    /// Every `(key, digest)` pair, in key-path order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], Digest)> + '_ {
        let mut stack = vec![&self.root];
        let mut current: std::slice::Iter<'_, Entry> = [].iter();
        std::iter::from_fn(move || loop {
            if let Some(entry) = current.next() {
                return Some((&*entry.key, entry.digest));
            }
            match &stack.pop()?.kind {
                Kind::Leaf(entries) => current = entries.iter(),
                Kind::Inner { children, .. } => {
                    stack.extend(children.iter().rev().flatten().map(|child| &**child));
                }
            }
        })
    }

    /// This replica's answer to a remote's question about `path`, whatever the local tree's shape
    /// there: the node's children hashes if it is an inner node, otherwise the entries under the
    /// prefix (those of a bucket, or the part of a bucket that lies under a deeper prefix), or
    /// [`NodeSummary::Empty`] if no key lies under it.
    pub fn node(&mut self, path: &NodePath) -> NodeSummary {
        self.root();
        let found = self.find(path);
        if let Found::Inner(_) = found {
            return NodeSummary::Inner {
                children: Box::new(found.children_hashes(path.depth())),
            };
        }
        let entries = found.into_entries();
        if entries.is_empty() {
            return NodeSummary::Empty;
        }
        NodeSummary::Leaf {
            entries: entries
                .into_iter()
                .map(|entry| (entry.key.to_vec(), entry.digest))
                .collect(),
        }
    }

    /// Resolves `path` in the tree. Hashes are only meaningful if the tree was refreshed first.
    fn find(&self, path: &NodePath) -> Found<'_> {
        let mut node = &self.root;
        for depth in 0..path.depth() {
            match &node.kind {
                Kind::Inner { children, .. } => match &children[path.nibble(depth)] {
                    Some(child) => node = child,
                    None => return Found::Entries(Vec::new()),
                },
                Kind::Leaf(entries) => {
                    return Found::Entries(
                        entries.iter().filter(|e| path.contains(&e.path)).collect(),
                    )
                }
            }
        }
        match &node.kind {
            Kind::Inner { children, .. } => Found::Inner(children),
            Kind::Leaf(entries) => Found::Entries(entries.iter().collect()),
        }
    }
}

/// The result of a [`MerkleDiff`] session.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DiffOutcome {
    /// Keys the remote holds with a digest different from ours, or that we lack: the caller should
    /// request their states from the remote. In no particular order, without duplicates.
    pub differing: Vec<Vec<u8>>,
    /// Keys we hold that the remote lacks: the caller may push their states to the remote. In no
    /// particular order, without duplicates.
    pub local_only: Vec<Vec<u8>>,
    /// How many node paths were asked of the remote, a measure of the session's cost.
    pub queries: usize,
}

/// One anti-entropy session against one remote replica, without I/O: the caller carries the
/// requests and answers.
///
/// ```
/// # use beaufort_core::merkle::{MerkleDiff, MerkleError, MerkleIndex, NodePath, NodeSummary};
/// # use beaufort_crypto::hash::{hash, Domain};
/// # fn main() -> Result<(), MerkleError> {
/// let (mut local, mut remote) = (MerkleIndex::new(), MerkleIndex::new());
/// local.insert(b"a", hash(Domain::RegisterState, &[b"old"]));
/// remote.insert(b"a", hash(Domain::RegisterState, &[b"new"]));
/// remote.insert(b"b", hash(Domain::RegisterState, &[b"x"]));
///
/// let mut diff = MerkleDiff::new(remote.root()); // the remote's root arrives first
/// let mut ask = diff.start(&mut local); // empty if the roots are equal
/// while !ask.is_empty() {
///     // Over the network, the remote answers each path with `MerkleIndex::node`.
///     let answers: Vec<(NodePath, NodeSummary)> =
///         ask.iter().map(|path| (*path, remote.node(path))).collect();
///     ask = diff.on_answers(&mut local, answers)?;
/// }
/// let mut outcome = diff.finish();
/// outcome.differing.sort();
/// assert_eq!(outcome.differing, vec![b"a".to_vec(), b"b".to_vec()]);
/// # Ok(())
/// # }
/// ```
///
/// The session descends only where the remote's hashes differ from the local ones, level by level,
/// at most [`MAX_PATHS_PER_REQUEST`] paths per request. Each answer costs bounded work (at most 16
/// new paths, [`MAX_LEAF_ENTRIES`] remote entries), paths never go deeper than
/// [`NodePath::MAX_DEPTH`], and the caller decides whether to keep going, so a remote that keeps
/// answering with fresh hashes only costs work in proportion to what it sends. The local index may
/// change between steps; that never causes an error, at worst keys reported needlessly or missed
/// until the next session.
#[derive(Debug)]
pub struct MerkleDiff {
    remote_root: Digest,
    /// Paths to ask about in a later request.
    queue: VecDeque<NodePath>,
    /// Paths asked in the last request and not yet answered.
    outstanding: HashSet<NodePath>,
    outcome: DiffOutcome,
}

impl MerkleDiff {
    /// A session against a remote whose root hash is `remote_root`.
    pub fn new(remote_root: Digest) -> MerkleDiff {
        MerkleDiff {
            remote_root,
            queue: VecDeque::new(),
            outstanding: HashSet::new(),
            outcome: DiffOutcome::default(),
        }
    }

    /// Compares the roots and returns the first request: empty if the states are equal (or if the
    /// remote is empty, in which case everything local is already reported as local-only). Call
    /// once.
    pub fn start(&mut self, local: &mut MerkleIndex) -> Vec<NodePath> {
        if local.root() == self.remote_root {
            return Vec::new();
        }
        let root = NodePath::root();
        if self.remote_root == Digest::ZERO {
            self.compare_entries(local.find(&root).into_entries(), &[]);
        } else {
            self.queue.push_back(root);
        }
        self.next_request()
    }

    /// Consumes the remote's answers to the last request — one `(path, summary)` per path asked,
    /// in any order — and returns the next request, empty when the session is over.
    ///
    /// Fails, and the session should be dropped, if the answers do not match the request or one is
    /// malformed (see [`MerkleError`]). The whole batch is checked before any of it is used.
    pub fn on_answers(
        &mut self,
        local: &mut MerkleIndex,
        answers: Vec<(NodePath, NodeSummary)>,
    ) -> Result<Vec<NodePath>, MerkleError> {
        for (path, summary) in &answers {
            if !self.outstanding.remove(path) {
                return Err(MerkleError::UnrequestedPath(*path));
            }
            validate(path, summary)?;
        }
        if let Some(path) = self.outstanding.iter().next() {
            return Err(MerkleError::MissingAnswer(*path));
        }
        local.root();
        for (path, summary) in answers {
            self.compare(local, path, summary);
        }
        Ok(self.next_request())
    }

    /// Ends the session. Called before the last request came back empty, it returns what was found
    /// so far.
    pub fn finish(self) -> DiffOutcome {
        self.outcome
    }

    /// Compares the remote's (validated) summary of `path` with the refreshed local index.
    fn compare(&mut self, local: &MerkleIndex, path: NodePath, summary: NodeSummary) {
        let found = local.find(&path);
        match summary {
            NodeSummary::Empty => self.compare_entries(found.into_entries(), &[]),
            NodeSummary::Leaf { entries } => self.compare_entries(found.into_entries(), &entries),
            NodeSummary::Inner { children } => {
                let ours = found.children_hashes(path.depth());
                for (nibble, (theirs, ours)) in (0u8..).zip(children.iter().zip(ours)) {
                    if *theirs == ours {
                        continue;
                    }
                    // Validation rejected inner nodes at maximum depth, so the child exists.
                    let Some(child) = path.child(nibble) else {
                        continue;
                    };
                    if *theirs == Digest::ZERO {
                        self.compare_entries(local.find(&child).into_entries(), &[]);
                    } else {
                        self.queue.push_back(child);
                    }
                }
            }
        }
    }

    /// Records the differences between the local entries under a prefix and the remote's.
    fn compare_entries(&mut self, ours: Vec<&Entry>, theirs: &[(Vec<u8>, Digest)]) {
        let our_digests: HashMap<&[u8], Digest> = ours
            .iter()
            .map(|entry| (&*entry.key, entry.digest))
            .collect();
        for (key, digest) in theirs {
            if our_digests.get(key.as_slice()) != Some(digest) {
                self.outcome.differing.push(key.clone());
            }
        }
        let their_keys: HashSet<&[u8]> = theirs.iter().map(|(key, _)| key.as_slice()).collect();
        for entry in ours {
            if !their_keys.contains(&*entry.key) {
                self.outcome.local_only.push(entry.key.to_vec());
            }
        }
    }

    /// Moves up to [`MAX_PATHS_PER_REQUEST`] queued paths into a request.
    fn next_request(&mut self) -> Vec<NodePath> {
        let n = self.queue.len().min(MAX_PATHS_PER_REQUEST);
        let request: Vec<NodePath> = self.queue.drain(..n).collect();
        self.outstanding.extend(request.iter().copied());
        self.outcome.queries += n;
        request
    }
}

/// Checks that a remote summary of `path` is one an honest replica could send.
fn validate(path: &NodePath, summary: &NodeSummary) -> Result<(), MerkleError> {
    match summary {
        NodeSummary::Empty => Ok(()),
        NodeSummary::Inner { .. } if path.depth() >= NodePath::MAX_DEPTH => {
            Err(MerkleError::InnerAtMaxDepth(*path))
        }
        NodeSummary::Inner { .. } => Ok(()),
        NodeSummary::Leaf { entries } => {
            if entries.len() > MAX_LEAF_ENTRIES {
                return Err(MerkleError::TooManyEntries {
                    path: *path,
                    count: entries.len(),
                });
            }
            let mut seen = HashSet::with_capacity(entries.len());
            for (key, _) in entries {
                if key.len() > MAX_KEY_LEN {
                    return Err(MerkleError::KeyTooLong {
                        path: *path,
                        len: key.len(),
                    });
                }
                if !path.contains(&key_path(key)) {
                    return Err(MerkleError::EntryOutsidePath(*path));
                }
                if !seen.insert(key.as_slice()) {
                    return Err(MerkleError::DuplicateKey(*path));
                }
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
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
    fn run_diff(
        local: &mut MerkleIndex,
        remote: &mut MerkleIndex,
    ) -> Result<DiffOutcome, MerkleError> {
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
    fn expected(
        local: &MerkleIndex,
        remote: &MerkleIndex,
    ) -> (BTreeSet<Vec<u8>>, BTreeSet<Vec<u8>>) {
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
}

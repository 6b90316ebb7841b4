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

mod diff;
pub use diff::{DiffOutcome, MerkleDiff};

#[cfg(test)]
mod tests;

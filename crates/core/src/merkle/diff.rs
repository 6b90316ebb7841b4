//! One anti-entropy session against one remote replica ([`MerkleDiff`]), on top of the local
//! [`MerkleIndex`]: which paths to ask about, and what the answers say differs.

use super::*;

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
    pub(super) queue: VecDeque<NodePath>,
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
    pub(super) fn next_request(&mut self) -> Vec<NodePath> {
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

//! One member's runtime: its replica, its durable "disk", crash and restart.
//!
//! The core's contract is that the states of the keys in [`Step::persist`] (and new evidence) are
//! durable before the step's messages leave. [`Node::persist`] is that write; the simulator and
//! the replay runner call it first thing for every step. A crash drops the in-memory replica and
//! keeps only the disk; a restart rebuilds the replica with [`Replica::restore`].

use crate::engine::ops::{CountingSigner, CountingVerifier, CryptoCounter};
use crate::keys::Keyring;
use beaufort_core::auth::{Verifier, VoteSigner};
use beaufort_core::cadence::Cadence;
use beaufort_core::hook::ValidationHook;
use beaufort_core::replica::{Replica, Step};
use beaufort_core::state::RegisterState;
use beaufort_core::types::{Key, MemberIndex};
use beaufort_core::vote::Equivocation;
use std::collections::BTreeMap;
use std::sync::Arc;

/// What survives a crash.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Disk {
    /// The last persisted state of every key.
    pub states: BTreeMap<Key, RegisterState>,
    /// Every persisted equivocation proof.
    pub evidence: Vec<Equivocation>,
}

/// A member process: a replica while it runs, and its disk always.
pub struct Node {
    index: MemberIndex,
    replica: Option<Replica>,
    disk: Disk,
    /// Whether the disk is written: a run that never restarts a member (the performance
    /// scenarios crash members for good) keeps no second copy of every state in memory.
    keeps_disk: bool,
    incarnation: u64,
    keyring: Arc<Keyring>,
    hook: Arc<dyn ValidationHook>,
    cadence: Cadence,
    /// Where its signing and verification are counted, for a cost model (every incarnation).
    counter: Option<Arc<CryptoCounter>>,
}

impl Node {
    /// A running member with an empty disk, on the schedule `cadence`.
    pub fn new(
        index: MemberIndex,
        keyring: Arc<Keyring>,
        hook: Arc<dyn ValidationHook>,
        cadence: Cadence,
    ) -> Node {
        Node::counting(index, keyring, hook, cadence, None)
    }

    /// [`Node::new`], with its signing and verification counted into `counter` if given.
    pub fn counting(
        index: MemberIndex,
        keyring: Arc<Keyring>,
        hook: Arc<dyn ValidationHook>,
        cadence: Cadence,
        counter: Option<Arc<CryptoCounter>>,
    ) -> Node {
        let mut node = Node {
            index,
            replica: None,
            disk: Disk::default(),
            keeps_disk: true,
            incarnation: 0,
            keyring,
            hook,
            cadence,
            counter,
        };
        let (signer, verifier) = node.crypto();
        node.replica =
            Some(Replica::new(signer, verifier, node.hook.clone()).with_cadence(node.cadence));
        node
    }

    /// The same member, writing nothing to disk: for runs that never restart a member, where a
    /// disk would only hold a second copy of every state (at n = 1000, gigabytes). A member
    /// whose disk is gone must never come back as itself (it could vote twice), so
    /// [`Node::restart`] leaves it down.
    pub fn without_disk(mut self) -> Node {
        self.keeps_disk = false;
        self
    }

    /// A signer and a verifier for this member, counting if asked to.
    fn crypto(&self) -> (Box<dyn VoteSigner>, Arc<dyn Verifier>) {
        let signer = self.keyring.signer(self.index);
        let verifier = self.keyring.verifier();
        match &self.counter {
            Some(counter) => (
                Box::new(CountingSigner::new(signer, counter.clone())),
                Arc::new(CountingVerifier::new(verifier, counter.clone())),
            ),
            None => (signer, verifier),
        }
    }

    /// The member's index.
    pub fn index(&self) -> MemberIndex {
        self.index
    }

    /// The running replica, or `None` while crashed.
    pub fn replica(&self) -> Option<&Replica> {
        self.replica.as_ref()
    }

    /// The running replica, mutably.
    pub fn replica_mut(&mut self) -> Option<&mut Replica> {
        self.replica.as_mut()
    }

    /// Whether the member is running.
    pub fn is_up(&self) -> bool {
        self.replica.is_some()
    }

    /// Counts crashes and restarts, so events scheduled for an earlier life (timers, messages to
    /// a connection that no longer exists) can be recognised and dropped.
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// What is on disk.
    pub fn disk(&self) -> &Disk {
        &self.disk
    }

    /// Makes a step's state changes durable. Must run before the step's messages are sent.
    pub fn persist(&mut self, step: &Step) {
        let Some(replica) = self.replica.as_ref().filter(|_| self.keeps_disk) else {
            return;
        };
        for key in &step.persist {
            match replica.state(key) {
                Some(state) => {
                    self.disk.states.insert(key.clone(), state.clone());
                }
                None => {
                    self.disk.states.remove(key);
                }
            }
        }
        for proof in &step.evidence {
            if !self.disk.evidence.contains(proof) {
                self.disk.evidence.push(proof.clone());
            }
        }
    }

    /// The process dies: everything not on disk is gone.
    pub fn crash(&mut self) {
        if self.replica.take().is_some() {
            self.incarnation += 1;
        }
    }

    /// The process starts again from its disk. No effect if it is running, or if it keeps no
    /// disk ([`Node::without_disk`]).
    pub fn restart(&mut self) {
        if self.replica.is_some() || !self.keeps_disk {
            return;
        }
        let (signer, verifier) = self.crypto();
        self.replica = Some(
            Replica::restore(
                signer,
                verifier,
                self.hook.clone(),
                self.disk.states.clone(),
                self.disk.evidence.clone(),
            )
            .with_cadence(self.cadence),
        );
        self.incarnation += 1;
    }
}

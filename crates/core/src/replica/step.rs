//! The effects of one input: what the runtime persists, sends, reports and carries out.

use crate::register::InvalidState;
use crate::state::Certified;
use crate::types::{Key, MemberIndex, Value};
use crate::vote::Equivocation;
use crate::wire::SyncMessage;
use std::collections::BTreeSet;

/// A value certified for a key, as the application sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The key.
    pub key: Key,
    /// The value and its certificate.
    pub certified: Certified,
    /// This member proposed the decided value.
    pub mine: bool,
}

/// Misbehaviour by a neighbour, for the runtime to act on (drop the connection, back off).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerFault {
    /// The neighbour that sent it.
    pub peer: MemberIndex,
    /// What was wrong.
    pub reason: FaultReason,
}

/// What a neighbour did wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FaultReason {
    /// A state that failed validation.
    #[error("invalid state for key {key}: {error}")]
    InvalidState {
        /// The key.
        key: Key,
        /// Why.
        error: InvalidState,
    },
    /// A Merkle answer that did not match the question.
    #[error("bad anti-entropy answer: {0}")]
    Merkle(#[from] crate::merkle::MerkleError),
    /// A request out of bounds.
    #[error("bad request: {0}")]
    BadRequest(&'static str),
}

/// Counters a runtime exports as metrics and a simulator uses to charge costs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StepStats {
    /// Invalid signatures found (deferred or on arrival).
    pub invalid_signatures: usize,
    /// Votes this member cast.
    pub votes_cast: usize,
    /// Updates set aside because the hook could not judge a value yet.
    pub deferred_updates: usize,
}

/// The effects of one input.
#[derive(Debug, Default)]
#[must_use = "send `early`, persist, call `mark_durable`, send `messages`, then report decisions and faults"]
pub struct Step {
    /// Keys whose state changed: write `replica.state(key)` durably before sending `messages`.
    pub persist: BTreeSet<Key>,
    /// New equivocation proofs: store them durably too.
    pub evidence: Vec<Equivocation>,
    /// Messages that may leave before this step's writes are durable: the replica decided that
    /// none of them can carry an own vote the runtime has not yet confirmed durable
    /// ([`crate::replica::Replica::mark_durable`]). Sending them first saves a forwarded vote the fsync's time.
    pub early: Vec<(MemberIndex, SyncMessage)>,
    /// Messages that may leave only after this step's writes are durable: they may carry own
    /// votes (or a certificate holding one) that a crash before the write would let us contradict.
    pub messages: Vec<(MemberIndex, SyncMessage)>,
    /// Newly certified values.
    pub decisions: Vec<Decision>,
    /// Our own proposals that lost and that the hook no longer allows re-proposing.
    pub dropped_proposals: Vec<(Key, Value)>,
    /// Neighbours that misbehaved.
    pub faults: Vec<PeerFault>,
    /// Counters.
    pub stats: StepStats,
    /// Replace some neighbours: this member's own writes have stalled, so its neighbours may be
    /// withholding votes (the paper's eclipse defence; [`crate::stall`] says when).
    pub rewire: bool,
}

impl Step {
    /// Every message, early ones first (for a runtime that persists before it sends anything).
    pub fn outgoing(&self) -> impl Iterator<Item = &(MemberIndex, SyncMessage)> {
        self.early.iter().chain(&self.messages)
    }

    /// Every message, early ones first, by value.
    pub fn into_outgoing(self) -> Vec<(MemberIndex, SyncMessage)> {
        let mut all = self.early;
        all.extend(self.messages);
        all
    }

    /// Appends another step's effects (a runtime that batches several inputs sends once).
    pub fn absorb(&mut self, other: Step) {
        self.persist.extend(other.persist);
        self.evidence.extend(other.evidence);
        self.early.extend(other.early);
        self.messages.extend(other.messages);
        self.decisions.extend(other.decisions);
        self.dropped_proposals.extend(other.dropped_proposals);
        self.faults.extend(other.faults);
        self.stats.invalid_signatures += other.stats.invalid_signatures;
        self.stats.deferred_updates += other.stats.deferred_updates;
        self.stats.votes_cast += other.stats.votes_cast;
        self.rewire |= other.rewire;
    }
}

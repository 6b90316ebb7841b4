//! What the checker watches while members run: the invariant [`Checker`], counters of what honest
//! members did, the replay recorder and every own vote an honest member sent. One [`Observer`]
//! is shared by all members of a checked run; a performance run has none.

use crate::byzantine::Strategy;
use crate::invariants::Checker;
use crate::replay::ReplayStep;
use beaufort_core::replica::{Replica, Step};
use beaufort_core::types::{Key, MemberIndex, ValueHash, View};
use beaufort_core::vote::VoteKind;
use beaufort_core::wire::SyncMessage;
use std::collections::BTreeSet;

/// An own vote an honest member put into a message it sent: (member, key, view, kind, round,
/// value).
pub type SentVote = (MemberIndex, Key, View, VoteKind, u32, ValueHash);

/// Counters of what the members did, for [`crate::sim::SimStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemberCounters {
    /// Equivocation proofs produced by honest members (each member counts its own).
    pub evidence_produced: u64,
    /// Invalid signatures honest members caught.
    pub invalid_signatures_caught: u64,
    /// Faults honest members reported against neighbours.
    pub faults_reported: u64,
    /// Of those, faults reported against honest neighbours (should be zero).
    pub faults_against_honest: u64,
    /// Honest crash-restart cycles.
    pub crash_restarts: u64,
    /// Messages honest members sent that did not encode or decode (should be zero).
    pub wire_errors: u64,
    /// Proposals made.
    pub proposals: u64,
    /// Values the core gave up re-proposing (the hook refused them later), and proposals the
    /// core refused outright.
    pub dropped_proposals: u64,
}

/// The checker's view of a run, shared by its members.
pub struct Observer {
    /// The invariants.
    pub checker: Checker,
    /// Counters.
    pub counters: MemberCounters,
    /// Descriptions of faults reported against honest members (the first 16).
    pub honest_faults: Vec<String>,
    /// The run as a replay script, when recording.
    pub recorder: Option<Vec<ReplayStep>>,
    /// Every own vote each honest member sent.
    pub sent_own_votes: BTreeSet<SentVote>,
    /// The strategies Byzantine members switched to.
    pub strategies: BTreeSet<Strategy>,
}

impl Observer {
    /// An observer of `members` members of which `byzantine` are Byzantine.
    pub fn new(members: usize, byzantine: BTreeSet<MemberIndex>) -> Observer {
        Observer {
            checker: Checker::new(members, byzantine),
            counters: MemberCounters::default(),
            honest_faults: Vec::new(),
            recorder: None,
            sent_own_votes: BTreeSet::new(),
            strategies: BTreeSet::new(),
        }
    }

    /// Whether `member` is Byzantine in this run.
    pub fn is_byzantine(&self, member: MemberIndex) -> bool {
        self.checker.is_byzantine(member)
    }

    /// Appends to the replay script, when recording.
    pub fn record(&mut self, step: impl FnOnce() -> ReplayStep) {
        if let Some(recorder) = &mut self.recorder {
            recorder.push(step());
        }
    }

    /// An honest member's step, after its writes are durable: the states it persisted, its
    /// decisions and what it found wrong.
    pub fn step(&mut self, member: MemberIndex, replica: &Replica, step: &Step, now: u64) {
        for key in &step.persist {
            if let Some(state) = replica.state(key) {
                self.checker.note_state(member, key, state, now);
            }
        }
        for decision in &step.decisions {
            self.checker.note_decision(member, decision, now);
        }
        let c = &mut self.counters;
        c.evidence_produced += step.evidence.len() as u64;
        c.invalid_signatures_caught += step.stats.invalid_signatures as u64;
        c.dropped_proposals += step.dropped_proposals.len() as u64;
        for fault in &step.faults {
            self.counters.faults_reported += 1;
            if !self.checker.is_byzantine(fault.peer) {
                self.counters.faults_against_honest += 1;
                if self.honest_faults.len() < 16 {
                    self.honest_faults.push(format!(
                        "t={now} member {member} blamed honest member {}: {}",
                        fault.peer, fault.reason
                    ));
                }
            }
        }
    }

    /// An honest member sends `message`: its own votes in it are remembered.
    pub fn sent(&mut self, from: MemberIndex, message: &SyncMessage) {
        if let SyncMessage::Updates { updates, .. } = message {
            for update in updates {
                for wire in update.votes.iter().filter(|w| w.member == from) {
                    for value in wire.ballot.values() {
                        self.sent_own_votes.insert((
                            from,
                            update.key.clone(),
                            update.view,
                            wire.kind,
                            wire.round,
                            value,
                        ));
                    }
                }
            }
        }
    }
}

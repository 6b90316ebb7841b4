//! Strategies that attack liveness rather than agreement: they try to fill every cap an honest
//! member keeps, keep rounds split, split round 0, reveal votes late and spread junk keys, so that
//! `sim check` finds any key they can freeze for good (issue: one Byzantine member must never
//! freeze a key).

use super::{Adversary, MAX_CAPTURED};
use beaufort_core::register::{KeyUpdate, WireBallot};
use beaufort_core::replica::Replica;
use beaufort_core::state::{max_values, max_votes, Ballot};
use beaufort_core::types::{Key, MemberIndex, Value, ValueHash};
use beaufort_core::vote::VoteKind;
use beaufort_core::wire::{short_ref, MAX_KEYS_PER_MESSAGE, SHORT_REF_BYTES};
use std::collections::VecDeque;

/// Junk keys per Byzantine member: enough to matter, few enough to keep a run small.
const JUNK_KEYS: u64 = 64;

/// Junk items added to one update at most.
const FLOOD_PER_UPDATE: usize = 16;

impl Adversary {
    /// Adds junk votes and bodies up to the wire's bounds: round-0 PRE-COMMITs for many values in
    /// its own slot, a single vote for junk in the top round, and bodies nothing names.
    pub(super) fn flood_bodies(&mut self, replica: &Replica, update: &mut KeyUpdate) {
        let room_values = max_values(self.members).saturating_sub(update.values.len());
        let room_votes = max_votes(self.members).saturating_sub(update.votes.len());
        let count = room_values.min(room_votes).min(FLOOD_PER_UPDATE);
        let top = replica
            .state(&update.key)
            .filter(|s| s.view == update.view)
            .and_then(|s| s.top_round())
            .unwrap_or(0);
        for i in 0..count {
            self.counter += 1;
            let body = Value::Data(format!("junk-{}-{}", self.member, self.counter).into_bytes());
            let hash = body.hash();
            update.values.push(body);
            let round = match i % 4 {
                0 | 2 => Some(0),
                1 => Some(top),
                _ => None,
            };
            if let Some(round) = round {
                let ballot = self.sign(&update.key, update.view, round, VoteKind::PreCommit, hash);
                update.votes.push(WireBallot {
                    kind: VoteKind::PreCommit,
                    round,
                    member: self.member,
                    ballot,
                });
            }
            self.stats.flooded += 1;
        }
    }

    /// Rewrites its own PRE-COMMITs to another proposal (one choice per slot, the same for every
    /// neighbour, so it is never caught equivocating) and drops its COMMITs, so honest rounds
    /// keep splitting for as long as the honest members are not all in one place.
    pub(super) fn drive_rounds(&mut self, replica: &Replica, update: &mut KeyUpdate) {
        if !expand_short_refs(replica, update) {
            return;
        }
        let me = self.member;
        update.votes.retain(|w| {
            w.member != me
                || (w.kind == VoteKind::PreCommit && matches!(w.ballot, Ballot::Vote { .. }))
        });
        let known = known_values(replica, update);
        for (wire, value) in self.own_single_votes(update) {
            let slot = (update.key.clone(), update.view, wire.kind, wire.round);
            let alternative = match self.alternatives.get(&slot) {
                Some(v) => *v,
                None => match known.iter().rev().find(|v| **v != value) {
                    Some(v) => {
                        self.alternatives.insert(slot, *v);
                        *v
                    }
                    None => continue,
                },
            };
            let ballot = self.sign(&update.key, update.view, wire.round, wire.kind, alternative);
            self.set_own(update, wire.kind, wire.round, ballot);
            self.add_body(replica, update, alternative);
            self.stats.splitting_votes += 1;
        }
        // Rewritten votes may leave the sender's whole state unjustified; as a delta it is
        // nobody's fault, so the strategy stays hidden.
        update.complete = false;
    }

    /// Tells each neighbour a round-0 vote for a different known value.
    pub(super) fn split_round_zero(
        &mut self,
        replica: &Replica,
        to: MemberIndex,
        update: &mut KeyUpdate,
    ) {
        if !expand_short_refs(replica, update) {
            return;
        }
        let known = known_values(replica, update);
        if known.len() < 2 {
            return;
        }
        let own = update
            .votes
            .iter()
            .any(|w| w.member == self.member && w.kind == VoteKind::PreCommit && w.round == 0);
        if !own {
            return;
        }
        let value = known[usize::from(to) % known.len()];
        let ballot = self.sign(&update.key, update.view, 0, VoteKind::PreCommit, value);
        self.set_own(update, VoteKind::PreCommit, 0, ballot);
        self.add_body(replica, update, value);
        update.complete = false;
        self.stats.splitting_votes += 1;
    }

    /// Takes its own votes out of what it sends and holds them until the round they belong to is
    /// over (a higher round exists); then reveals them, when a late round-0 vote can still flip
    /// the winner and a late vote in a finished round can reopen a split.
    pub(super) fn withhold_reveal(&mut self, replica: &Replica, updates: &mut Vec<KeyUpdate>) {
        let me = self.member;
        for update in updates.iter_mut() {
            if !expand_short_refs(replica, update) {
                continue;
            }
            let own: Vec<WireBallot> = update
                .votes
                .iter()
                .filter(|w| w.member == me && matches!(w.ballot, Ballot::Vote { .. }))
                .copied()
                .collect();
            if own.is_empty() {
                continue;
            }
            update.votes.retain(|w| w.member != me);
            update.complete = false;
            if self.held.len() < MAX_CAPTURED {
                let mut held = KeyUpdate {
                    key: update.key.clone(),
                    view: update.view,
                    accepted: None,
                    values: Vec::new(),
                    votes: own.clone(),
                    pieces: Vec::new(),
                    complete: false,
                    short_refs: false,
                };
                for wire in own {
                    if let Some(value) = wire.ballot.vote_value() {
                        self.add_body(replica, &mut held, value);
                    }
                }
                self.held.push_back(held);
            }
        }
        let mut keep = VecDeque::new();
        while let Some(held) = self.held.pop_front() {
            let Some(state) = replica.state(&held.key).filter(|s| s.view == held.view) else {
                continue;
            };
            let last = held.votes.iter().map(|w| w.round).max().unwrap_or(0);
            let over = state.top_round().is_some_and(|top| top > last);
            if over && updates.len() < MAX_KEYS_PER_MESSAGE {
                self.stats.revealed_late += held.votes.len() as u64;
                updates.push(held);
            } else {
                keep.push_back(held);
            }
        }
        self.held = keep;
    }

    /// Proposes on junk keys (a bounded set per member, with a new value each time, so it also
    /// equivocates on them) and sends a real key's update under a view far ahead.
    pub(super) fn junk_keys(&mut self, replica: &Replica, updates: &mut Vec<KeyUpdate>) {
        if let Some(first) = updates.first() {
            let mut ahead = first.clone();
            ahead.view = ahead.view.saturating_add(1000);
            ahead.accepted = None;
            ahead.complete = false;
            updates.push(ahead);
            self.stats.junk_updates += 1;
        }
        for _ in 0..4 {
            if updates.len() >= MAX_KEYS_PER_MESSAGE {
                break;
            }
            self.counter += 1;
            let Ok(key) =
                Key::new(format!("junk/{}/{}", self.member, self.counter % JUNK_KEYS).into_bytes())
            else {
                continue;
            };
            let view = replica.state(&key).map_or(0, |s| s.view);
            let body = Value::Data(format!("junk-{}-{}", self.member, self.counter).into_bytes());
            let ballot = self.sign(&key, view, 0, VoteKind::PreCommit, body.hash());
            updates.push(KeyUpdate {
                key,
                view,
                accepted: None,
                values: vec![body],
                votes: vec![WireBallot {
                    kind: VoteKind::PreCommit,
                    round: 0,
                    member: self.member,
                    ballot,
                }],
                pieces: Vec::new(),
                complete: false,
                short_refs: false,
            });
            self.stats.junk_updates += 1;
        }
    }

    /// Puts the body of `value` into `update` if its own replica holds it and it is not there.
    fn add_body(&self, replica: &Replica, update: &mut KeyUpdate, value: ValueHash) {
        let body = replica
            .state(&update.key)
            .filter(|s| s.view == update.view)
            .and_then(|s| s.values.get(&value));
        if let Some(body) = body {
            if !update.values.iter().any(|v| v.hash() == value) {
                update.values.push(body.clone());
            }
        }
    }
}

/// The proposals its replica knows in the update's view, in hash order.
fn known_values(replica: &Replica, update: &KeyUpdate) -> Vec<ValueHash> {
    replica
        .state(&update.key)
        .filter(|s| s.view == update.view)
        .map(|s| s.values.keys().copied().collect())
        .unwrap_or_default()
}

/// Replaces the short value names of an update (see [`KeyUpdate::short_refs`]) by the full hashes
/// its replica holds, so the strategy can rewrite votes; false if some name does not resolve.
fn expand_short_refs(replica: &Replica, update: &mut KeyUpdate) -> bool {
    if !update.short_refs {
        return true;
    }
    let known = known_values(replica, update);
    let mut votes = update.votes.clone();
    for wire in &mut votes {
        let Ballot::Vote { value, signature } = wire.ballot else {
            continue;
        };
        let prefix = &value.0.as_bytes()[..SHORT_REF_BYTES];
        let Some(full) = known.iter().find(|h| short_ref(**h)[..] == *prefix) else {
            return false;
        };
        wire.ballot = Ballot::Vote {
            value: *full,
            signature,
        };
    }
    update.votes = votes;
    update.short_refs = false;
    true
}

//! The replica's periodic duties, run on its own schedule ([`crate::cadence`]): the eager push
//! to ready links, the relay trees' second chance, and Merkle anti-entropy (opened on a period
//! and with every new neighbour, carrying the evidence and the relay-tree advert too). The
//! runtime only calls [`Replica::tick`] when [`Replica::next_tick`] says; tests and scripted
//! replays may push or open an exchange at a moment of their choosing.

use super::link::{delta, Known};
use super::tree_push::{KeyTree, PiecePush, Push};
use super::{Replica, Step, MAX_TRACKED_KEYS_PER_PEER};
use crate::cadence::Timers;
use crate::merkle::MerkleDiff;
use crate::register::Register;
use crate::relay::Advert;
use crate::types::{Key, MemberIndex};
use crate::wire::{SyncMessage, MAX_KEYS_PER_MESSAGE};
use std::collections::{BTreeMap, BTreeSet};

impl Replica {
    /// The runtime's word on the link to `peer`: while it is not `ready` (its queue is full),
    /// flushes keep the peer's changes, so what changes meanwhile leaves as one up-to-date delta
    /// instead of stale deltas queued behind each other.
    pub fn set_link_ready(&mut self, peer: MemberIndex, ready: bool) {
        if let Some(peer) = self.peers.get_mut(&peer) {
            peer.busy = !ready;
        }
    }

    /// Ends the grace period of votes the relay trees held back one to two calls ago: the next
    /// flush offers them to the neighbours that were not meant to get them from us, unless a
    /// neighbour has meanwhile shown it holds them or a quorum of their group. A runtime calls
    /// this every few link latencies; it repairs relay trees cut by a crash, a partition or a
    /// withholding member. Without trees nothing is ever held back and this does nothing.
    /// [`Replica::tick`] calls it every [`crate::cadence::Cadence::second_chance_every`].
    pub fn second_chance(&mut self) {
        for peer in self.peers.values_mut() {
            let holding = std::mem::take(&mut peer.holding);
            for key in holding {
                let Some(known) = peer.known.get_mut(&key) else {
                    continue;
                };
                let due = std::mem::take(&mut known.held_earlier);
                known.held_earlier = std::mem::take(&mut known.held_recently);
                if !due.is_empty() {
                    known.retry.extend(due);
                    peer.owed.insert(key.clone());
                }
                if !known.held_earlier.is_empty() {
                    peer.holding.insert(key);
                }
                known.compact();
            }
        }
    }

    /// Tells the replica the time (milliseconds on any monotone clock; a smaller value than
    /// before is ignored) and runs what is due by then: registers waiting out a split round's
    /// [`crate::register::patience`], the re-wiring decision, and the periodic duties of the
    /// [`crate::cadence::Cadence`]: the eager push to ready links, the relay trees' second
    /// chance, and anti-entropy with one neighbour per period in turn (with a new neighbour at
    /// once). The runtime calls this at [`Replica::next_tick`] (or more often); a replica never
    /// ticked never leaves a split round and never pushes anything on its own.
    pub fn tick(&mut self, now: u64) -> Step {
        self.env.now = self.env.now.max(now);
        let now = self.env.now;
        let mut step = Step::default();
        let registers = &self.registers;
        self.waiting.retain(|key| registers.contains_key(key));
        let waiting: Vec<Key> = self.waiting.iter().cloned().collect();
        for key in waiting {
            self.advance_key(&key, &mut step);
        }
        let oldest = self.proposed_at.values().min().copied();
        step.rewire = self.stall.should_rewire(now, oldest);
        let salt = u64::from(self.me());
        let cadence = self.cadence;
        let due = self
            .timers
            .get_or_insert_with(|| Timers::start(&cadence, now, salt))
            .due(&cadence, now);
        let in_turn = due.anti_entropy.then(|| self.next_in_turn()).flatten();
        let peers: Vec<MemberIndex> = self.peers.keys().copied().collect();
        for peer in peers {
            let new = self.peers.get(&peer).is_some_and(|p| !p.greeted);
            if new || Some(peer) == in_turn {
                step.absorb(self.start_anti_entropy(peer));
            } else if due.anti_entropy {
                step.absorb(self.remind(peer));
            }
        }
        if due.second_chance {
            self.second_chance();
        }
        if due.flush {
            step.absorb(self.flush_ready());
        }
        self.order(step)
    }

    /// When (by the runtime's clock) the next tick has something to do: the earliest periodic
    /// duty, or at once before the first tick.
    pub fn next_tick(&self) -> u64 {
        self.timers.as_ref().map_or(self.env.now, Timers::next)
    }

    /// Sends each neighbour what changed since the last flush (the eager push, batched), busy
    /// links included. [`Replica::tick`] does this on its schedule for the ready links; a test
    /// or a scripted replay calls it to push at a moment of its choosing.
    pub fn flush(&mut self) -> Step {
        let step = self.flush_to(|_| true);
        self.order(step)
    }

    /// The eager push to the links the runtime has not called busy.
    fn flush_ready(&mut self) -> Step {
        let busy: BTreeSet<MemberIndex> = self
            .peers
            .iter()
            .filter(|(_, p)| p.busy)
            .map(|(&id, _)| id)
            .collect();
        self.flush_to(|peer| !busy.contains(&peer))
    }

    /// The eager push to the neighbours that are `ready`; the others keep their changes for a
    /// later flush. Owed relay-tree adverts go to every neighbour.
    fn flush_to(&mut self, ready: impl Fn(MemberIndex) -> bool) -> Step {
        let mut step = Step::default();
        if let Some(trees) = &mut self.relay {
            for (peer, advert) in trees.take_owed() {
                step.messages.push((peer, routes(advert)));
            }
        }
        let dirty = std::mem::take(&mut self.dirty);
        let peers: Vec<MemberIndex> = self.peers.keys().copied().collect();
        let quorum = self.env.verifier.quorum();
        let now = self.env.now;
        let trees = self.key_trees(&dirty, now);
        for peer_id in peers {
            let Some(mut peer) = self.peers.remove(&peer_id) else {
                continue;
            };
            if !ready(peer_id) {
                peer.owed.extend(dirty.iter().cloned());
                self.peers.insert(peer_id, peer);
                continue;
            }
            let mut keys = std::mem::take(&mut peer.owed);
            keys.extend(dirty.iter().cloned());
            keys.extend(peer.tree_wake.due(now).cloned());
            let mut updates = Vec::new();
            let mut verified = true;
            for key in &keys {
                let Some(register) = self.registers.get(key) else {
                    peer.tree_wake.remove(key);
                    continue;
                };
                // The maps below are keyed by the key's bytes and consulted for every key and
                // link at every push: look before cloning, and skip what is empty.
                if !peer.known.contains_key(key) {
                    if peer.known.len() >= MAX_TRACKED_KEYS_PER_PEER {
                        peer.known.clear();
                    }
                    peer.known.insert(key.clone(), Known::default());
                }
                let Some(known) = peer.known.get_mut(key) else {
                    continue;
                };
                let whole = !peer.asked.is_empty() && peer.asked.remove(key);
                let push = Push {
                    quorum,
                    relay: self.relay.as_ref(),
                    pieces: self.cadence.aggregate_wait.map(|wait| PiecePush {
                        verifier: self.env.verifier.as_ref(),
                        me: self.env.signer.member(),
                        now,
                        wait,
                        fallback: self.cadence.fallback(),
                        tree: trees.get(key).and_then(Option::as_ref),
                    }),
                };
                let update = delta(key, register, known, peer_id, &push, whole);
                known.compact();
                if !known.held_recently.is_empty() {
                    peer.holding.insert(key.clone());
                }
                let wake = known.tree_due.filter(|_| !known.tree_held.is_empty());
                match wake {
                    Some(due) if peer.tree_wake.get(key) != Some(due) => {
                        peer.tree_wake.set(key, due);
                    }
                    None if !peer.tree_wake.is_empty() => {
                        peer.tree_wake.remove(key);
                    }
                    _ => {}
                }
                if let Some(update) = update {
                    verified &= register.is_strict();
                    updates.push(update);
                }
            }
            for chunk in updates.chunks(MAX_KEYS_PER_MESSAGE) {
                step.messages.push((
                    peer_id,
                    SyncMessage::Updates {
                        verified,
                        updates: chunk.to_vec(),
                    },
                ));
            }
            self.peers.insert(peer_id, peer);
        }
        step
    }

    /// The trees of the keys this flush may push, when votes travel as pieces: for each key our
    /// links in its tree for our open view (`None` when we know no route to its root), and what
    /// each link has reported in that view.
    fn key_trees(&self, dirty: &BTreeSet<Key>, now: u64) -> BTreeMap<Key, Option<KeyTree>> {
        let mut trees = BTreeMap::new();
        let (Some(_), Some(relay)) = (self.cadence.aggregate_wait, self.relay.as_ref()) else {
            return trees;
        };
        let woken = self
            .peers
            .values()
            .flat_map(|peer| peer.owed.iter().chain(peer.tree_wake.due(now)));
        for key in dirty.iter().chain(woken) {
            if trees.contains_key(key) {
                continue;
            }
            let Some(register) = self.registers.get(key) else {
                continue;
            };
            let view = register.state.view;
            let tree = relay.key_tree(key.as_bytes(), view).map(|links| {
                let heard = links
                    .all()
                    .filter_map(|link| {
                        let known = self.peers.get(&link)?.known.get(key)?;
                        (known.view == Some(view)).then(|| (link, known.heard.clone()))
                    })
                    .collect();
                KeyTree { links, heard }
            });
            trees.insert(key.clone(), tree);
        }
        trees
    }

    /// The neighbour whose turn it is for this period's anti-entropy exchange: the one after
    /// the last, in index order. One exchange per period, not one per neighbour: a member still
    /// takes part in about two per period (its own and a neighbour's), which repairs a missed
    /// key within a period or two, while the descents into keys a moment apart on two sides,
    /// which every exchange of a busy member pays, are paid a seventh as often (docs/PROTOCOL.md
    /// §11.3).
    fn next_in_turn(&mut self) -> Option<MemberIndex> {
        let last = self.exchanged_last;
        let next = self
            .peers
            .keys()
            .copied()
            .find(|&peer| last.is_none_or(|last| peer > last))
            .or_else(|| self.peers.keys().next().copied());
        self.exchanged_last = next;
        next
    }

    /// Opens a Merkle anti-entropy exchange with a neighbour, with what goes to every neighbour
    /// each period (proofs and parked requests) and our relay-tree advert. [`Replica::tick`] does this
    /// with one neighbour per period in turn and with each new neighbour; a test or a scripted
    /// replay calls it at a moment of its choosing.
    pub fn start_anti_entropy(&mut self, peer: MemberIndex) -> Step {
        let mut step = self.remind(peer);
        if let Some(state) = self.peers.get_mut(&peer) {
            state.greeted = true;
            let root = self.merkle_root();
            step.messages.push((peer, SyncMessage::MerkleRoot { root }));
            // So is the relay-tree advert: a lost one costs at most one round of exchanges.
            if let Some(advert) = self.relay.as_mut().and_then(|t| t.advert_for(peer)) {
                step.messages.push((peer, routes(advert)));
            }
        }
        self.order(step)
    }

    /// What a neighbour gets every anti-entropy period, whether or not it is in turn for an
    /// exchange: a request for the whole states of keys whose votes from it have waited aside
    /// since the period before (what they wait for was evidently lost), and every equivocation
    /// proof we hold. Both are empty unless something went wrong.
    fn remind(&mut self, peer: MemberIndex) -> Step {
        let mut step = Step::default();
        let Some(state) = self.peers.get_mut(&peer) else {
            return step;
        };
        let recent = std::mem::take(&mut state.parked.0);
        let stuck: Vec<Key> = std::mem::replace(&mut state.parked.1, recent)
            .into_iter()
            .filter(|key| self.registers.get(key).is_some_and(Register::has_parked))
            .collect();
        for chunk in stuck.chunks(MAX_KEYS_PER_MESSAGE) {
            step.messages.push((
                peer,
                SyncMessage::NeedState {
                    keys: chunk.to_vec(),
                },
            ));
        }
        // Evidence is not part of the Merkle-repaired state: every proof we hold goes again
        // each period, so a member that missed one stops counting the equivocator.
        for proofs in self.evidence_batches() {
            step.messages.push((peer, SyncMessage::Evidence { proofs }));
        }
        step
    }

    pub(super) fn continue_diff(
        &mut self,
        from: MemberIndex,
        diff: MerkleDiff,
        ask: Vec<crate::merkle::NodePath>,
        step: &mut Step,
    ) {
        if !ask.is_empty() {
            if let Some(peer) = self.peers.get_mut(&from) {
                let session = match &peer.diff {
                    Some((current, _)) => *current,
                    None => {
                        peer.sessions = peer.sessions.wrapping_add(1);
                        peer.sessions
                    }
                };
                peer.diff = Some((session, diff));
                step.messages.push((
                    from,
                    SyncMessage::MerkleQuery {
                        session,
                        paths: ask,
                    },
                ));
            }
            return;
        }
        let outcome = diff.finish();
        let differing: BTreeSet<&Vec<u8>> = outcome.differing.iter().collect();
        let mut wanted = Vec::new();
        let grace = self.cadence.fallback();
        for raw in outcome.differing.iter().chain(outcome.local_only.iter()) {
            let Ok(key) = Key::new(raw.clone()) else {
                continue;
            };
            // A key we changed within a settle period is still being synced by the eager push (its votes are in flight both ways, so the digests differ for now):
            // trading whole states for it would only repeat those votes. If it stays different
            // once it has gone quiet, the next exchange repairs it.
            // So is a key whose pieces are still gathering on its tree. Not so a key whose
            // decision this peer only had from the key's tree: if it still differs, the tree
            // failed the peer, and no push will repair it.
            let unannounced = self
                .peers
                .get(&from)
                .and_then(|peer| peer.known.get(&key))
                .and_then(|known| known.unannounced)
                .is_some_and(|since| self.env.now >= since.saturating_add(grace));
            let busy = self.recently_changed(&key)
                || self
                    .peers
                    .values()
                    .any(|peer| peer.tree_wake.contains(&key));
            if busy && !unannounced {
                continue;
            }
            if let Some(peer) = self.peers.get_mut(&from) {
                if self.registers.contains_key(&key) {
                    peer.known.remove(&key);
                    peer.asked.insert(key.clone());
                    peer.owed.insert(key.clone());
                }
            }
            if differing.contains(raw) {
                wanted.push(key);
            }
        }
        for chunk in wanted.chunks(MAX_KEYS_PER_MESSAGE) {
            step.messages.push((
                from,
                SyncMessage::NeedState {
                    keys: chunk.to_vec(),
                },
            ));
        }
    }
}

/// A relay-tree advert as a message.
fn routes(advert: Advert) -> SyncMessage {
    SyncMessage::Routes {
        hops: advert.hops,
        wants: advert.wants,
    }
}

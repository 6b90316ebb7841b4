//! A member's whole replica: all registers, the Merkle index, evidence, and the sync protocol with
//! each neighbour. The node runtime and the simulator both drive this and nothing else.
//!
//! Inputs are method calls ([`Replica::propose`], [`Replica::receive`], [`Replica::tick`], peer
//! up/down, link readiness); each returns a [`Step`] of effects. The replica also decides *when*
//! its periodic duties run ([`crate::cadence`]): the runtime only calls [`Replica::tick`] by
//! [`Replica::next_tick`], so every runtime runs one schedule. The runtime may send
//! [`Step::early`] at once, must make the keys in [`Step::persist`] durable *before* it sends
//! [`Step::messages`] (then it calls [`Replica::mark_durable`]): that is what keeps a restarted
//! member from voting twice in one view and round. `link` keeps what each neighbour holds and
//! builds the deltas; `schedule` runs the periodic duties (push, second chance, anti-entropy);
//! `step` holds the effect types.

use crate::auth::{SignatureCheck, Verifier, VoteSigner};
use crate::cadence::{Cadence, Timers};
use crate::hook::ValidationHook;
use crate::merkle::{MerkleDiff, MerkleIndex};
use crate::register::{
    AdvanceOutcome, Context, InvalidState, KeyUpdate, MergeOutcome, ProposalRejected, Proposed,
    Register, UpdateCertificate, WireBallot,
};
use crate::relay::{Advert, RelayTrees};
use crate::stall::StallWatch;
use crate::state::{syncing_digest, Ballot, Certified, RegisterState};
use crate::types::{Key, MemberIndex, Value, ValueHash, View};
use crate::vote::{vote_message, Equivocation};
use crate::wire::{SyncMessage, MAX_PROOFS_PER_MESSAGE};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

mod bodies;
mod link;
mod schedule;
mod step;
mod tree_push;
mod wakes;

use link::Known;
pub use step::{Decision, FaultReason, PeerFault, Step, StepStats};

/// Most keys whose per-peer delta bookkeeping we keep; beyond it the bookkeeping is reset, which
/// only costs resending whole states.
const MAX_TRACKED_KEYS_PER_PEER: usize = 100_000;

#[derive(Debug, Default)]
struct Peer {
    known: BTreeMap<Key, Known>,
    /// The anti-entropy session we run against this peer, with its number.
    diff: Option<(u32, MerkleDiff)>,
    /// The number of the last session we opened.
    sessions: u32,
    /// Keys to offer this peer on its next flush besides the dirty ones: keys it asked for or
    /// lags behind on (their `known` entry is cleared, so they go whole), and keys that changed
    /// while its link was busy. At most one entry per register.
    owed: BTreeSet<Key>,
    /// Keys with votes held back from this peer by the relay plan.
    holding: BTreeSet<Key>,
    /// Keys this peer gets our whole, complete state for at the next flush: it asked
    /// (`NeedState`) or Merkle repair found it different.
    asked: BTreeSet<Key>,
    /// Keys for which this peer sent votes that wait aside for their justification, since our
    /// last anti-entropy exchange with it, and before that. At the next exchange, keys of the
    /// older set still waiting are asked for whole: what they wait for was evidently lost.
    parked: (BTreeSet<Key>, BTreeSet<Key>),
    /// The first anti-entropy exchange with this peer, due at the next tick, has started.
    greeted: bool,
    /// The runtime said the link to this peer is busy: flushes keep its changes for later.
    busy: bool,
    /// Keys with votes held back from this peer while pieces gather on the key's tree, with
    /// when the hold ends at the latest. At most one entry per register.
    tree_wake: wakes::TreeWakes,
}

/// What every register of a replica shares: who we are, how to check signatures, the
/// application's hook, and who is proven to have equivocated. Kept apart from the registers so a
/// register can be borrowed mutably while its [`Context`] borrows this.
struct Env {
    signer: Box<dyn VoteSigner>,
    verifier: Arc<dyn Verifier>,
    hook: Arc<dyn ValidationHook>,
    excluded: BTreeSet<MemberIndex>,
    /// The runtime's clock as of its last [`Replica::tick`], in milliseconds.
    now: u64,
}

impl Env {
    fn context<'a>(&'a self, key: &'a Key) -> Context<'a> {
        Context {
            key,
            signer: self.signer.as_ref(),
            verifier: self.verifier.as_ref(),
            hook: self.hook.as_ref(),
            excluded: &self.excluded,
            now: self.now,
        }
    }
}

/// One member's replica.
pub struct Replica {
    env: Env,
    /// When (by the runtime's clock) each key's own waiting proposal was made; emptied as they
    /// decide or are dropped. At most one entry per register.
    proposed_at: BTreeMap<Key, u64>,
    /// Own commits and re-wirings, for [`Step::rewire`].
    stall: StallWatch,
    /// Own votes were cast that the runtime has not confirmed durable yet
    /// ([`Replica::mark_durable`]); until it does, every message waits for the write.
    undurable: bool,
    /// Keys whose register waits out a split round ([`crate::register::patience`]); each tick
    /// advances them again. At most one entry per register.
    waiting: BTreeSet<Key>,
    registers: BTreeMap<Key, Register>,
    excluded: BTreeMap<MemberIndex, Equivocation>,
    merkle: MerkleIndex,
    peers: BTreeMap<MemberIndex, Peer>,
    dirty: BTreeSet<Key>,
    /// Keys whose Merkle leaf is out of date. Digests are recomputed only when the tree is read
    /// (anti-entropy), not on every vote.
    stale_leaves: BTreeMap<Key, (u64, View)>,
    /// Which neighbours get which origins' votes at once; `None` floods them to all.
    relay: Option<RelayTrees>,
    /// How often periodic duties run, and the relay trees' shape.
    cadence: Cadence,
    /// When each periodic duty is next due; started by the first tick.
    timers: Option<Timers>,
    /// When (by the runtime's clock) each key changed last, kept for one
    /// [`Cadence::settle`]: an anti-entropy exchange leaves those keys to the eager push.
    changed_at: BTreeMap<Key, u64>,
    /// The neighbour we last opened a periodic anti-entropy exchange with: each period opens
    /// one with the next neighbour in turn.
    exchanged_last: Option<MemberIndex>,
}

/// A local proposal could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    /// The hook refused the value.
    #[error(transparent)]
    Rejected(#[from] ProposalRejected),
}

impl Replica {
    /// A replica with no state.
    pub fn new(
        signer: Box<dyn VoteSigner>,
        verifier: Arc<dyn Verifier>,
        hook: Arc<dyn ValidationHook>,
    ) -> Replica {
        Replica {
            env: Env {
                signer,
                verifier,
                hook,
                excluded: BTreeSet::new(),
                now: 0,
            },
            waiting: BTreeSet::new(),
            undurable: false,
            proposed_at: BTreeMap::new(),
            stall: StallWatch::default(),
            registers: BTreeMap::new(),
            excluded: BTreeMap::new(),
            merkle: MerkleIndex::new(),
            peers: BTreeMap::new(),
            dirty: BTreeSet::new(),
            stale_leaves: BTreeMap::new(),
            relay: None,
            cadence: Cadence::default(),
            timers: None,
            changed_at: BTreeMap::new(),
            exchanged_last: None,
        }
        .with_cadence(Cadence::default())
    }

    /// Rebuilds a replica after a restart from what it persisted. Neighbours are re-added by the
    /// runtime as connections come back; Merkle repair then fetches what was missed.
    pub fn restore(
        signer: Box<dyn VoteSigner>,
        verifier: Arc<dyn Verifier>,
        hook: Arc<dyn ValidationHook>,
        states: impl IntoIterator<Item = (Key, RegisterState)>,
        evidence: impl IntoIterator<Item = Equivocation>,
    ) -> Replica {
        let mut replica = Replica::new(signer, verifier, hook);
        for (key, state) in states {
            replica.merkle.insert(key.as_bytes(), state.digest());
            replica.registers.insert(key, Register::restore(state));
        }
        for proof in evidence {
            replica.env.excluded.insert(proof.member());
            replica.excluded.insert(proof.member(), proof);
        }
        replica
    }

    /// The same replica on another schedule (and relay-tree shape). A runtime sets this once,
    /// before the first tick; the default is what a deployed member runs.
    pub fn with_cadence(mut self, cadence: Cadence) -> Replica {
        self.cadence = cadence;
        self.timers = None;
        self.relay = (cadence.relay_parents > 0).then(|| {
            let mut trees = RelayTrees::new(
                self.me(),
                self.env.verifier.members(),
                cadence.relay_parents,
            );
            for &peer in self.peers.keys() {
                trees.link_up(peer);
            }
            trees
        });
        self
    }

    /// This member's index.
    pub fn me(&self) -> MemberIndex {
        self.env.signer.member()
    }

    /// The replicated state of a key (what to persist).
    pub fn state(&self, key: &Key) -> Option<&RegisterState> {
        self.registers.get(key).map(|r| &r.state)
    }

    /// The certified value of a key.
    pub fn get(&self, key: &Key) -> Option<&Certified> {
        self.registers.get(key)?.state.accepted.as_ref()
    }

    /// All keys with their state, in key order.
    pub fn states(&self) -> impl Iterator<Item = (&Key, &RegisterState)> {
        self.registers.iter().map(|(k, r)| (k, &r.state))
    }

    /// Members proven to have equivocated, with the proof.
    pub fn excluded(&self) -> &BTreeMap<MemberIndex, Equivocation> {
        &self.excluded
    }

    /// Whether a key is in verify-on-arrival mode (invalid signatures were seen in its view).
    pub fn is_strict(&self, key: &Key) -> bool {
        self.registers.get(key).is_some_and(|r| r.is_strict())
    }

    /// The root of the Merkle index over all keys.
    pub fn merkle_root(&mut self) -> beaufort_crypto::hash::Digest {
        self.refresh_merkle();
        self.merkle.root()
    }

    /// Brings the Merkle leaves of changed keys up to date. A key that first changed within the
    /// settle window ([`Cadence::settle`]) is still being synced by the eager push, so its leaf holds
    /// only the view it was in when that window opened ([`syncing_digest`]; a key that was in
    /// its first view then has none yet): replicas that hold different parts of an open view's
    /// votes, or that are a moment apart in its decision, then compare equal, and an exchange
    /// descends only to keys that differ in what was decided before or stayed different once
    /// quiet (docs/PROTOCOL.md §11.3).
    fn refresh_merkle(&mut self) {
        let now = self.env.now;
        let settle = self.cadence.settle();
        let registers = &self.registers;
        let merkle = &mut self.merkle;
        self.stale_leaves.retain(|key, &mut (changed, view)| {
            let Some(register) = registers.get(key) else {
                return false;
            };
            if now >= changed.saturating_add(settle) {
                merkle.insert(key.as_bytes(), register.state.digest());
                return false;
            }
            if view > 0 || merkle.get(key.as_bytes()).is_some() {
                merkle.insert(key.as_bytes(), syncing_digest(view));
            }
            true
        });
    }

    /// The current neighbours.
    pub fn peers(&self) -> impl Iterator<Item = MemberIndex> + '_ {
        self.peers.keys().copied()
    }

    /// A neighbour connected. It learns our changes from now on; Merkle repair covers the past.
    pub fn add_peer(&mut self, peer: MemberIndex) {
        if peer != self.me() && usize::from(peer) < self.env.verifier.members() {
            if let std::collections::btree_map::Entry::Vacant(entry) = self.peers.entry(peer) {
                entry.insert(Peer::default());
                if let Some(trees) = &mut self.relay {
                    trees.link_up(peer);
                }
            }
        }
    }

    /// A neighbour disconnected (or was dropped for a fault).
    pub fn remove_peer(&mut self, peer: MemberIndex) {
        if self.peers.remove(&peer).is_some() {
            if let Some(trees) = &mut self.relay {
                trees.link_down(peer);
            }
        }
    }

    /// Proposes a value for a key (a write; [`Value::Tombstone`] deletes).
    pub fn propose(&mut self, key: Key, value: Value) -> Result<(Step, Proposed), ProposeError> {
        let mut step = Step::default();
        let register = self.registers.entry(key.clone()).or_default();
        let ctx = self.env.context(&key);
        let (proposed, outcome) = register.propose(&ctx, value)?;
        let now = self.env.now;
        self.proposed_at.entry(key.clone()).or_insert(now);
        self.after_advance(&key, outcome, &mut step);
        Ok((self.order(step), proposed))
    }

    /// The runtime made every state and proof that earlier steps asked it to persist durable:
    /// from now on, messages that carry no newer own vote may leave early ([`Step::early`]).
    pub fn mark_durable(&mut self) {
        self.undurable = false;
    }

    /// Settles which of a step's messages may leave before its writes are durable. A step that
    /// cast an own vote, and every step after it until the runtime calls
    /// [`Replica::mark_durable`], keeps all its messages for after the write: a flush batched
    /// behind a vote carries that vote too. Any other step only forwards what is durable already.
    fn order(&mut self, mut step: Step) -> Step {
        if step.stats.votes_cast > 0 {
            self.undurable = true;
        }
        if !self.undurable {
            let early = std::mem::take(&mut step.messages);
            step.early.extend(early);
        }
        step
    }

    /// Handles a message from a neighbour.
    pub fn receive(&mut self, from: MemberIndex, message: SyncMessage) -> Step {
        let mut step = Step::default();
        if matches!(
            message,
            SyncMessage::MerkleRoot { .. }
                | SyncMessage::MerkleQuery { .. }
                | SyncMessage::MerkleNodes { .. }
        ) {
            self.refresh_merkle();
        }
        if !self.peers.contains_key(&from) {
            self.add_peer(from);
        }
        match message {
            SyncMessage::Updates { verified, updates } => {
                for update in updates {
                    self.merge_update(from, update, verified, &mut step);
                }
            }
            SyncMessage::NeedState { keys } => {
                if let Some(peer) = self.peers.get_mut(&from) {
                    for key in keys {
                        if self.registers.contains_key(&key) {
                            peer.known.remove(&key);
                            peer.asked.insert(key.clone());
                            peer.owed.insert(key);
                        }
                    }
                }
            }
            SyncMessage::Evidence { proofs } => {
                for proof in proofs {
                    if let Err(reason) = self.accept_evidence(proof, &mut step) {
                        step.faults.push(PeerFault { peer: from, reason });
                        break;
                    }
                }
            }
            SyncMessage::Routes { hops, wants } => {
                if let Some(trees) = &mut self.relay {
                    trees.heard(from, Advert { hops, wants });
                }
            }
            SyncMessage::MerkleRoot { root } => {
                // A new root opens a new session, abandoning any running one.
                if let Some(peer) = self.peers.get_mut(&from) {
                    peer.diff = None;
                }
                self.prune_changed_at();
                let mut diff = MerkleDiff::new(root);
                let ask = diff.start(&mut self.merkle);
                self.continue_diff(from, diff, ask, &mut step);
            }
            SyncMessage::MerkleQuery { session, paths } => {
                let nodes = paths
                    .into_iter()
                    .map(|p| {
                        let summary = self.merkle.node(&p);
                        (p, summary)
                    })
                    .collect();
                step.messages
                    .push((from, SyncMessage::MerkleNodes { session, nodes }));
            }
            SyncMessage::MerkleNodes { session, nodes } => {
                // Answers to a session we have since abandoned (a newer root replaced it) are
                // stale, not misbehaviour.
                let Some(peer) = self.peers.get_mut(&from) else {
                    return step;
                };
                let diff = match peer.diff.take() {
                    Some((current, diff)) if current == session => diff,
                    other => {
                        peer.diff = other;
                        return step;
                    }
                };
                match diff_step(diff, &mut self.merkle, nodes) {
                    Ok((diff, ask)) => self.continue_diff(from, diff, ask, &mut step),
                    Err(e) => step.faults.push(PeerFault {
                        peer: from,
                        reason: FaultReason::Merkle(e),
                    }),
                }
            }
        }
        self.order(step)
    }

    fn accept_evidence(&mut self, proof: Equivocation, step: &mut Step) -> Result<(), FaultReason> {
        if self.excluded.contains_key(&proof.member()) {
            return Ok(());
        }
        let forged = || FaultReason::InvalidState {
            key: proof.key.clone(),
            error: InvalidState::ForgedEvidence(proof.member()),
        };
        if !proof.is_well_formed() || usize::from(proof.member()) >= self.env.verifier.members() {
            return Err(forged());
        }
        let network = self.env.verifier.network_id();
        let checks = [proof.first, proof.second].map(|v| SignatureCheck {
            member: v.member,
            message: vote_message(&network, &proof.key, &v.subject),
            signature: v.signature,
        });
        if !self.env.verifier.verify_batch(&checks).is_empty() {
            return Err(forged());
        }
        self.record_evidence(proof, step);
        Ok(())
    }

    fn record_evidence(&mut self, proof: Equivocation, step: &mut Step) {
        if self.excluded.contains_key(&proof.member()) {
            return;
        }
        self.env.excluded.insert(proof.member());
        self.excluded.insert(proof.member(), proof.clone());
        step.evidence.push(proof.clone());
        for peer in self.peers.keys() {
            step.messages.push((
                *peer,
                SyncMessage::Evidence {
                    proofs: vec![proof.clone()],
                },
            ));
        }
        // Votes by the excluded member stop counting: registers may now be able to move.
        let keys: Vec<Key> = self.registers.keys().cloned().collect();
        for key in keys {
            self.advance_key(&key, step);
        }
    }

    fn merge_update(
        &mut self,
        from: MemberIndex,
        update: KeyUpdate,
        verified: bool,
        step: &mut Step,
    ) {
        let key = update.key.clone();
        if key.validate().is_err() {
            step.faults.push(PeerFault {
                peer: from,
                reason: FaultReason::BadRequest("invalid key"),
            });
            return;
        }
        // Record what the sender evidently holds, so we never send it back. Slots out of range
        // are not recorded (the merge rejects them), so a hostile update cannot grow the record.
        let members = self.env.verifier.members();
        if let Some(peer) = self.peers.get_mut(&from) {
            let known = peer.known.entry(key.clone()).or_default();
            if known.view.is_none_or(|view| update.view > view) {
                *known = Known::of_view(update.view);
            }
            if known.view == Some(update.view) {
                let empty = RegisterState::default();
                let ours = self.registers.get(&key).map_or(&empty, |r| &r.state);
                known.record_received(from, &update, ours, members);
            }
            known.compact();
        }
        // On a key's tree, a link's report may be what other links' pieces wait for, even when
        // it brings nothing new: the next flush looks again.
        if !update.pieces.is_empty()
            && self.cadence.aggregate_wait.is_some()
            && self.registers.contains_key(&key)
        {
            self.dirty.insert(key.clone());
        }
        let mut update = update;
        if update.short_refs && !self.resolve_short_refs(from, &mut update) {
            // A name the link never carried (a lost message, or bookkeeping reset on one side):
            // nothing is wrong with the sender, we just cannot read its update.
            let behind = self
                .registers
                .get(&key)
                .is_some_and(|r| r.state.view > update.view);
            if !behind {
                step.messages
                    .push((from, SyncMessage::NeedState { keys: vec![key] }));
            }
            return;
        }
        self.resolve_named_certificate(&mut update);
        if let Some(known) = self
            .peers
            .get_mut(&from)
            .and_then(|peer| peer.known.get_mut(&key))
            .filter(|known| known.view == Some(update.view))
        {
            known.relayed_from(&update);
            known.compact();
        }
        let register = self.registers.entry(key.clone()).or_default();
        let before = register.state.view;
        let ctx = self.env.context(&key);
        let result = register.merge(&ctx, update, verified);
        let outcome: MergeOutcome = match result {
            // An update that left nothing behind (bodies no vote names, votes we dropped) must
            // not leave an empty register either: a peer could otherwise make us keep one per
            // key it invents.
            Ok(outcome) if register.state == RegisterState::default() && !register.has_parked() => {
                self.registers.remove(&key);
                outcome
            }
            Ok(outcome) => outcome,
            Err(error) => {
                if register.state == RegisterState::default() {
                    self.registers.remove(&key);
                }
                if !error.is_fault() {
                    step.stats.deferred_updates += 1;
                    return;
                }
                step.faults.push(PeerFault {
                    peer: from,
                    reason: FaultReason::InvalidState { key, error },
                });
                return;
            }
        };
        step.stats.invalid_signatures += outcome.invalid_signatures;
        if outcome.sender_behind {
            let view = self.registers.get(&key).map(|r| r.state.view);
            if let Some(peer) = self.peers.get_mut(&from) {
                // Once our whole state for this view is on its way to the peer (links are FIFO),
                // its older messages still in flight need no second copy.
                let sent = peer
                    .known
                    .get(&key)
                    .is_some_and(|known| known.in_view && known.view == view);
                if !sent {
                    peer.known.remove(&key);
                    peer.owed.insert(key.clone());
                }
            }
        }
        if outcome.parked {
            if let Some(peer) = self.peers.get_mut(&from) {
                if peer.parked.0.len() < MAX_TRACKED_KEYS_PER_PEER {
                    peer.parked.0.insert(key.clone());
                }
            }
        }
        if outcome.need_full_state {
            step.messages.push((
                from,
                SyncMessage::NeedState {
                    keys: vec![key.clone()],
                },
            ));
        }
        if let Some(cert) = outcome.learned {
            self.on_decided(&key, cert, step);
        }
        if outcome.changed {
            self.touch(&key, before, step);
        }
        for proof in outcome.evidence {
            self.record_evidence(proof, step);
        }
        self.advance_key(&key, step);
    }

    /// Gives a certificate that names its value the body from our own state, which holds it if
    /// we are still in the view the certificate closes. Left named otherwise: the merge then
    /// asks for the whole state if it needs the certificate at all.
    fn resolve_named_certificate(&self, update: &mut KeyUpdate) {
        let Some(UpdateCertificate::Named {
            view,
            round,
            value,
            qc,
        }) = &update.accepted
        else {
            return;
        };
        let body = self
            .registers
            .get(&update.key)
            .filter(|register| register.state.view == *view)
            .and_then(|register| register.state.values.get(value));
        if let Some(body) = body {
            update.accepted = Some(UpdateCertificate::Whole(Certified {
                view: *view,
                round: *round,
                value: body.clone(),
                qc: qc.clone(),
            }));
        }
    }

    /// Rewrites the short value names of `update` (from `from`) into whole hashes, looking them
    /// up among the values its link has carried in the update's view (both ways). A name must
    /// match exactly one of them; otherwise nothing is resolved and this returns false. Names are
    /// never looked up among values that reached us some other way: a value the sender did not
    /// mean, sharing the prefix, could then be read in place of one we lack.
    fn resolve_short_refs(&self, from: MemberIndex, update: &mut KeyUpdate) -> bool {
        let Some(carried) = self
            .peers
            .get(&from)
            .and_then(|peer| peer.known.get(&update.key))
            .filter(|known| known.view == Some(update.view))
            .map(|known| &known.values)
        else {
            return false;
        };
        let resolve = |prefix: &ValueHash| -> Option<ValueHash> {
            let mut low = [0u8; 32];
            let mut high = [0xffu8; 32];
            let len = crate::wire::SHORT_REF_BYTES;
            low[..len].copy_from_slice(&prefix.0 .0[..len]);
            high[..len].copy_from_slice(&prefix.0 .0[..len]);
            let mut matches = carried.range(
                ValueHash(beaufort_crypto::hash::Digest(low))
                    ..=ValueHash(beaufort_crypto::hash::Digest(high)),
            );
            match (matches.next(), matches.next()) {
                (Some(hash), None) => Some(*hash),
                _ => None,
            }
        };
        let mut resolved = Vec::with_capacity(update.votes.len());
        for wire in &update.votes {
            let ballot = match wire.ballot {
                Ballot::Vote { value, signature } => match resolve(&value) {
                    Some(value) => Ballot::Vote { value, signature },
                    None => return false,
                },
                other => other,
            };
            resolved.push(WireBallot { ballot, ..*wire });
        }
        let mut values = Vec::with_capacity(update.pieces.len());
        for piece in &update.pieces {
            match resolve(&piece.value) {
                Some(value) => values.push(value),
                None => return false,
            }
        }
        for (piece, value) in update.pieces.iter_mut().zip(values) {
            piece.value = value;
        }
        update.votes = resolved;
        update.short_refs = false;
        true
    }

    fn advance_key(&mut self, key: &Key, step: &mut Step) {
        let Some(register) = self.registers.get_mut(key) else {
            return;
        };
        let ctx = self.env.context(key);
        let outcome = register.advance(&ctx);
        if register.is_waiting(&ctx) {
            self.waiting.insert(key.clone());
        } else {
            self.waiting.remove(key);
        }
        self.after_advance(key, outcome, step);
    }

    fn after_advance(&mut self, key: &Key, outcome: AdvanceOutcome, step: &mut Step) {
        step.stats.invalid_signatures += outcome.invalid_signatures;
        step.stats.votes_cast += outcome.cast.len();
        let changed = !outcome.cast.is_empty() || outcome.decided.is_some();
        if changed {
            let before = match (&outcome.decided, self.registers.get(key)) {
                (Some(cert), _) => cert.view,
                (None, Some(register)) => register.state.view,
                (None, None) => 0,
            };
            self.touch(key, before, step);
        }
        if let Some(cert) = outcome.decided {
            self.on_decided(key, cert, step);
            self.advance_key(key, step);
        }
    }

    /// A view closed for `key` (we formed or learned its certificate): report it and move our
    /// waiting proposal, if any, to the new view.
    fn on_decided(&mut self, key: &Key, cert: Certified, step: &mut Step) {
        let Some(register) = self.registers.get_mut(key) else {
            return;
        };
        let mine = register.pending() == Some(&cert.value);
        if mine {
            register.clear_pending();
        }
        step.decisions.push(Decision {
            key: key.clone(),
            certified: cert,
            mine,
        });
        let ctx = self.env.context(key);
        let (dropped, outcome) = register.repropose_pending(&ctx);
        if mine || dropped.is_some() {
            self.proposed_at.remove(key);
        }
        if mine {
            self.stall.committed(self.env.now);
        }
        if let Some(value) = dropped {
            step.dropped_proposals.push((key.clone(), value));
        }
        if let Some(outcome) = outcome {
            self.after_advance(key, outcome, step);
        }
    }

    /// Records a change to `key`, which was in view `before` until it.
    fn touch(&mut self, key: &Key, before: View, step: &mut Step) {
        if self.registers.contains_key(key) {
            self.changed_at.insert(key.clone(), self.env.now);
            // The first change since the leaf last held the votes starts the window: a key that
            // keeps changing (a Byzantine member can make it) still shows its votes to
            // anti-entropy once per period, so a stuck view is repaired.
            self.stale_leaves
                .entry(key.clone())
                .or_insert((self.env.now, before));
            step.persist.insert(key.clone());
            self.dirty.insert(key.clone());
        }
    }

    /// Forgets change times older than one [`Cadence::settle`]: no exchange leaves those keys
    /// alone any more.
    fn prune_changed_at(&mut self) {
        let (now, settle) = (self.env.now, self.cadence.settle());
        self.changed_at
            .retain(|_, &mut at| now < at.saturating_add(settle));
    }

    /// Whether `key` changed within one [`Cadence::settle`]: the eager push is still bringing
    /// it to our neighbours.
    fn recently_changed(&self, key: &Key) -> bool {
        let settle = self.cadence.settle();
        self.changed_at
            .get(key)
            .is_some_and(|&at| self.env.now < at.saturating_add(settle))
    }
}

/// Feeds one batch of answers to a session.
fn diff_step(
    mut diff: MerkleDiff,
    merkle: &mut MerkleIndex,
    nodes: Vec<(crate::merkle::NodePath, crate::merkle::NodeSummary)>,
) -> Result<(MerkleDiff, Vec<crate::merkle::NodePath>), crate::merkle::MerkleError> {
    let ask = diff.on_answers(merkle, nodes)?;
    Ok((diff, ask))
}

impl Replica {
    /// Every proof we hold, in messages of at most [`MAX_PROOFS_PER_MESSAGE`].
    fn evidence_batches(&self) -> Vec<Vec<Equivocation>> {
        let all: Vec<Equivocation> = self.excluded.values().cloned().collect();
        all.chunks(MAX_PROOFS_PER_MESSAGE)
            .map(|c| c.to_vec())
            .collect()
    }
}

//! The real Beaufort core as a simulated member: a [`Node`] (replica and disk) driven through the
//! engine exactly as the node drives it, for the checker and the performance engine alike. The
//! replica's own schedule ([`beaufort_core::replica::Replica::next_tick`]) is the only timer;
//! what to push, when to run anti-entropy, the relay trees and the re-wiring decision are the
//! core's. A Byzantine member's outgoing messages go through its [`Adversary`].
//!
//! Each step is persisted to the member's disk before anything else happens, so both of the
//! step's lists of messages may then leave (the core's persist-before-send contract).

use crate::byzantine::{Adversary, Strategy};
use crate::config::Micros;
use crate::engine::ops::{CryptoCounter, OpCounts};
use crate::engine::{Ctx, Member, Tx, TxId};
use crate::node::Node;
use crate::observe::Observer;
use crate::replay::ReplayStep;
use beaufort_core::replica::Step;
use beaufort_core::types::{Key, MemberIndex, Value};
use beaufort_core::wire::{decode, encode, parts, SyncMessage, WireParts};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::sync::Arc;

/// The engine timer that wakes the replica for its next tick.
const WAKE: u64 = 0;

/// The writes of a run by transaction id, and which transaction a decided (key, value) is.
#[derive(Debug, Default)]
pub struct Workload {
    writes: Vec<Option<(Key, Value)>>,
    ids: BTreeMap<(Vec<u8>, Vec<u8>), TxId>,
}

impl Workload {
    /// The workload whose transaction `i` writes `writes[i]` (`None`: a write the core cannot
    /// take, skipped).
    pub fn new(writes: Vec<Option<(Key, Value)>>) -> Workload {
        let ids = writes
            .iter()
            .enumerate()
            .filter_map(|(id, write)| {
                let (key, value) = write.as_ref()?;
                let data = value.as_data()?;
                Some(((key.as_bytes().to_vec(), data.to_vec()), id))
            })
            .collect();
        Workload { writes, ids }
    }

    /// The workload of transactions carrying UTF-8 keys and data values.
    pub fn of_txs(txs: &[Tx]) -> Workload {
        Workload::new(
            txs.iter()
                .map(|t| {
                    Some((
                        Key::new(t.key.clone()).ok()?,
                        Value::data(t.value.clone()).ok()?,
                    ))
                })
                .collect(),
        )
    }
}

/// One Beaufort member.
pub struct SimMember {
    node: Node,
    members: usize,
    adversary: Option<Adversary>,
    rng: ChaCha8Rng,
    workload: Arc<Workload>,
    /// Keys whose value this member has checked once (the hook checks its end-user signature).
    seen: BTreeSet<Key>,
    /// The push period: an upload link with more than this much queued counts as busy.
    flush_every: Micros,
    counter: Option<Arc<CryptoCounter>>,
    observer: Option<Rc<RefCell<Observer>>>,
    /// Whether, if Byzantine, it follows its core's re-wiring decision (see
    /// [`SimMember::adversary_rewires`]).
    adversary_rewires: bool,
    /// Until when the parts of what it sends are counted, if they are ([`SimMember::sent_parts`]).
    measure_wire_until: Option<Micros>,
    sent_parts: WireParts,
}

impl SimMember {
    /// A member running `node` among `members`; `adversary` rewrites its messages if it is
    /// Byzantine (drawing from a generator derived from `seed`); `counter` is the one its node's
    /// signing and verification count into, if any.
    pub fn new(
        node: Node,
        members: usize,
        adversary: Option<Adversary>,
        seed: u64,
        workload: Arc<Workload>,
        flush_every: Micros,
        counter: Option<Arc<CryptoCounter>>,
    ) -> SimMember {
        let i = u64::from(node.index());
        SimMember {
            rng: ChaCha8Rng::seed_from_u64(seed ^ i.wrapping_mul(0x9e37_79b9)),
            node,
            members,
            adversary,
            workload,
            seen: BTreeSet::new(),
            flush_every,
            counter,
            observer: None,
            adversary_rewires: false,
            measure_wire_until: None,
            sent_parts: WireParts::default(),
        }
    }

    /// Lets a Byzantine member re-wire when its own writes stall, as an honest one does (the
    /// performance scenarios do). The checker's adversaries stay on the links they have: its
    /// liveness bound presumes that, since a Byzantine member that keeps finding new honest
    /// neighbours can keep proposing valid values on its keys to the end, and some view is then
    /// always open when the bound expires.
    pub fn adversary_rewires(mut self) -> SimMember {
        self.adversary_rewires = true;
        self
    }

    /// Counts the parts of the bytes it sends until `until` (a performance study; it costs an
    /// encoding of each part).
    pub fn measuring_wire(mut self, until: Micros) -> SimMember {
        self.measure_wire_until = Some(until);
        self
    }

    /// What it sent while measuring, by part.
    pub fn sent_parts(&self) -> WireParts {
        self.sent_parts
    }

    /// Reports what the member does to `observer` (a checked run).
    pub fn observed_by(mut self, observer: Rc<RefCell<Observer>>) -> SimMember {
        self.observer = Some(observer);
        self
    }

    /// The member's node (replica and disk).
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// What its adversary did, if it is Byzantine.
    pub fn adversary(&self) -> Option<&Adversary> {
        self.adversary.as_ref()
    }

    fn me(&self) -> MemberIndex {
        self.node.index()
    }

    fn honest_observer(&self) -> Option<&Rc<RefCell<Observer>>> {
        self.observer.as_ref().filter(|_| self.adversary.is_none())
    }

    /// Persists the step, reports it, and carries out its effects: decisions, re-wiring,
    /// messages, and the neighbours it caught misbehaving (dropped for good, as the node bans).
    fn apply(&mut self, ctx: &mut Ctx, step: Step) {
        self.node.persist(&step);
        if let (Some(observer), Some(replica)) = (self.honest_observer(), self.node.replica()) {
            observer
                .borrow_mut()
                .step(self.me(), replica, &step, ctx.now);
        }
        for key in &step.persist {
            if self.seen.insert(key.clone()) {
                ctx.ops.user_signatures += 1;
            }
        }
        for decision in &step.decisions {
            let Some(value) = decision.certified.value.as_data() else {
                continue;
            };
            let id = (decision.key.as_bytes().to_vec(), value.to_vec());
            if let Some(&tx) = self.workload.ids.get(&id) {
                ctx.committed.push(tx);
            }
        }
        // The core decides when own writes have stalled (crate `beaufort_core::stall`).
        if step.rewire && (self.adversary.is_none() || self.adversary_rewires) {
            ctx.rewire = true;
        }
        let blamed: BTreeSet<MemberIndex> = step.faults.iter().map(|f| f.peer).collect();
        // Persisted above, synchronously: both kinds of message may leave now.
        if let Some(replica) = self.node.replica_mut() {
            replica.mark_durable();
        }
        for (to, message) in step.into_outgoing() {
            self.send(ctx, to, message);
        }
        for peer in blamed {
            if let Some(replica) = self.node.replica_mut() {
                replica.remove_peer(peer);
            }
            ctx.drop_links.push(peer);
        }
    }

    /// Sets the engine timer for the replica's next tick.
    fn wake(&self, ctx: &mut Ctx) {
        if let Some(replica) = self.node.replica() {
            let at = replica.next_tick().saturating_mul(1000);
            ctx.timers.push((at.saturating_sub(ctx.now).max(1), WAKE));
        }
    }

    fn send(&mut self, ctx: &mut Ctx, to: MemberIndex, message: SyncMessage) {
        let me = self.me();
        let message = match &mut self.adversary {
            Some(adversary) => {
                let Some(replica) = self.node.replica() else {
                    return;
                };
                let Some(message) = adversary.outgoing(replica, to, message, &mut self.rng) else {
                    return;
                };
                if let Some(observer) = &self.observer {
                    observer
                        .borrow_mut()
                        .checker
                        .note_byzantine_message(&message);
                }
                message
            }
            None => {
                if let Some(observer) = &self.observer {
                    observer.borrow_mut().sent(me, &message);
                }
                message
            }
        };
        match encode(&message) {
            Ok(bytes) => {
                if self
                    .measure_wire_until
                    .is_some_and(|until| ctx.now <= until)
                {
                    self.sent_parts.add(&parts(&message, bytes.len() as u64));
                }
                ctx.send(to, bytes);
            }
            Err(_) => {
                if let Some(observer) = &self.observer {
                    observer.borrow_mut().counters.wire_errors += 1;
                }
            }
        }
    }
}

impl Member for SimMember {
    fn start(&mut self, ctx: &mut Ctx) {
        self.wake(ctx);
    }

    fn submit(&mut self, ctx: &mut Ctx, tx: &Tx) {
        let Some(Some((key, value))) = self.workload.writes.get(tx.id).cloned() else {
            return;
        };
        self.seen.insert(key.clone());
        let me = self.me();
        let Some(replica) = self.node.replica_mut() else {
            return;
        };
        match replica.propose(key.clone(), value.clone()) {
            Ok((step, _)) => {
                if let Some(observer) = &self.observer {
                    let mut observer = observer.borrow_mut();
                    observer.counters.proposals += 1;
                    observer.checker.note_proposal(&value);
                    observer.record(|| ReplayStep::propose(me, &key, &value));
                }
                self.apply(ctx, step);
            }
            Err(_) => {
                if let Some(observer) = &self.observer {
                    observer.borrow_mut().counters.dropped_proposals += 1;
                }
            }
        }
    }

    fn receive(&mut self, ctx: &mut Ctx, from: MemberIndex, bytes: &[u8]) {
        let message = match decode(bytes, self.members) {
            Ok(message) => message,
            Err(_) => {
                if let Some(observer) = &self.observer {
                    let mut observer = observer.borrow_mut();
                    if !observer.is_byzantine(from) {
                        observer.counters.wire_errors += 1;
                    }
                }
                return;
            }
        };
        if let Some(observer) = &self.observer {
            if matches!(
                message,
                SyncMessage::Updates { .. } | SyncMessage::Evidence { .. }
            ) {
                let to = self.me();
                observer.borrow_mut().record(|| ReplayStep::Deliver {
                    from,
                    to,
                    message: message.clone(),
                });
            }
        }
        if let SyncMessage::Updates { updates, .. } = &message {
            ctx.ops.votes_merged += updates.iter().map(|u| u.votes.len() as u64).sum::<u64>();
        }
        let Some(replica) = self.node.replica_mut() else {
            return;
        };
        let step = replica.receive(from, message);
        self.apply(ctx, step);
    }

    fn timer(&mut self, ctx: &mut Ctx, _: u64) {
        let Some(replica) = self.node.replica_mut() else {
            return;
        };
        // The simulated access link is shared by all neighbours, so a busy link holds back the
        // whole push (the node asks per neighbour: its links are separate).
        let ready = ctx.upload_backlog <= self.flush_every;
        let peers: Vec<MemberIndex> = replica.peers().collect();
        for peer in peers {
            replica.set_link_ready(peer, ready);
        }
        let step = replica.tick(ctx.now / 1000);
        self.apply(ctx, step);
        self.wake(ctx);
    }

    fn link_up(&mut self, _: &mut Ctx, peer: MemberIndex) {
        // The replica opens anti-entropy with the new neighbour at its next tick.
        if let Some(replica) = self.node.replica_mut() {
            replica.add_peer(peer);
        }
    }

    fn link_down(&mut self, peer: MemberIndex) {
        if let Some(replica) = self.node.replica_mut() {
            replica.remove_peer(peer);
        }
    }

    fn switch_strategy(&mut self, strategy: Strategy) {
        if let Some(adversary) = &mut self.adversary {
            adversary.switch(strategy);
            if let Some(observer) = &self.observer {
                observer.borrow_mut().strategies.insert(strategy);
            }
        }
    }

    fn crash(&mut self) {
        self.node.crash();
        let me = self.me();
        if let Some(observer) = &self.observer {
            observer.borrow_mut().record(|| ReplayStep::Crash(me));
        }
    }

    fn restart(&mut self, ctx: &mut Ctx) {
        self.node.restart();
        let me = self.me();
        if let Some(observer) = &self.observer {
            let mut observer = observer.borrow_mut();
            if !observer.is_byzantine(me) {
                observer.counters.crash_restarts += 1;
            }
            observer.record(|| ReplayStep::Restart(me));
        }
        self.wake(ctx);
    }

    fn drain_crypto(&mut self) -> OpCounts {
        self.counter
            .as_ref()
            .map(|counter| counter.drain())
            .unwrap_or_default()
    }
}

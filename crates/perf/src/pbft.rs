//! PBFT as BFT-SMaRt runs it (seed 004; the paper's baseline), as simulated members.
//!
//! * Clients (here: the submitting member) send each request to every replica, which checks the
//!   end user's signature once.
//! * The leader of view `v` (member `v mod n`) orders one consensus instance at a time, like
//!   BFT-SMaRt: when the previous instance is decided it proposes everything pending as one batch
//!   (up to [`MAX_BATCH`]) in a PRE-PREPARE.
//! * Every replica (leader included) sends PREPARE to all; with a quorum (2f + 1) of matching
//!   PREPAREs it sends COMMIT to all; with a quorum of COMMITs it executes in sequence order.
//! * Every message carries a MAC (HMAC-SHA256 over the channel, as BFT-SMaRt authenticates
//!   replica links): one MAC computed per copy sent and one checked per message received.
//! * The links are all-to-all ([`beaufort_sim::engine::Topology::Full`]), so a broadcast puts `n - 1`
//!   copies on the sender's upload link.
//! * View change: a replica holding a request unordered for [`REQUEST_TIMEOUT`] sends
//!   VIEW-CHANGE (with what it prepared) to all; a replica that sees f + 1 VIEW-CHANGEs for a
//!   higher view joins. The new leader, with a quorum of VIEW-CHANGEs, sends NEW-VIEW carrying
//!   them and re-proposes every prepared batch; if it does not arrive within the timeout the
//!   replicas move on to the next view with the timeout doubled (PBFT's liveness rule).

use super::baseline::{decode, digest, encode, faults, quorum, Request};
use beaufort_core::types::MemberIndex;
use beaufort_sim::byzantine::Strategy;
use beaufort_sim::config::{Micros, MS, SECOND};
use beaufort_sim::engine::ops::OpCounts;
use beaufort_sim::engine::{Ctx, Member, Tx, TxId};
use beaufort_sim::network::index;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Bytes of the MAC every message carries.
const MAC_BYTES: usize = 32;
/// BFT-SMaRt's request timeout: an unordered request this old triggers a view change.
pub const REQUEST_TIMEOUT: Micros = 2 * SECOND;
/// BFT-SMaRt's default maximum batch size.
pub const MAX_BATCH: usize = 1024;
/// How often a replica checks its request timers.
const TICK: Micros = 50 * MS;

/// A batch prepared in some view, as VIEW-CHANGE reports it.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Prepared {
    view: u64,
    seq: u64,
    batch: Vec<Request>,
    /// The prepare certificate (2f PREPAREs), carried as bytes.
    proof: Vec<u8>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
enum Body {
    Request(Request),
    PrePrepare {
        view: u64,
        seq: u64,
        batch: Vec<Request>,
    },
    Prepare {
        view: u64,
        seq: u64,
        digest: [u8; 32],
    },
    Commit {
        view: u64,
        seq: u64,
        digest: [u8; 32],
    },
    ViewChange {
        view: u64,
        executed: u64,
        prepared: Vec<Prepared>,
    },
    NewView {
        view: u64,
        /// The quorum of VIEW-CHANGE messages, as received.
        proofs: Vec<Vec<u8>>,
        reproposals: Vec<(u64, Vec<Request>)>,
    },
}

#[derive(Debug, Serialize, Deserialize)]
struct Message {
    body: Body,
    mac: [u8; MAC_BYTES],
}

/// One consensus instance in one view.
#[derive(Debug, Default)]
struct Instance {
    batch: Option<([u8; 32], Vec<Request>)>,
    prepares: BTreeMap<[u8; 32], BTreeSet<MemberIndex>>,
    commits: BTreeMap<[u8; 32], BTreeSet<MemberIndex>>,
    sent_commit: bool,
    decided: bool,
}

/// A view change in progress towards some view: who asked, with their encoded messages.
type ViewChanges = BTreeMap<MemberIndex, (Vec<u8>, Vec<Prepared>)>;

/// Builds the members of a PBFT run.
pub fn members(n: usize) -> Vec<Box<dyn Member>> {
    (0..n)
        .map(|i| Box::new(Replica::new(index(i), n)) as Box<dyn Member>)
        .collect()
}

/// One PBFT replica.
struct Replica {
    me: MemberIndex,
    n: usize,
    view: u64,
    /// The view this replica is changing to, if it gave up on `view`.
    changing: Option<u64>,
    /// Last executed sequence number.
    executed: u64,
    /// Leader: last sequence number proposed.
    proposed: u64,
    /// Requests received and not executed, with their arrival.
    pending: BTreeMap<TxId, (Micros, Request)>,
    /// Requests executed (late copies are ignored).
    done: BTreeSet<TxId>,
    /// Requests in a batch the leader has proposed and not yet executed.
    in_flight: BTreeSet<TxId>,
    instances: BTreeMap<(u64, u64), Instance>,
    /// Decided batches waiting for their predecessors.
    decided: BTreeMap<u64, Vec<Request>>,
    /// The last batches executed, by sequence (reported in VIEW-CHANGE for lagging replicas).
    recent: BTreeMap<u64, Prepared>,
    view_changes: BTreeMap<u64, ViewChanges>,
    /// The current view-change timeout (doubles while views fail).
    timeout: Micros,
    /// Progress (an execution or a view change) resets the request timers to this time.
    waiting_since: Micros,
}

impl Replica {
    fn new(me: MemberIndex, n: usize) -> Replica {
        Replica {
            me,
            n,
            view: 0,
            changing: None,
            executed: 0,
            proposed: 0,
            pending: BTreeMap::new(),
            done: BTreeSet::new(),
            in_flight: BTreeSet::new(),
            instances: BTreeMap::new(),
            decided: BTreeMap::new(),
            recent: BTreeMap::new(),
            view_changes: BTreeMap::new(),
            timeout: REQUEST_TIMEOUT,
            waiting_since: 0,
        }
    }

    fn leader(&self, view: u64) -> MemberIndex {
        index((view % self.n as u64) as usize)
    }

    /// Sends `body` to every other replica, one MAC per copy; returns the encoded message.
    fn broadcast(&self, ctx: &mut Ctx, body: Body) -> Vec<u8> {
        let bytes = encode(&Message {
            body,
            mac: [0; MAC_BYTES],
        });
        for to in (0..self.n).map(index).filter(|&to| to != self.me) {
            ctx.ops.macs += 1;
            ctx.send(to, bytes.clone());
        }
        bytes
    }

    /// The leader proposes the pending requests when no instance of its own is open.
    fn propose(&mut self, ctx: &mut Ctx) {
        if self.leader(self.view) != self.me || self.changing.is_some() {
            return;
        }
        if self.proposed > self.executed {
            return;
        }
        let batch: Vec<Request> = self
            .pending
            .iter()
            .filter(|(id, _)| !self.in_flight.contains(id))
            .take(MAX_BATCH)
            .map(|(_, (_, r))| r.clone())
            .collect();
        if batch.is_empty() {
            return;
        }
        self.proposed = self.executed + 1;
        let seq = self.proposed;
        self.in_flight.extend(batch.iter().map(Request::id));
        self.broadcast(
            ctx,
            Body::PrePrepare {
                view: self.view,
                seq,
                batch: batch.clone(),
            },
        );
        self.accept(ctx, self.view, seq, batch);
    }

    /// Takes a batch for (view, seq) from the leader and sends PREPARE.
    fn accept(&mut self, ctx: &mut Ctx, view: u64, seq: u64, batch: Vec<Request>) {
        let d = digest(&batch);
        if seq <= self.executed {
            // Executed here already: vouch for it so that lagging replicas complete it.
            self.broadcast(
                ctx,
                Body::Prepare {
                    view,
                    seq,
                    digest: d,
                },
            );
            self.broadcast(
                ctx,
                Body::Commit {
                    view,
                    seq,
                    digest: d,
                },
            );
            return;
        }
        for r in &batch {
            if !self.pending.contains_key(&r.id()) && !self.done.contains(&r.id()) {
                ctx.ops.user_signatures += 1;
            }
        }
        let instance = self.instances.entry((view, seq)).or_default();
        if instance.batch.is_some() {
            return;
        }
        instance.batch = Some((d, batch));
        instance.prepares.entry(d).or_default().insert(self.me);
        self.broadcast(
            ctx,
            Body::Prepare {
                view,
                seq,
                digest: d,
            },
        );
        self.advance(ctx, view, seq);
    }

    /// Moves an instance on when its quorums are complete.
    fn advance(&mut self, ctx: &mut Ctx, view: u64, seq: u64) {
        let q = quorum(self.n);
        let me = self.me;
        let Some(instance) = self.instances.get_mut(&(view, seq)) else {
            return;
        };
        let Some((d, batch)) = instance.batch.clone() else {
            return;
        };
        let prepared = instance.prepares.get(&d).map_or(0, BTreeSet::len) >= q;
        if prepared && !instance.sent_commit {
            instance.sent_commit = true;
            instance.commits.entry(d).or_default().insert(me);
            self.broadcast(
                ctx,
                Body::Commit {
                    view,
                    seq,
                    digest: d,
                },
            );
        }
        let Some(instance) = self.instances.get_mut(&(view, seq)) else {
            return;
        };
        let committed = instance.commits.get(&d).map_or(0, BTreeSet::len) >= q;
        if instance.sent_commit && committed && !instance.decided {
            instance.decided = true;
            if seq > self.executed {
                self.decided.insert(seq, batch);
            }
            self.execute(ctx);
        }
    }

    /// Executes decided batches in sequence order.
    fn execute(&mut self, ctx: &mut Ctx) {
        while let Some(batch) = self.decided.remove(&(self.executed + 1)) {
            self.executed += 1;
            for r in &batch {
                if self.done.insert(r.id()) {
                    ctx.committed.push(r.id());
                }
                self.pending.remove(&r.id());
                self.in_flight.remove(&r.id());
            }
            self.recent.insert(
                self.executed,
                Prepared {
                    view: self.view,
                    seq: self.executed,
                    batch,
                    proof: Vec::new(),
                },
            );
            while self.recent.len() > 2 {
                self.recent.pop_first();
            }
            self.waiting_since = ctx.now;
            self.timeout = REQUEST_TIMEOUT;
        }
        self.instances.retain(|&(_, seq), _| seq > self.executed);
        self.propose(ctx);
    }

    /// Gives up on the current view (or on the view being changed to) and asks for `view`.
    fn start_view_change(&mut self, ctx: &mut Ctx, view: u64) {
        if self.changing.is_some_and(|v| v >= view) || view <= self.view {
            return;
        }
        self.changing = Some(view);
        self.waiting_since = ctx.now;
        // Prepared certificates: 2f PREPAREs of ~90 bytes each.
        let proof = vec![0; 2 * faults(self.n) * 90];
        let mut prepared: Vec<Prepared> = self.recent.values().cloned().collect();
        for (&(v, seq), instance) in &self.instances {
            if let (true, Some((_, batch))) = (instance.sent_commit, &instance.batch) {
                prepared.push(Prepared {
                    view: v,
                    seq,
                    batch: batch.clone(),
                    proof: proof.clone(),
                });
            }
        }
        let bytes = self.broadcast(
            ctx,
            Body::ViewChange {
                view,
                executed: self.executed,
                prepared: prepared.clone(),
            },
        );
        self.view_changes
            .entry(view)
            .or_default()
            .insert(self.me, (bytes, prepared));
        self.try_new_view(ctx, view);
    }

    /// The new leader installs `view` once it holds a quorum of VIEW-CHANGEs for it.
    fn try_new_view(&mut self, ctx: &mut Ctx, view: u64) {
        if self.leader(view) != self.me || self.view >= view || self.changing != Some(view) {
            return;
        }
        let Some(changes) = self.view_changes.get(&view) else {
            return;
        };
        if changes.len() < quorum(self.n) {
            return;
        }
        let mut best: BTreeMap<u64, (u64, Vec<Request>)> = BTreeMap::new();
        for (_, prepared) in changes.values() {
            for p in prepared {
                let entry = best.entry(p.seq).or_insert((p.view, p.batch.clone()));
                if p.view > entry.0 {
                    *entry = (p.view, p.batch.clone());
                }
            }
        }
        let proofs: Vec<Vec<u8>> = changes.values().map(|(b, _)| b.clone()).collect();
        let reproposals: Vec<(u64, Vec<Request>)> =
            best.into_iter().map(|(seq, (_, b))| (seq, b)).collect();
        self.broadcast(
            ctx,
            Body::NewView {
                view,
                proofs,
                reproposals: reproposals.clone(),
            },
        );
        self.install(ctx, view, reproposals);
    }

    /// Enters `view` and runs its re-proposed batches.
    fn install(&mut self, ctx: &mut Ctx, view: u64, reproposals: Vec<(u64, Vec<Request>)>) {
        self.view = view;
        self.changing = None;
        self.waiting_since = ctx.now;
        self.instances.retain(|&(v, _), _| v >= view);
        self.view_changes.retain(|&v, _| v > view);
        self.in_flight.clear();
        self.proposed = self.executed;
        for (seq, batch) in reproposals {
            if self.leader(view) == self.me {
                self.in_flight.extend(batch.iter().map(Request::id));
                self.proposed = self.proposed.max(seq);
            }
            self.accept(ctx, view, seq, batch);
        }
        self.propose(ctx);
    }

    fn handle(&mut self, ctx: &mut Ctx, from: MemberIndex, bytes: &[u8], body: Body) {
        match body {
            Body::Request(r) => {
                if !self.done.contains(&r.id()) && !self.pending.contains_key(&r.id()) {
                    ctx.ops.user_signatures += 1;
                    self.pending.insert(r.id(), (ctx.now, r));
                    self.propose(ctx);
                }
            }
            Body::PrePrepare { view, seq, batch } => {
                if view == self.view && self.changing.is_none() && from == self.leader(view) {
                    self.accept(ctx, view, seq, batch);
                }
            }
            Body::Prepare { view, seq, digest } => {
                if view >= self.view && seq > self.executed {
                    let instance = self.instances.entry((view, seq)).or_default();
                    instance.prepares.entry(digest).or_default().insert(from);
                    self.advance(ctx, view, seq);
                }
            }
            Body::Commit { view, seq, digest } => {
                if view >= self.view && seq > self.executed {
                    let instance = self.instances.entry((view, seq)).or_default();
                    instance.commits.entry(digest).or_default().insert(from);
                    self.advance(ctx, view, seq);
                }
            }
            Body::ViewChange { view, prepared, .. } => {
                if view <= self.view {
                    return;
                }
                self.view_changes
                    .entry(view)
                    .or_default()
                    .insert(from, (bytes.to_vec(), prepared));
                // f + 1 replicas want a higher view: at least one is correct, so join it.
                let target = self.changing.unwrap_or(self.view);
                let join = self
                    .view_changes
                    .range(target + 1..)
                    .find(|(_, c)| c.len() > faults(self.n))
                    .map(|(&v, _)| v);
                if let Some(v) = join {
                    self.start_view_change(ctx, v);
                }
                self.try_new_view(ctx, view);
            }
            Body::NewView {
                view,
                proofs,
                reproposals,
            } => {
                if view > self.view && from == self.leader(view) && proofs.len() >= quorum(self.n) {
                    ctx.ops.macs += proofs.len() as u64;
                    self.install(ctx, view, reproposals);
                }
            }
        }
    }
}

impl Member for Replica {
    fn start(&mut self, ctx: &mut Ctx) {
        ctx.timers.push((TICK, 0));
    }

    fn submit(&mut self, ctx: &mut Ctx, tx: &Tx) {
        let request = Request::of(tx);
        self.broadcast(ctx, Body::Request(request.clone()));
        self.pending.insert(tx.id, (ctx.now, request));
        self.propose(ctx);
    }

    fn receive(&mut self, ctx: &mut Ctx, from: MemberIndex, bytes: &[u8]) {
        ctx.ops.macs += 1;
        if let Some(message) = decode::<Message>(bytes) {
            self.handle(ctx, from, bytes, message.body);
        }
    }

    fn timer(&mut self, ctx: &mut Ctx, _: u64) {
        ctx.timers.push((TICK, 0));
        let Some(oldest) = self.pending.values().map(|(at, _)| *at).min() else {
            return;
        };
        if ctx.now.saturating_sub(oldest.max(self.waiting_since)) < self.timeout {
            return;
        }
        let next = self.changing.unwrap_or(self.view) + 1;
        if self.changing.is_some() {
            // The view change itself stalled (the next leader is down too).
            self.timeout = self.timeout.saturating_mul(2);
        }
        self.start_view_change(ctx, next);
    }

    fn link_up(&mut self, _: &mut Ctx, _: MemberIndex) {}

    fn link_down(&mut self, _: MemberIndex) {}

    fn switch_strategy(&mut self, _: Strategy) {}

    /// The scenarios crash baseline members for good; nothing is kept.
    fn crash(&mut self) {}

    /// A baseline keeps no disk: it would start afresh (no scenario restarts one).
    fn restart(&mut self, ctx: &mut Ctx) {
        self.start(ctx);
    }

    fn drain_crypto(&mut self) -> OpCounts {
        OpCounts::default()
    }
}

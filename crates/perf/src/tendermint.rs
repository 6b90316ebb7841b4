//! A Tendermint-style protocol ("The latest gossip on BFT consensus", Buchman, Kwon and
//! Milosevic 2018) as simulated members.
//!
//! * Heights decide one block each; the proposer of (height h, round r) is member
//!   `(h + r) mod n`. It proposes its valid block if it has one, otherwise every transaction in
//!   its mempool (empty blocks included, CometBFT's `create_empty_blocks = true`).
//! * PROPOSAL, PREVOTE and PRECOMMIT follow the paper's algorithm: locking on a polka (a quorum of
//!   2f + 1 prevotes), precommit nil on a nil polka, decide on a quorum of precommits for the
//!   proposal in any round, and skip to a higher round on f + 1 messages from it.
//! * Timeouts are CometBFT's defaults: propose 3 s, prevote 1 s, precommit 1 s, each plus 0.5 s per
//!   round; `timeout_commit` is zero (`skip_timeout_commit`), so heights follow each other as fast
//!   as the votes spread. A crashed proposer costs its height a 3 s propose timeout.
//! * Everything spreads by gossip over the same overlay as BeauFort (a random 7-regular graph with
//!   re-wiring): transactions (the mempool), proposals and every single vote. A member forwards
//!   each message the first time it sees it to all its neighbours but the sender. A new
//!   connection receives the sender's messages of its current and previous height (CometBFT's
//!   consensus reactor catches peers up likewise).
//! * Costs: votes and proposals are Ed25519-signed (CometBFT's default key type): one
//!   [`super::cost::CostTable::ed25519_sign`] per own message and one
//!   [`super::cost::CostTable::ed25519_verify`] per new message received; each transaction's
//!   P-256 signature is checked once, when the mempool first sees it.

use super::baseline::{decode, digest, encode, faults, quorum, Request};
use beaufort_core::types::MemberIndex;
use beaufort_sim::byzantine::Strategy;
use beaufort_sim::config::{Micros, MS, SECOND};
use beaufort_sim::engine::ops::OpCounts;
use beaufort_sim::engine::{Ctx, Member, Tx, TxId};
use beaufort_sim::network::index;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Bytes of an Ed25519 signature.
const SIGNATURE_BYTES: usize = 64;
/// CometBFT's default `timeout_propose`.
pub const TIMEOUT_PROPOSE: Micros = 3 * SECOND;
/// CometBFT's default `timeout_prevote` (and `timeout_precommit`).
pub const TIMEOUT_VOTE: Micros = SECOND;
/// CometBFT's default increase of every timeout per round.
pub const TIMEOUT_DELTA: Micros = 500 * MS;

/// A block digest; `None` votes nil.
type BlockId = Option<[u8; 32]>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
enum VoteKind {
    Prevote,
    Precommit,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
enum Body {
    Tx(Request),
    Proposal {
        height: u64,
        round: u64,
        valid_round: Option<u64>,
        block: Vec<Request>,
    },
    Vote {
        kind: VoteKind,
        height: u64,
        round: u64,
        block: BlockId,
    },
}

/// A signed message as gossiped: who made it, what it says, the signature.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Signed {
    origin: MemberIndex,
    body: Body,
    signature: Vec<u8>,
}

/// Identifies a message for gossip de-duplication.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum MessageId {
    Tx(TxId),
    Proposal(u64, u64),
    Vote(VoteKind, u64, u64, MemberIndex),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    Propose,
    Prevote,
    Precommit,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Timeout {
    Propose,
    Prevote,
    Precommit,
}

impl Timeout {
    fn id(self, height: u64, round: u64) -> u64 {
        let kind = match self {
            Timeout::Propose => 0,
            Timeout::Prevote => 1,
            Timeout::Precommit => 2,
        };
        (height << 24) | ((round & 0x3f_ffff) << 2) | kind
    }

    fn of(id: u64) -> (Timeout, u64, u64) {
        let kind = match id & 3 {
            0 => Timeout::Propose,
            1 => Timeout::Prevote,
            _ => Timeout::Precommit,
        };
        (kind, id >> 24, (id >> 2) & 0x3f_ffff)
    }

    fn delay(self, round: u64) -> Micros {
        let base = match self {
            Timeout::Propose => TIMEOUT_PROPOSE,
            Timeout::Prevote | Timeout::Precommit => TIMEOUT_VOTE,
        };
        base + TIMEOUT_DELTA * round
    }
}

/// Builds the members of a Tendermint-style run.
pub fn members(n: usize) -> Vec<Box<dyn Member>> {
    (0..n)
        .map(|i| Box::new(Validator::new(index(i), n)) as Box<dyn Member>)
        .collect()
}

/// A proposal as received.
#[derive(Clone, Debug)]
struct Proposal {
    id: [u8; 32],
    block: Vec<Request>,
    valid_round: Option<u64>,
}

/// One Tendermint-style validator.
struct Validator {
    me: MemberIndex,
    n: usize,
    neighbours: BTreeSet<MemberIndex>,
    seen: BTreeSet<MessageId>,
    /// Encoded messages by height, for catching up new connections.
    log: BTreeMap<u64, Vec<Vec<u8>>>,
    mempool: BTreeMap<TxId, Request>,
    committed: BTreeSet<TxId>,
    height: u64,
    round: u64,
    step: Step,
    locked: Option<(u64, [u8; 32])>,
    valid: Option<(u64, Vec<Request>)>,
    proposals: BTreeMap<(u64, u64), Proposal>,
    votes: BTreeMap<(VoteKind, u64, u64), BTreeMap<MemberIndex, BlockId>>,
    /// Once-only rules already fired for (height, round): prevote timeout, polka, precommit
    /// timeout.
    fired: BTreeSet<(u64, u64, u8)>,
}

impl Validator {
    fn new(me: MemberIndex, n: usize) -> Validator {
        Validator {
            me,
            n,
            neighbours: BTreeSet::new(),
            seen: BTreeSet::new(),
            log: BTreeMap::new(),
            mempool: BTreeMap::new(),
            committed: BTreeSet::new(),
            height: 0,
            round: 0,
            step: Step::Propose,
            locked: None,
            valid: None,
            proposals: BTreeMap::new(),
            votes: BTreeMap::new(),
            fired: BTreeSet::new(),
        }
    }

    fn proposer(&self, height: u64, round: u64) -> MemberIndex {
        index(((height + round) % self.n as u64) as usize)
    }

    /// Signs and gossips an own message, and processes it locally.
    fn publish(&mut self, ctx: &mut Ctx, body: Body) {
        ctx.ops.ed25519_signs += 1;
        let message = Signed {
            origin: self.me,
            body,
            signature: vec![0; SIGNATURE_BYTES],
        };
        let bytes = encode(&message);
        self.accept(ctx, None, &bytes, message);
    }

    /// Takes in a message seen for the first time (own or gossiped): records it, forwards it to
    /// every neighbour but `from`, and applies the consensus rules.
    fn accept(&mut self, ctx: &mut Ctx, from: Option<MemberIndex>, bytes: &[u8], m: Signed) {
        let id = match &m.body {
            Body::Tx(r) => MessageId::Tx(r.id()),
            Body::Proposal { height, round, .. } => MessageId::Proposal(*height, *round),
            Body::Vote {
                kind,
                height,
                round,
                ..
            } => MessageId::Vote(*kind, *height, *round, m.origin),
        };
        let height = match &m.body {
            Body::Tx(_) => None,
            Body::Proposal { height, .. } | Body::Vote { height, .. } => Some(*height),
        };
        if height.is_some_and(|h| h + 1 < self.height) || !self.seen.insert(id) {
            return;
        }
        if from.is_some() {
            match &m.body {
                Body::Tx(_) => ctx.ops.user_signatures += 1,
                _ => ctx.ops.ed25519_verifies += 1,
            }
        }
        for &peer in &self.neighbours {
            if Some(peer) != from {
                ctx.send(peer, bytes.to_vec());
            }
        }
        if let Some(h) = height {
            self.log.entry(h).or_default().push(bytes.to_vec());
        }
        match m.body {
            Body::Tx(r) => {
                if !self.committed.contains(&r.id()) {
                    self.mempool.insert(r.id(), r);
                }
            }
            Body::Proposal {
                height,
                round,
                valid_round,
                block,
            } => {
                if m.origin != self.proposer(height, round) {
                    return;
                }
                for r in &block {
                    if !self.mempool.contains_key(&r.id()) && !self.committed.contains(&r.id()) {
                        ctx.ops.user_signatures += 1;
                    }
                }
                let proposal = Proposal {
                    id: digest(&block),
                    block,
                    valid_round,
                };
                self.proposals.insert((height, round), proposal);
            }
            Body::Vote {
                kind,
                height,
                round,
                block,
            } => {
                self.votes
                    .entry((kind, height, round))
                    .or_default()
                    .insert(m.origin, block);
            }
        }
        self.progress(ctx);
    }

    /// Votes of `kind` in (current height, `round`) for `block` (`None` counts all votes).
    fn count(&self, kind: VoteKind, round: u64, block: Option<BlockId>) -> usize {
        self.votes.get(&(kind, self.height, round)).map_or(0, |v| {
            v.values()
                .filter(|b| block.is_none_or(|want| **b == want))
                .count()
        })
    }

    fn start_round(&mut self, ctx: &mut Ctx, round: u64) {
        self.round = round;
        self.step = Step::Propose;
        if self.proposer(self.height, round) == self.me {
            let (valid_round, block) = match &self.valid {
                Some((r, block)) => (Some(*r), block.clone()),
                None => (None, self.mempool.values().cloned().collect()),
            };
            self.publish(
                ctx,
                Body::Proposal {
                    height: self.height,
                    round,
                    valid_round,
                    block,
                },
            );
        } else {
            let delay = Timeout::Propose.delay(round);
            ctx.timers
                .push((delay, Timeout::Propose.id(self.height, round)));
        }
    }

    fn vote(&mut self, ctx: &mut Ctx, kind: VoteKind, block: BlockId) {
        self.step = match kind {
            VoteKind::Prevote => Step::Prevote,
            VoteKind::Precommit => Step::Precommit,
        };
        let (height, round) = (self.height, self.round);
        self.publish(
            ctx,
            Body::Vote {
                kind,
                height,
                round,
                block,
            },
        );
    }

    /// Fires `rule` for the current (height, round) once; false if it already fired.
    fn once(&mut self, rule: u8) -> bool {
        self.fired.insert((self.height, self.round, rule))
    }

    /// Applies the algorithm's upon-rules until none fires.
    fn progress(&mut self, ctx: &mut Ctx) {
        let q = quorum(self.n);
        let (h, r) = (self.height, self.round);
        // Decide: a proposal of any round with a quorum of precommits for it.
        let decided = self
            .proposals
            .range((h, 0)..(h + 1, 0))
            .find(|((_, pr), p)| self.count(VoteKind::Precommit, *pr, Some(Some(p.id))) >= q)
            .map(|(_, p)| p.block.clone());
        if let Some(block) = decided {
            self.decide(ctx, block);
            return;
        }
        // f + 1 messages from a higher round: skip to it.
        let skip = self
            .votes
            .range((VoteKind::Prevote, h, r + 1)..(VoteKind::Prevote, h + 1, 0))
            .chain(
                self.votes
                    .range((VoteKind::Precommit, h, r + 1)..(VoteKind::Precommit, h + 1, 0)),
            )
            .map(|((_, _, round), _)| *round)
            .filter(|&round| {
                let mut senders: BTreeSet<MemberIndex> = BTreeSet::new();
                for kind in [VoteKind::Prevote, VoteKind::Precommit] {
                    if let Some(v) = self.votes.get(&(kind, h, round)) {
                        senders.extend(v.keys());
                    }
                }
                senders.len() > faults(self.n)
            })
            .min();
        if let Some(round) = skip {
            self.start_round(ctx, round);
            return self.progress(ctx);
        }
        let proposal = self.proposals.get(&(h, r)).cloned();
        if self.step == Step::Propose {
            if let Some(p) = &proposal {
                let vote = match p.valid_round {
                    None => Some(self.locked.is_none_or(|(_, id)| id == p.id)),
                    Some(vr)
                        if vr < r && self.count(VoteKind::Prevote, vr, Some(Some(p.id))) >= q =>
                    {
                        Some(self.locked.is_none_or(|(lr, id)| lr <= vr || id == p.id))
                    }
                    Some(_) => None,
                };
                if let Some(good) = vote {
                    self.vote(ctx, VoteKind::Prevote, good.then_some(p.id));
                    return self.progress(ctx);
                }
            }
        }
        if self.step == Step::Prevote && self.count(VoteKind::Prevote, r, None) >= q && self.once(0)
        {
            let delay = Timeout::Prevote.delay(r);
            ctx.timers.push((delay, Timeout::Prevote.id(h, r)));
        }
        if let Some(p) = &proposal {
            if self.step >= Step::Prevote
                && self.count(VoteKind::Prevote, r, Some(Some(p.id))) >= q
                && self.once(1)
            {
                self.valid = Some((r, p.block.clone()));
                if self.step == Step::Prevote {
                    self.locked = Some((r, p.id));
                    self.vote(ctx, VoteKind::Precommit, Some(p.id));
                    return self.progress(ctx);
                }
            }
        }
        if self.step == Step::Prevote && self.count(VoteKind::Prevote, r, Some(None)) >= q {
            self.vote(ctx, VoteKind::Precommit, None);
            return self.progress(ctx);
        }
        if self.count(VoteKind::Precommit, r, None) >= q && self.once(2) {
            let delay = Timeout::Precommit.delay(r);
            ctx.timers.push((delay, Timeout::Precommit.id(h, r)));
        }
    }

    fn decide(&mut self, ctx: &mut Ctx, block: Vec<Request>) {
        for r in &block {
            if self.committed.insert(r.id()) {
                ctx.committed.push(r.id());
            }
            self.mempool.remove(&r.id());
        }
        self.height += 1;
        self.locked = None;
        self.valid = None;
        let h = self.height;
        self.proposals.retain(|&(ph, _), _| ph >= h);
        self.votes.retain(|&(_, vh, _), _| vh >= h);
        self.fired.retain(|&(fh, _, _)| fh >= h);
        self.log.retain(|&lh, _| lh + 1 >= h);
        self.seen.retain(|id| match id {
            MessageId::Tx(_) => true,
            MessageId::Proposal(mh, _) | MessageId::Vote(_, mh, _, _) => mh + 1 >= h,
        });
        self.start_round(ctx, 0);
        self.progress(ctx);
    }
}

impl Member for Validator {
    fn start(&mut self, ctx: &mut Ctx) {
        self.start_round(ctx, 0);
    }

    fn submit(&mut self, ctx: &mut Ctx, tx: &Tx) {
        let message = Signed {
            origin: self.me,
            body: Body::Tx(Request::of(tx)),
            signature: Vec::new(),
        };
        let bytes = encode(&message);
        self.accept(ctx, None, &bytes, message);
    }

    fn receive(&mut self, ctx: &mut Ctx, from: MemberIndex, bytes: &[u8]) {
        if let Some(message) = decode::<Signed>(bytes) {
            self.accept(ctx, Some(from), bytes, message);
        }
    }

    fn timer(&mut self, ctx: &mut Ctx, id: u64) {
        let (timeout, height, round) = Timeout::of(id);
        if (height, round) != (self.height, self.round) {
            return;
        }
        match timeout {
            Timeout::Propose if self.step == Step::Propose => {
                self.vote(ctx, VoteKind::Prevote, None)
            }
            Timeout::Prevote if self.step == Step::Prevote => {
                self.vote(ctx, VoteKind::Precommit, None)
            }
            Timeout::Precommit => self.start_round(ctx, round + 1),
            _ => return,
        }
        self.progress(ctx);
    }

    fn link_up(&mut self, ctx: &mut Ctx, peer: MemberIndex) {
        self.neighbours.insert(peer);
        for bytes in self.log.values().flatten() {
            ctx.send(peer, bytes.clone());
        }
    }

    fn link_down(&mut self, peer: MemberIndex) {
        self.neighbours.remove(&peer);
    }

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

//! The real Beaufort core as a simulated member: a [`Replica`] driven through the engine, with
//! flush and anti-entropy timers, evidence forwarding, re-wiring when its own proposal makes no
//! progress, and (for the Byzantine scenario) an [`Adversary`] rewriting its outgoing messages.

use super::cost::{CostMode, CountingSigner, CountingVerifier, CryptoCounter, OpCounts};
use super::engine::{Ctx, Member, Tx, TxId};
use super::PerfConfig;
use crate::byzantine::{Adversary, Strategy};
use crate::config::{Micros, SECOND};
use crate::keys::{CryptoKind, ForbiddenPrefixHook, Keyring};
use crate::network::index;
use crate::SimError;
use beaufort_core::auth::{Verifier, VoteSigner};
use beaufort_core::relay::{HopDistances, RelayPlan};
use beaufort_core::replica::{Replica, Step};
use beaufort_core::types::{Key, MemberIndex, Value};
use beaufort_core::wire::{decode, encode, SyncMessage};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

const FLUSH: u64 = 0;
const ANTI_ENTROPY: u64 = 1;
const SECOND_CHANCE: u64 = 2;

/// Which transaction a decided (key, value) is.
type TxIndex = BTreeMap<(Vec<u8>, Vec<u8>), TxId>;

/// Builds the members of a Beaufort run.
pub fn members(
    cfg: &PerfConfig,
    byzantine: &BTreeSet<MemberIndex>,
) -> Result<Vec<Box<dyn super::engine::Member>>, SimError> {
    let kind = match cfg.cost {
        CostMode::Modelled(_) => CryptoKind::StandIn,
        CostMode::Measured { .. } => CryptoKind::Bls,
    };
    let keyring = Keyring::new(kind, cfg.members, cfg.seed)?;
    let txs: Arc<TxIndex> = Arc::new(
        cfg.workload()
            .into_iter()
            .map(|t| ((t.key.into_bytes(), t.value), t.id))
            .collect(),
    );
    let shared = keyring.verifier();
    Ok((0..cfg.members)
        .map(|i| {
            let m = index(i);
            let counter = Arc::new(CryptoCounter::default());
            let (signer, verifier): (Box<dyn VoteSigner>, Arc<dyn Verifier>) = match cfg.cost {
                CostMode::Modelled(_) => (
                    Box::new(CountingSigner::new(keyring.signer(m), counter.clone())),
                    Arc::new(CountingVerifier::new(shared.clone(), counter.clone())),
                ),
                CostMode::Measured { .. } => (keyring.signer(m), shared.clone()),
            };
            let adversary = byzantine
                .contains(&m)
                .then(|| Adversary::new(m, Strategy::InvalidSignatures, &keyring));
            Box::new(BeaufortMember {
                replica: Replica::new(signer, verifier, Arc::new(ForbiddenPrefixHook)),
                members: cfg.members,
                counter,
                adversary,
                rng: ChaCha8Rng::seed_from_u64(cfg.seed ^ (i as u64).wrapping_mul(0x9e37_79b9)),
                txs: txs.clone(),
                seen: BTreeSet::new(),
                pending: BTreeMap::new(),
                flush_every: cfg.flush_every,
                relay_parents: cfg.relay_parents,
                relay_retry: cfg.relay_retry,
            }) as Box<dyn Member>
        })
        .collect())
}

/// One Beaufort member.
struct BeaufortMember {
    replica: Replica,
    members: usize,
    counter: Arc<CryptoCounter>,
    adversary: Option<Adversary>,
    rng: ChaCha8Rng,
    txs: Arc<TxIndex>,
    seen: BTreeSet<Key>,
    pending: BTreeMap<TxId, Micros>,
    flush_every: Micros,
    /// Parents per relay tree (0: flood).
    relay_parents: usize,
    /// How often held-back votes get their second chance.
    relay_retry: Micros,
}

impl BeaufortMember {
    /// Reports decisions, charges first sight of a value (the hook checks its end-user signature)
    /// and sends the step's messages (the simulation keeps no disk: nothing restarts here).
    fn apply(&mut self, ctx: &mut Ctx, step: Step) {
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
            if let Some(&tx) = self.txs.get(&id) {
                self.pending.remove(&tx);
                ctx.committed.push(tx);
            }
        }
        // The core decides when own writes have stalled (crate `beaufort_core::stall`).
        if step.rewire {
            ctx.rewire = true;
        }
        // No disk here: every write is durable at once, so everything may leave now.
        self.replica.mark_durable();
        for (to, message) in step.into_outgoing() {
            self.send(ctx, to, message);
        }
    }

    fn send(&mut self, ctx: &mut Ctx, to: MemberIndex, message: SyncMessage) {
        let message = match &mut self.adversary {
            Some(adversary) => {
                match adversary.outgoing(&self.replica, to, message, &mut self.rng) {
                    Some(message) => message,
                    None => return,
                }
            }
            None => message,
        };
        if let Ok(bytes) = encode(&message) {
            ctx.send(to, bytes);
        }
    }
}

impl Member for BeaufortMember {
    fn submit(&mut self, ctx: &mut Ctx, tx: &Tx) {
        let (Ok(key), Ok(value)) = (Key::new(tx.key.clone()), Value::data(tx.value.clone())) else {
            return;
        };
        self.seen.insert(key.clone());
        if let Ok((step, _)) = self.replica.propose(key, value) {
            self.pending.insert(tx.id, ctx.now);
            self.apply(ctx, step);
        }
    }

    fn receive(&mut self, ctx: &mut Ctx, from: MemberIndex, bytes: &[u8]) {
        let Ok(message) = decode(bytes, self.members) else {
            return;
        };
        if let SyncMessage::Updates { updates, .. } = &message {
            ctx.ops.votes_merged += updates.iter().map(|u| u.votes.len() as u64).sum::<u64>();
        }
        let step = self.replica.receive(from, message);
        // A neighbour caught misbehaving is dropped for good, as the node bans it.
        let blamed: BTreeSet<MemberIndex> = step.faults.iter().map(|f| f.peer).collect();
        self.apply(ctx, step);
        for peer in blamed {
            self.replica.remove_peer(peer);
            ctx.drop_links.push(peer);
        }
    }

    fn timer(&mut self, ctx: &mut Ctx, id: u64) {
        match id {
            FLUSH => {
                // The simulated access link is shared by all neighbours, so a busy link holds
                // back the whole push (the node asks per neighbour: its links are separate).
                let mut step = self.replica.tick(ctx.now / 1000);
                if ctx.upload_backlog <= self.flush_every {
                    step.absorb(self.replica.flush());
                }
                self.apply(ctx, step);
                ctx.timers.push((self.flush_every, FLUSH));
            }
            SECOND_CHANCE => {
                self.replica.second_chance();
                ctx.timers.push((self.relay_retry, SECOND_CHANCE));
            }
            _ => {
                let peers: Vec<MemberIndex> = self.replica.peers().collect();
                for peer in peers {
                    let step = self.replica.start_anti_entropy(peer);
                    self.apply(ctx, step);
                }
                let next = self.rng.gen_range(SECOND / 2..=SECOND);
                ctx.timers.push((next, ANTI_ENTROPY));
            }
        }
    }

    fn start(&mut self, ctx: &mut Ctx) {
        let phase = self.rng.gen_range(1..=self.flush_every.max(1));
        ctx.timers.push((phase, FLUSH));
        let ae = self.rng.gen_range(SECOND / 2..=SECOND);
        ctx.timers.push((ae, ANTI_ENTROPY));
        if self.relay_parents > 0 {
            let phase = self.rng.gen_range(1..=self.relay_retry.max(1));
            ctx.timers.push((phase, SECOND_CHANCE));
        }
    }

    fn overlay_changed(&mut self, adjacency: &[Vec<MemberIndex>], distances: &HopDistances) {
        if self.relay_parents > 0 {
            let me = self.replica.me();
            let plan = RelayPlan::build(me, adjacency, distances, self.relay_parents);
            self.replica.set_relay_plan(Some(plan));
        }
    }

    fn link_up(&mut self, ctx: &mut Ctx, peer: MemberIndex) {
        self.replica.add_peer(peer);
        if ctx.now > 0 {
            let step = self.replica.start_anti_entropy(peer);
            self.apply(ctx, step);
        }
    }

    fn link_down(&mut self, peer: MemberIndex) {
        self.replica.remove_peer(peer);
    }

    fn switch_strategy(&mut self, strategy: Strategy) {
        if let Some(adversary) = &mut self.adversary {
            adversary.switch(strategy);
        }
    }

    fn drain_crypto(&mut self) -> OpCounts {
        self.counter.drain()
    }
}

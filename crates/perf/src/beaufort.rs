//! The real Beaufort core as a simulated member: a [`Replica`] driven through the engine exactly
//! as the node drives it. The replica's own schedule ([`Replica::next_tick`]) is the only timer;
//! what to push, when to run anti-entropy, the relay trees and the re-wiring decision are the
//! core's. For the Byzantine scenario an [`Adversary`] rewrites the member's outgoing messages.

use super::cost::{CostMode, CountingSigner, CountingVerifier, CryptoCounter, OpCounts};
use super::engine::{Ctx, Member, Tx, TxId};
use super::PerfConfig;
use beaufort_core::auth::{Verifier, VoteSigner};
use beaufort_core::cadence::Cadence;
use beaufort_core::replica::{Replica, Step};
use beaufort_core::types::{Key, MemberIndex, Value};
use beaufort_core::wire::{decode, encode, SyncMessage};
use beaufort_sim::byzantine::{Adversary, Strategy};
use beaufort_sim::config::Micros;
use beaufort_sim::keys::{CryptoKind, ForbiddenPrefixHook, Keyring};
use beaufort_sim::network::index;
use beaufort_sim::SimError;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// The engine timer that wakes the replica for its next tick.
const WAKE: u64 = 0;

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
            let cadence = Cadence {
                flush_every: cfg.flush_every.div_ceil(1000).max(1),
                second_chance_every: cfg.relay_retry.div_ceil(1000).max(1),
                relay_parents: cfg.relay_parents,
                aggregate_wait: cfg.aggregate_wait.map(|wait| wait.div_ceil(1000)),
                seed: cfg.seed,
                ..Cadence::default()
            };
            Box::new(BeaufortMember {
                replica: Replica::new(signer, verifier, Arc::new(ForbiddenPrefixHook))
                    .with_cadence(cadence),
                members: cfg.members,
                counter,
                adversary,
                rng: ChaCha8Rng::seed_from_u64(cfg.seed ^ (i as u64).wrapping_mul(0x9e37_79b9)),
                txs: txs.clone(),
                seen: BTreeSet::new(),
                pending: BTreeMap::new(),
                flush_every: cfg.flush_every,
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
    /// The push period: an upload link with more than this much queued counts as busy.
    flush_every: Micros,
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

    /// Sets the engine timer for the replica's next tick.
    fn wake(&self, ctx: &mut Ctx) {
        let at = self.replica.next_tick().saturating_mul(1000);
        ctx.timers.push((at.saturating_sub(ctx.now).max(1), WAKE));
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

    fn timer(&mut self, ctx: &mut Ctx, _: u64) {
        // The simulated access link is shared by all neighbours, so a busy link holds back the
        // whole push (the node asks per neighbour: its links are separate).
        let ready = ctx.upload_backlog <= self.flush_every;
        let peers: Vec<MemberIndex> = self.replica.peers().collect();
        for peer in peers {
            self.replica.set_link_ready(peer, ready);
        }
        let step = self.replica.tick(ctx.now / 1000);
        self.apply(ctx, step);
        self.wake(ctx);
    }

    fn start(&mut self, ctx: &mut Ctx) {
        self.wake(ctx);
    }

    fn link_up(&mut self, _: &mut Ctx, peer: MemberIndex) {
        // The replica opens anti-entropy with the new neighbour at its next tick.
        self.replica.add_peer(peer);
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

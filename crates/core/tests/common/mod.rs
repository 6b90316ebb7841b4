//! A minimal all-to-all harness for core tests: messages are delivered in FIFO order, instantly.
//! (The real simulator, with delays, loss and adversaries, lives in `beaufort-sim`.)

// Each test binary uses a different subset of this harness.
#![allow(dead_code)]

use beaufort_core::auth::{StandInCrypto, Verifier};
use beaufort_core::cadence::Cadence;
use beaufort_core::hook::{AcceptAll, ValidationHook};
use beaufort_core::register::{KeyUpdate, WireBallot};
use beaufort_core::relay::RelayTrees;
use beaufort_core::replica::{Decision, Replica, Step};
use beaufort_core::state::{Ballot, Piece};
use beaufort_core::types::Round;
use beaufort_core::types::{Key, MemberIndex, Value};
use beaufort_core::vote::{vote_message, VoteKind, VoteSubject};
use beaufort_core::wire::{decode, encode, SyncMessage};
use beaufort_crypto::aggregate::Aggregate;
use beaufort_crypto::hash::{hash, Domain};
use std::collections::VecDeque;
use std::sync::Arc;

pub struct Cluster {
    pub replicas: Vec<Replica>,
    pub queue: VecDeque<(MemberIndex, MemberIndex, SyncMessage)>,
    pub decisions: Vec<(MemberIndex, Decision)>,
    /// Virtual milliseconds, given to every replica's tick.
    pub clock: u64,
}

impl Cluster {
    pub fn new(n: usize) -> Cluster {
        Cluster::with_hook(n, Arc::new(AcceptAll))
    }

    pub fn with_hook(n: usize, hook: Arc<dyn ValidationHook>) -> Cluster {
        let crypto = StandInCrypto::new(hash(Domain::NetworkId, &[b"test"]), n);
        let mut replicas = Vec::new();
        for i in 0..n {
            let mut r = Replica::new(
                Box::new(crypto.signer(i as MemberIndex)),
                Arc::new(crypto.clone()),
                hook.clone(),
            );
            for j in 0..n {
                r.add_peer(j as MemberIndex);
            }
            replicas.push(r);
        }
        Cluster {
            replicas,
            queue: VecDeque::new(),
            decisions: Vec::new(),
            clock: 0,
        }
    }

    pub fn apply(&mut self, from: MemberIndex, mut step: Step) {
        assert!(
            step.faults.is_empty(),
            "unexpected faults: {:?}",
            step.faults
        );
        for d in std::mem::take(&mut step.decisions) {
            self.decisions.push((from, d));
        }
        for (to, msg) in step.into_outgoing() {
            // Every message goes through the real encoding and its limits.
            let bytes = encode(&msg).expect("encode");
            let msg = decode(&bytes, self.replicas.len()).expect("decode");
            self.queue.push_back((from, to, msg));
        }
    }

    pub fn propose(&mut self, member: MemberIndex, key: &str, value: &str) {
        let (step, _) = self.replicas[member as usize]
            .propose(Key::new(key).unwrap(), Value::data(value).unwrap())
            .expect("propose");
        self.apply(member, step);
    }

    /// Ticks and flushes every replica and delivers until a pass carries nothing but the
    /// periodic anti-entropy openers and adverts, which a tick always sends (bounded).
    pub fn run(&mut self) {
        for _ in 0..10_000 {
            // Ten virtual seconds per pass: every wait on a split round is over.
            self.clock += 10_000;
            for i in 0..self.replicas.len() {
                let mut step = self.replicas[i].tick(self.clock);
                step.absorb(self.replicas[i].flush());
                self.apply(i as MemberIndex, step);
            }
            let mut busy = false;
            while let Some((from, to, msg)) = self.queue.pop_front() {
                busy |= !matches!(
                    msg,
                    SyncMessage::MerkleRoot { .. }
                        | SyncMessage::Evidence { .. }
                        | SyncMessage::Routes { .. }
                );
                let step = self.replicas[to as usize].receive(from, msg);
                self.apply(to, step);
            }
            if !busy {
                return;
            }
        }
        panic!("cluster did not go quiet");
    }

    pub fn value(&self, member: usize, key: &str) -> Option<Value> {
        self.replicas[member]
            .get(&Key::new(key).unwrap())
            .map(|c| c.value.clone())
    }
}

pub fn crypto(n: usize) -> StandInCrypto {
    StandInCrypto::new(hash(Domain::NetworkId, &[b"test"]), n)
}

pub fn key() -> Key {
    Key::new("k").unwrap()
}

pub fn data(s: &str) -> Value {
    Value::data(s).unwrap()
}

/// A validly signed PRE-COMMIT or COMMIT slot for `member`.
pub fn vote(
    c: &StandInCrypto,
    member: MemberIndex,
    kind: VoteKind,
    round: Round,
    value: &Value,
) -> WireBallot {
    let subject = VoteSubject {
        view: 0,
        round,
        kind,
        value: value.hash(),
    };
    let message = vote_message(&c.network_id(), &key(), &subject);
    WireBallot {
        kind,
        round,
        member,
        ballot: Ballot::Vote {
            value: value.hash(),
            signature: c.share(member, &message),
        },
    }
}

pub fn update(values: Vec<Value>, votes: Vec<WireBallot>, complete: bool) -> KeyUpdate {
    KeyUpdate {
        key: key(),
        view: 0,
        accepted: None,
        values,
        votes,
        pieces: Vec::new(),
        complete,
        short_refs: false,
    }
}

/// A seven-member overlay for relay-tree tests: each member's neighbours (members 7 and up, in
/// a larger consortium, have none).
pub fn relay_overlay() -> Vec<Vec<MemberIndex>> {
    vec![
        vec![1, 2, 4],
        vec![0, 3],
        vec![0, 4, 5],
        vec![1, 5, 6],
        vec![0, 2, 6],
        vec![2, 3, 6],
        vec![3, 4, 5],
    ]
}

/// Settles relay trees on [`relay_overlay`] (in a consortium of `n`) and hands `a`, one of its
/// seven members, its neighbours' adverts, as their `Routes` messages would. Returns every
/// member's settled trees, from which a test reads the shape of a key's tree.
pub fn learn_relay_trees(a: &mut Replica, n: usize) -> Vec<RelayTrees> {
    let adjacency = relay_overlay();
    let mut trees: Vec<RelayTrees> = (0..n)
        .map(|m| RelayTrees::new(m as MemberIndex, n, 1))
        .collect();
    for (m, neighbours) in adjacency.iter().enumerate() {
        for &peer in neighbours {
            trees[m].link_up(peer);
        }
    }
    loop {
        let mut mail = Vec::new();
        for (m, t) in trees.iter_mut().enumerate() {
            for (to, advert) in t.take_owed() {
                mail.push((usize::from(to), m as MemberIndex, advert));
            }
        }
        if mail.is_empty() {
            break;
        }
        for (to, from, advert) in mail {
            trees[to].heard(from, advert);
        }
    }
    let me = a.me();
    for &peer in &adjacency[usize::from(me)] {
        let advert = trees[usize::from(peer)]
            .advert_for(me)
            .expect("a neighbour");
        let step = a.receive(
            peer,
            SyncMessage::Routes {
                hops: advert.hops,
                wants: advert.wants,
            },
        );
        assert!(step.faults.is_empty());
    }
    trees
}

/// The key updates a step pushes to `peer` (to everyone with `None`).
pub fn pushed(step: &Step, peer: Option<MemberIndex>) -> Vec<KeyUpdate> {
    step.outgoing()
        .filter(|(to, _)| peer.is_none_or(|p| *to == p))
        .flat_map(|(_, m)| match m {
            SyncMessage::Updates { updates, .. } => updates.clone(),
            _ => vec![],
        })
        .collect()
}

/// The piece of `members`' votes for `value` (each once), validly signed.
pub fn piece(c: &StandInCrypto, kind: VoteKind, members: &[MemberIndex], value: &Value) -> Piece {
    let mut sum: Option<Aggregate> = None;
    for &member in members {
        let share = match vote(c, member, kind, 0, value).ballot {
            Ballot::Vote { signature, .. } => signature,
            other => panic!("a single vote, not {other:?}"),
        };
        let single = Aggregate::single(c.members(), member, share).expect("in range");
        match sum.as_mut() {
            Some(sum) => assert!(c.combine(sum, &single)),
            None => sum = Some(single),
        }
    }
    Piece {
        kind,
        round: 0,
        value: value.hash(),
        aggregate: sum.expect("at least one member"),
    }
}

/// Member `me`'s replica with votes as pieces, waiting `wait` ms on a key's tree (the fallback
/// is 1 s more than two waits), and neighbours `peers`.
pub fn pieces_member_waiting(
    c: &StandInCrypto,
    me: MemberIndex,
    peers: &[MemberIndex],
    wait: u64,
) -> Replica {
    let pieces = Cadence {
        aggregate_wait: Some(wait),
        ..Cadence::default()
    };
    let mut replica = Replica::new(
        Box::new(c.signer(me)),
        Arc::new(c.clone()),
        Arc::new(AcceptAll),
    )
    .with_cadence(pieces);
    for &peer in peers {
        replica.add_peer(peer);
    }
    replica
}

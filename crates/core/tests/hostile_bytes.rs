//! Every byte from the network is adversarial: random and mutated messages must decode to an error
//! or to a message the replica handles without panicking, and nothing a peer sends may make an
//! honest replica vote twice in a round.

mod common;

use beaufort_core::replica::Replica;
use beaufort_core::types::Key;
use beaufort_core::vote::VoteKind;
use beaufort_core::wire::{decode, encode};
use common::Cluster;
use std::collections::BTreeMap;

/// A tiny deterministic generator (xorshift64*), so failures reproduce from the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Real messages of a busy cluster, to mutate.
fn corpus() -> Vec<Vec<u8>> {
    let mut cluster = Cluster::new(4);
    cluster.propose(0, "a", "x");
    cluster.propose(1, "a", "y");
    cluster.propose(2, "b", "z");
    let mut corpus = Vec::new();
    for _ in 0..200 {
        for i in 0..4 {
            let step = cluster.replicas[i].flush();
            cluster.apply(i as u16, step);
        }
        let Some((from, to, message)) = cluster.queue.pop_front() else {
            break;
        };
        corpus.push(encode(&message).expect("encode"));
        let step = cluster.replicas[to as usize].receive(from, message);
        cluster.apply(to, step);
    }
    assert!(
        corpus.len() > 20,
        "the cluster produced too few messages to mutate"
    );
    corpus
}

/// Own votes of `replica`, by (key, view, kind, round).
type Slot = (Key, u64, VoteKind, u32);

fn own_votes(replica: &Replica) -> BTreeMap<Slot, beaufort_core::types::ValueHash> {
    let mut out = BTreeMap::new();
    for (key, state) in replica.states() {
        for vote in state.signed_votes() {
            if vote.member == replica.me() {
                out.insert(
                    (
                        key.clone(),
                        vote.subject.view,
                        vote.subject.kind,
                        vote.subject.round,
                    ),
                    vote.subject.value,
                );
            }
        }
    }
    out
}

#[test]
fn mutated_and_random_messages_never_panic_or_cause_a_double_vote() {
    let corpus = corpus();
    for seed in 1..=40u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut cluster = Cluster::new(4);
        cluster.propose(0, "a", "x");
        let mut decoded = 0;
        for _ in 0..300 {
            let mut bytes = corpus[rng.below(corpus.len())].clone();
            match rng.below(4) {
                0 => {
                    // Flip a few bytes.
                    for _ in 0..=rng.below(4) {
                        let i = rng.below(bytes.len());
                        bytes[i] ^= 1 << rng.below(8);
                    }
                }
                1 => bytes.truncate(rng.below(bytes.len() + 1)),
                2 => {
                    let len = rng.below(200);
                    bytes = (0..len).map(|_| rng.next() as u8).collect();
                    bytes.insert(0, 1);
                    bytes.insert(1, 0);
                }
                _ => {}
            }
            let Ok(message) = decode(&bytes, 4) else {
                continue;
            };
            decoded += 1;
            let to = rng.below(4);
            let from = (to + 1 + rng.below(3)) % 4;
            let before = own_votes(&cluster.replicas[to]);
            let step = cluster.replicas[to].receive(from as u16, message);
            // Whatever happened, a vote we cast stays what it was.
            let after = own_votes(&cluster.replicas[to]);
            for (slot, value) in &before {
                if let Some(now) = after.get(slot) {
                    assert_eq!(now, value, "seed {seed}: own vote changed in {slot:?}");
                }
            }
            drop(step);
        }
        assert!(decoded > 0, "seed {seed}: no mutated message decoded");
    }
}

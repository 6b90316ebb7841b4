//! Writes seed inputs for the `wire_decode` target: the encoded messages of a small consortium at
//! work (proposals on a few keys, deltas, whole states, equivocation evidence, a Merkle
//! anti-entropy exchange), one file per distinct message, named by its BLAKE3 hash.
//!
//! ```sh
//! cd fuzz && cargo run --release --example seeds -- corpus/wire_decode
//! ```
//!
//! Then minimise with `cargo fuzz cmin wire_decode` (see README.md). The `replica_receive` and
//! `merkle_sync` targets read structured inputs (`arbitrary`), so their seeds come from fuzzing
//! runs instead.

use beaufort_core::auth::StandInCrypto;
use beaufort_core::hook::AcceptAll;
use beaufort_core::replica::{Replica, Step};
use beaufort_core::types::{Key, MemberIndex, Value};
use beaufort_core::vote::{vote_message, Equivocation, SignedVote, VoteKind, VoteSubject};
use beaufort_core::wire::{encode, SyncMessage};
use beaufort_crypto::hash::{hash, Domain};
use std::collections::{BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;

const N: usize = 4;

struct Cluster {
    replicas: Vec<Replica>,
    queue: VecDeque<(MemberIndex, MemberIndex, SyncMessage)>,
    seen: BTreeSet<Vec<u8>>,
}

impl Cluster {
    fn apply(&mut self, from: MemberIndex, step: Step) {
        for (to, message) in step.messages {
            self.seen
                .insert(encode(&message).expect("an honest message encodes"));
            self.queue.push_back((from, to, message));
        }
    }

    fn propose(&mut self, member: MemberIndex, key: &str, value: &str) {
        let key = Key::new(key).expect("a valid key");
        let value = Value::data(value).expect("a small value");
        let (step, _) = self.replicas[usize::from(member)]
            .propose(key, value)
            .expect("AcceptAll accepts");
        self.apply(member, step);
    }

    /// Flushes and delivers until quiet; messages to `cut` are lost.
    fn run(&mut self, cut: Option<MemberIndex>) {
        for _ in 0..1000 {
            for i in 0..N {
                let step = self.replicas[i].flush();
                self.apply(i as MemberIndex, step);
            }
            if self.queue.is_empty() {
                return;
            }
            while let Some((from, to, message)) = self.queue.pop_front() {
                if Some(to) == cut || Some(from) == cut {
                    continue;
                }
                let step = self.replicas[usize::from(to)].receive(from, message);
                self.apply(to, step);
            }
        }
    }
}

fn main() {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "corpus/wire_decode".to_owned()),
    );
    std::fs::create_dir_all(&out).expect("create the corpus directory");
    let crypto = StandInCrypto::new(hash(Domain::NetworkId, &[b"beaufort-fuzz seeds"]), N);
    let replicas = (0..N as MemberIndex)
        .map(|i| {
            let mut replica = Replica::new(
                Box::new(crypto.signer(i)),
                Arc::new(crypto.clone()),
                Arc::new(AcceptAll),
            );
            for j in 0..N as MemberIndex {
                replica.add_peer(j);
            }
            replica
        })
        .collect();
    let mut cluster = Cluster {
        replicas,
        queue: VecDeque::new(),
        seen: BTreeSet::new(),
    };

    // Contention on one key, a second key, a delete, then a view that member 3 misses and repairs
    // through anti-entropy.
    cluster.propose(0, "a", "x");
    cluster.propose(1, "a", "y");
    cluster.propose(2, "b", "z");
    cluster.run(None);
    cluster.propose(1, "b", "w");
    cluster.propose(2, "a", "");
    cluster.run(None);
    cluster.propose(0, "c", "missed by 3");
    cluster.run(Some(3));
    let step = cluster.replicas[0].start_anti_entropy(3);
    cluster.apply(0, step);
    cluster.run(None);

    // Member 3 equivocates: its two votes travel as a proof.
    let key = Key::new("a").expect("a valid key");
    let vote = |value: &str| {
        let subject = VoteSubject {
            view: 5,
            round: 0,
            kind: VoteKind::PreCommit,
            value: Value::data(value).expect("a small value").hash(),
        };
        let message = vote_message(&hash(Domain::NetworkId, &[b"x"]), &key, &subject);
        SignedVote {
            member: 3,
            subject,
            signature: crypto.share(3, &message),
        }
    };
    let proof = Equivocation::new(key.clone(), vote("p"), vote("q"));
    cluster.seen.insert(
        encode(&SyncMessage::Evidence {
            proofs: vec![proof],
        })
        .expect("evidence encodes"),
    );

    for bytes in &cluster.seen {
        let name = hash(Domain::Other, &[bytes]).to_hex();
        std::fs::write(out.join(&name[..16]), bytes).expect("write a seed");
    }
    println!("{} seeds in {}", cluster.seen.len(), out.display());
}

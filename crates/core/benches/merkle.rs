//! Benchmarks of the Merkle index at a million keys: an anti-entropy session finding one differing
//! key, a single update with root recomputation, and building the index from scratch.
//!
//! Short run: `cargo bench -p beaufort-core --bench merkle -- --warm-up-time 1 --measurement-time 3
//! --sample-size 10`.

use std::hint::black_box;

use beaufort_core::merkle::{DiffOutcome, MerkleDiff, MerkleIndex, NodePath, NodeSummary};
use beaufort_crypto::hash::{hash, Digest, Domain};
use criterion::{criterion_group, criterion_main, Criterion};

const KEYS: u64 = 1_000_000;

fn key(i: u64) -> Vec<u8> {
    format!("account/{i:08}").into_bytes()
}

fn digest(i: u64) -> Digest {
    hash(Domain::RegisterState, &[&i.to_le_bytes()])
}

/// An index of `KEYS` keys with every root hash computed.
fn build() -> MerkleIndex {
    let mut index = MerkleIndex::new();
    for i in 0..KEYS {
        index.insert(&key(i), digest(i));
    }
    index.root();
    index
}

/// A whole session of `local` against `remote`, the remote's answers served in-process.
fn diff(local: &mut MerkleIndex, remote: &mut MerkleIndex) -> DiffOutcome {
    let mut diff = MerkleDiff::new(remote.root());
    let mut ask = diff.start(local);
    while !ask.is_empty() {
        let answers: Vec<(NodePath, NodeSummary)> =
            ask.iter().map(|path| (*path, remote.node(path))).collect();
        ask = diff
            .on_answers(local, answers)
            .expect("an honest remote's answers are well-formed");
    }
    diff.finish()
}

fn merkle(c: &mut Criterion) {
    let mut local = build();
    let mut remote = local.clone();
    remote.insert(&key(KEYS / 3), digest(u64::MAX));
    remote.root();

    let outcome = diff(&mut local, &mut remote);
    assert_eq!(outcome.differing, vec![key(KEYS / 3)]);
    println!(
        "diff of 1 key among {KEYS} keys: {} node queries",
        outcome.queries
    );
    c.bench_function("diff_1_of_1M", |b| {
        b.iter(|| diff(black_box(&mut local), black_box(&mut remote)))
    });
    drop(remote);

    let mut version = 0;
    c.bench_function("update_1_of_1M_and_root", |b| {
        b.iter(|| {
            version += 1;
            local.insert(&key(version * 7919 % KEYS), digest(KEYS + version));
            black_box(local.root())
        })
    });
    drop(local);

    c.bench_function("build_1M", |b| b.iter_with_large_drop(build));
}

criterion_group!(benches, merkle);
criterion_main!(benches);

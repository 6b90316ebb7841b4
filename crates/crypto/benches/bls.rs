//! Benchmarks of Beaufort's signature operations, against raw blst where a comparison tells us
//! whether our wrappers cost anything, plus a min_pk vs min_sig comparison that justifies the
//! variant choice (see the crate docs).

use beaufort_crypto::batch::{
    verify_aggregates_report, verify_batch_report, AggregateItem, BatchItem, BatchOutcome,
};
use beaufort_crypto::hash::{hash, Domain};
use beaufort_crypto::{
    verify_user_signature, Aggregate, MemberIndex, MemberKey, Membership, QuorumCertificate,
    SecretKey, Signature, Signer, UserKeyPair, VOTE_DST,
};
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use std::sync::Arc;

const N: usize = 100;
const QUORUM: usize = 67;

fn ikm(i: usize) -> [u8; 32] {
    *hash(Domain::Other, &[b"bench member", &(i as u64).to_le_bytes()]).as_bytes()
}

fn committee() -> (Membership, Vec<Signer>) {
    let secrets: Vec<SecretKey> = (0..N).map(|i| SecretKey::generate(&ikm(i))).collect();
    let keys = secrets.iter().map(MemberKey::from_secret).collect();
    let membership = match Membership::new(hash(Domain::NetworkId, &[b"bench"]), keys) {
        Ok(m) => m,
        Err(e) => panic!("bench committee: {e}"),
    };
    let signers = secrets
        .into_iter()
        .enumerate()
        .map(|(i, sk)| Signer::new(i as MemberIndex, sk))
        .collect();
    (membership, signers)
}

/// 100 votes spread over `messages` distinct messages, the first `bad` of which sign the wrong
/// message.
fn batch(signers: &[Signer], messages: usize, bad: usize) -> Vec<BatchItem> {
    let msgs: Vec<Arc<[u8]>> = (0..messages)
        .map(|i| Arc::from(format!("vote message {i}").into_bytes()))
        .collect();
    (0..N)
        .map(|i| {
            let message = msgs[i % messages].clone();
            let signer = &signers[i];
            let signature = if i * 31 % N < bad {
                signer.sign(b"not the message")
            } else {
                signer.sign(&message)
            };
            BatchItem {
                signer: signer.index(),
                message,
                signature,
            }
        })
        .collect()
}

/// The quorum of 67 votes on `msg` as `pieces` pieces of consecutive signers, each repeated
/// `overlap` extra signers of the next piece (so overlapping pieces carry multiplicities when
/// combined).
fn pieces(signers: &[Signer], msg: &[u8], pieces: usize, overlap: usize) -> Vec<Aggregate> {
    let size = QUORUM.div_ceil(pieces);
    (0..pieces)
        .map(|p| {
            let members = (p * size)..((p + 1) * size + overlap).min(N);
            let mut piece: Option<Aggregate> = None;
            for i in members {
                let share = match Aggregate::single(N, i as MemberIndex, signers[i].sign(msg)) {
                    Ok(share) => share,
                    Err(e) => panic!("{e}"),
                };
                match piece.as_mut() {
                    Some(piece) => {
                        if let Err(e) = piece.combine(&share) {
                            panic!("{e}");
                        }
                    }
                    None => piece = Some(share),
                }
            }
            match piece {
                Some(piece) => piece,
                None => panic!("an empty piece"),
            }
        })
        .collect()
}

/// Partial aggregates (issue 14): combining two, checking one with repeated signers, and checking
/// the pieces of a quorum in one batch.
fn aggregates(c: &mut Criterion) {
    let (membership, signers) = committee();
    let msg = b"beaufort vote message: key, value digest, view, round";
    let plain = pieces(&signers, msg, 4, 0);
    let overlapping = pieces(&signers, msg, 4, 3);
    let mut whole = overlapping[0].clone();
    for piece in &overlapping[1..] {
        if let Err(e) = whole.combine(piece) {
            panic!("{e}");
        }
    }
    assert!(!whole.weights.is_plain() && membership.verify_weighted(&whole, msg));
    let items: Vec<AggregateItem> = plain
        .iter()
        .map(|aggregate| AggregateItem {
            message: Arc::from(msg.as_slice()),
            aggregate: aggregate.clone(),
        })
        .collect();
    let mut poisoned = items.clone();
    if let Err(e) = poisoned[2].aggregate.combine(&match Aggregate::single(
        N,
        99,
        signers[99].sign(b"not the message"),
    ) {
        Ok(share) => share,
        Err(e) => panic!("{e}"),
    }) {
        panic!("{e}");
    }
    let mut g = c.benchmark_group("aggregates");
    g.bench_function("combine_two_pieces", |b| {
        b.iter(|| {
            let mut piece = plain[0].clone();
            piece.combine(black_box(&plain[1])).map(|()| piece)
        })
    });
    g.bench_function("verify_weighted_67_of_100_with_9_repeats", |b| {
        b.iter(|| assert!(membership.verify_weighted(black_box(&whole), msg)))
    });
    for (name, batch, expect_valid) in [
        ("verify_4_pieces_of_a_quorum", &items, true),
        ("verify_4_pieces_one_poisoned", &poisoned, false),
    ] {
        let report = verify_aggregates_report(&membership, batch, [9; 32]);
        assert_eq!(report.outcome == BatchOutcome::AllValid, expect_valid);
        println!("{name}: {report:?}");
        g.bench_function(name, |b| {
            b.iter(|| verify_aggregates_report(&membership, black_box(batch), [9; 32]))
        });
    }
    g.finish();
}

fn beaufort(c: &mut Criterion) {
    let (membership, signers) = committee();
    let msg = b"beaufort vote message: key, value digest, view, round";
    let sig = signers[0].sign(msg);
    let shares: Vec<(MemberIndex, Signature)> = signers[..QUORUM]
        .iter()
        .map(|s| (s.index(), s.sign(msg)))
        .collect();
    let sigs: Vec<Signature> = shares.iter().map(|&(_, s)| s).collect();
    let qc = match QuorumCertificate::aggregate(N, &shares) {
        Ok(qc) => qc,
        Err(e) => panic!("{e}"),
    };
    assert!(membership.verify_qc(&qc, msg).is_ok());

    let mut g = c.benchmark_group("beaufort");
    let entries = membership.members().to_vec();
    g.sample_size(10);
    g.bench_function("membership_new_100", |b| {
        b.iter(|| Membership::new(membership.network_id(), black_box(entries.clone())))
    });
    g.sample_size(100);
    g.bench_function("sign", |b| b.iter(|| signers[0].sign(black_box(msg))));
    g.bench_function("verify_vote", |b| {
        b.iter(|| assert!(membership.verify_vote(0, black_box(msg), &sig)))
    });
    g.bench_function("aggregate_signatures_67", |b| {
        b.iter(|| Membership::aggregate_signatures(black_box(&sigs)))
    });
    g.bench_function("qc_aggregate_67", |b| {
        b.iter(|| QuorumCertificate::aggregate(N, black_box(&shares)))
    });
    g.bench_function("verify_qc_67_of_100", |b| {
        b.iter(|| assert!(membership.verify_qc(black_box(&qc), msg).is_ok()))
    });
    for (name, messages, bad, expect_valid) in [
        ("verify_batch_100_1msg_0bad", 1, 0, true),
        ("verify_batch_100_4msg_0bad", 4, 0, true),
        ("verify_batch_100_4msg_3bad", 4, 3, false),
        ("verify_batch_100_100msg_0bad", 100, 0, true),
        ("verify_batch_100_100msg_3bad", 100, 3, false),
    ] {
        let items = batch(&signers, messages, bad);
        let report = verify_batch_report(&membership, &items, [9; 32]);
        assert_eq!(report.outcome == BatchOutcome::AllValid, expect_valid);
        println!("{name}: {report:?}");
        g.bench_function(name, |b| {
            b.iter(|| verify_batch_report(&membership, black_box(&items), [9; 32]))
        });
    }
    let user = match UserKeyPair::generate() {
        Ok(u) => u,
        Err(e) => panic!("{e}"),
    };
    let user_sig = match user.sign(msg) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    let user_pk = user.public_key();
    g.bench_function("p256_verify", |b| {
        b.iter(|| verify_user_signature(&user_pk, black_box(msg), &user_sig))
    });
    g.finish();
}

/// The same QC verification with raw blst calls: sum 67 effective keys, then one pre-aggregated
/// fast-aggregate verification.
fn raw_qc(c: &mut Criterion) {
    use blst::min_sig::{AggregatePublicKey, AggregateSignature, PublicKey, SecretKey};
    use blst::BLST_ERROR;
    let msg = b"beaufort vote message: key, value digest, view, round";
    // Effective secret keys are just secret keys as far as blst is concerned.
    let keys: Vec<SecretKey> = (0..N)
        .map(|i| match SecretKey::key_gen(&ikm(i), &[]) {
            Ok(k) => k,
            Err(e) => panic!("{e:?}"),
        })
        .collect();
    let pks: Vec<PublicKey> = keys.iter().map(|k| k.sk_to_pk()).collect();
    let sigs: Vec<_> = keys[..QUORUM]
        .iter()
        .map(|k| k.sign(msg, VOTE_DST, &[]))
        .collect();
    let sig_refs: Vec<_> = sigs.iter().collect();
    let agg = match AggregateSignature::aggregate(&sig_refs, false) {
        Ok(a) => a.to_signature(),
        Err(e) => panic!("{e:?}"),
    };
    let pk_refs: Vec<&PublicKey> = pks[..QUORUM].iter().collect();

    let mut g = c.benchmark_group("raw_blst");
    g.bench_function("verify_qc_67_of_100", |b| {
        b.iter(|| {
            let apk = match AggregatePublicKey::aggregate(black_box(&pk_refs), false) {
                Ok(a) => a.to_public_key(),
                Err(e) => panic!("{e:?}"),
            };
            assert_eq!(
                agg.fast_aggregate_verify_pre_aggregated(true, msg, VOTE_DST, &apk),
                BLST_ERROR::BLST_SUCCESS
            );
        })
    });
    // The same work on one thread with blst's pairing API (blst's high-level call above runs the
    // signature-side Miller loop on its thread pool, in parallel with the key side), starting from
    // the compressed aggregate as received.
    let compressed = agg.compress();
    g.bench_function("verify_qc_67_of_100_one_thread", |b| {
        b.iter(|| {
            let apk = match AggregatePublicKey::aggregate(black_box(&pk_refs), false) {
                Ok(a) => a.to_public_key(),
                Err(e) => panic!("{e:?}"),
            };
            let sig = match blst::min_sig::Signature::from_bytes(black_box(&compressed)) {
                Ok(s) => s,
                Err(e) => panic!("{e:?}"),
            };
            let pk_affine: blst::blst_p2_affine = apk.into();
            let sig_affine: blst::blst_p1_affine = sig.into();
            let mut pairing = blst::Pairing::new(true, VOTE_DST);
            assert_eq!(
                pairing.aggregate(&pk_affine, false, &sig_affine, true, msg, &[]),
                BLST_ERROR::BLST_SUCCESS
            );
            pairing.commit();
            assert!(pairing.finalverify(None));
        })
    });
    g.finish();
}

macro_rules! variant_bench {
    ($fn_name:ident, $group:expr, $variant:ident) => {
        fn $fn_name(c: &mut Criterion) {
            use blst::$variant::{AggregatePublicKey, AggregateSignature, PublicKey, SecretKey};
            use blst::BLST_ERROR;
            let msg = b"beaufort vote message: key, value digest, view, round";
            let dst = b"BENCH-DST";
            let keys: Vec<SecretKey> = (0..QUORUM)
                .map(|i| match SecretKey::key_gen(&ikm(i), &[]) {
                    Ok(k) => k,
                    Err(e) => panic!("{e:?}"),
                })
                .collect();
            let pks: Vec<PublicKey> = keys.iter().map(|k| k.sk_to_pk()).collect();
            let sigs: Vec<_> = keys.iter().map(|k| k.sign(msg, dst, &[])).collect();
            let sig_refs: Vec<_> = sigs.iter().collect();
            let pk_refs: Vec<&PublicKey> = pks.iter().collect();
            let compressed: Vec<_> = sigs.iter().map(|s| s.compress()).collect();
            let compressed_refs: Vec<&[u8]> = compressed.iter().map(|s| &s[..]).collect();

            let mut g = c.benchmark_group($group);
            g.bench_function("sign", |b| {
                b.iter(|| keys[0].sign(black_box(msg), dst, &[]))
            });
            g.bench_function("verify", |b| {
                b.iter(|| {
                    assert_eq!(
                        sigs[0].verify(true, black_box(msg), dst, &[], &pks[0], false),
                        BLST_ERROR::BLST_SUCCESS
                    )
                })
            });
            g.bench_function("aggregate_67_sigs", |b| {
                b.iter(|| AggregateSignature::aggregate(black_box(&sig_refs), false))
            });
            g.bench_function("aggregate_67_sigs_groupcheck", |b| {
                b.iter(|| AggregateSignature::aggregate(black_box(&sig_refs), true))
            });
            // What aggregating votes off the wire costs: decompression (a square root) dominates.
            g.bench_function("aggregate_67_compressed_sigs", |b| {
                b.iter(|| {
                    AggregateSignature::aggregate_serialized(black_box(&compressed_refs), false)
                })
            });
            g.bench_function("aggregate_67_pks", |b| {
                b.iter(|| AggregatePublicKey::aggregate(black_box(&pk_refs), false))
            });
            g.finish();
        }
    };
}

variant_bench!(min_sig, "min_sig", min_sig);
variant_bench!(min_pk, "min_pk", min_pk);

criterion_group!(benches, beaufort, aggregates, raw_qc, min_sig, min_pk);
criterion_main!(benches);

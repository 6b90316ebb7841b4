//! Merging a peer's 100-vote state into a register, and the one batch verification that follows
//! before a decision, with real BLS (n = 100).

use beaufort_core::auth::{BlsSigner, BlsVerifier, StandInCrypto, Verifier, VoteSigner};
use beaufort_core::hook::AcceptAll;
use beaufort_core::register::{Context, KeyUpdate, Register, WireBallot};
use beaufort_core::state::Ballot;
use beaufort_core::types::{Key, Value};
use beaufort_core::vote::{vote_message, VoteKind, VoteSubject};
use beaufort_crypto::bls::SecretKey;
use beaufort_crypto::hash::{hash, Domain};
use beaufort_crypto::membership::{MemberKey, Membership, Signer};
use criterion::{criterion_group, criterion_main, Criterion};
use std::collections::BTreeSet;

const N: usize = 100;

fn secret(i: usize) -> SecretKey {
    let mut ikm = [0u8; 32];
    ikm[..8].copy_from_slice(&(i as u64).to_le_bytes());
    SecretKey::generate(&ikm)
}

/// A round-0 state in which members 1..=100 (all but the receiver's own vote... all 100) voted x.
fn update(
    verifier: &dyn Verifier,
    signers: &[Box<dyn VoteSigner>],
    key: &Key,
    x: &Value,
) -> KeyUpdate {
    let subject = VoteSubject {
        view: 0,
        round: 0,
        kind: VoteKind::PreCommit,
        value: x.hash(),
    };
    let message = vote_message(&verifier.network_id(), key, &subject);
    let votes = signers
        .iter()
        .skip(1)
        .map(|s| WireBallot {
            kind: VoteKind::PreCommit,
            round: 0,
            member: s.member(),
            ballot: Ballot::Vote {
                value: x.hash(),
                signature: s.sign(&message),
            },
        })
        .collect();
    KeyUpdate {
        key: key.clone(),
        view: 0,
        accepted: None,
        values: vec![x.clone()],
        votes,
        pieces: Vec::new(),
        complete: true,
        short_refs: false,
    }
}

fn bench(c: &mut Criterion) {
    let network = hash(Domain::NetworkId, &[b"bench"]);
    let key = Key::new("ticket/1").expect("key");
    let x = Value::data("x").expect("value");
    let excluded = BTreeSet::new();

    let secrets: Vec<SecretKey> = (0..N).map(secret).collect();
    let membership = Membership::new(
        network,
        secrets.iter().map(MemberKey::from_secret).collect(),
    )
    .expect("membership");
    let bls = BlsVerifier::new(membership);
    let bls_signers: Vec<Box<dyn VoteSigner>> = secrets
        .into_iter()
        .enumerate()
        .map(|(i, sk)| Box::new(BlsSigner::new(Signer::new(i as u16, sk))) as Box<dyn VoteSigner>)
        .collect();
    let stand_in = StandInCrypto::new(network, N);
    let stand_in_signers: Vec<Box<dyn VoteSigner>> = (0..N as u16)
        .map(|i| Box::new(stand_in.signer(i)) as Box<dyn VoteSigner>)
        .collect();

    let bls_update = update(&bls, &bls_signers, &key, &x);
    let stand_in_update = update(&stand_in, &stand_in_signers, &key, &x);

    c.bench_function(
        "merge 99-vote state (no signature checks: fast path)",
        |b| {
            let ctx = Context {
                key: &key,
                signer: stand_in_signers[0].as_ref(),
                verifier: &stand_in,
                hook: &AcceptAll,
                excluded: &excluded,
                now: u64::MAX,
            };
            b.iter(|| {
                let mut register = Register::default();
                let outcome = register
                    .merge(&ctx, stand_in_update.clone(), false)
                    .expect("valid");
                assert!(outcome.changed);
                register
            })
        },
    );
    c.bench_function(
        "merge 99-vote state + advance with BLS batch verification",
        |b| {
            let ctx = Context {
                key: &key,
                signer: bls_signers[0].as_ref(),
                verifier: &bls,
                hook: &AcceptAll,
                excluded: &excluded,
                now: u64::MAX,
            };
            b.iter(|| {
                let mut register = Register::default();
                let _merged = register
                    .merge(&ctx, bls_update.clone(), false)
                    .expect("valid");
                let outcome = register.advance(&ctx);
                // Own PRE-COMMIT, then (after one batch verification) own COMMIT.
                assert_eq!(outcome.cast.len(), 2);
                register
            })
        },
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! The cost of contracts against plain registers (SCEW's overhead question), per member and per
//! proposed value: what a member spends before it can vote.
//!
//! `cargo bench -p beaufort-contracts -- --warm-up-time 1 --measurement-time 3`

use beaufort_contracts::asset::{check_record, next_record, transition_challenge, AssetRecord};
use beaufort_contracts::builtin::eshare;
use beaufort_contracts::{Contract, ScriptContract, ESHARE_SCRIPT};
use beaufort_crypto::hash::{hash, Domain};
use beaufort_crypto::user::UserKeyPair;
use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::json;
use std::hint::black_box;

fn lend(
    contract: &dyn Contract,
    owner: &UserKeyPair,
    borrower: &UserKeyPair,
) -> (AssetRecord, AssetRecord) {
    let network = hash(Domain::NetworkId, &[b"bench"]);
    let sign = |prev: Option<u64>, transition: &str, input: &serde_json::Value| {
        let challenge = transition_challenge(
            &network,
            "drill",
            prev,
            contract.name(),
            transition,
            &owner.public_key(),
            input,
        );
        hex::encode(owner.sign(&challenge).expect("sign"))
    };
    let input = json!({ "tool": "drill" });
    let created = next_record(
        contract,
        "drill",
        None,
        "register",
        input.clone(),
        owner.public_key(),
        sign(None, "register", &input),
    )
    .expect("register");
    let input = json!({ "borrower": hex::encode(borrower.public_key().as_bytes()) });
    let lent = next_record(
        contract,
        "drill",
        Some((&created, 1)),
        "lend",
        input.clone(),
        owner.public_key(),
        sign(Some(1), "lend", &input),
    )
    .expect("lend");
    (created, lent)
}

fn bench(c: &mut Criterion) {
    let network = hash(Domain::NetworkId, &[b"bench"]);
    let owner = UserKeyPair::generate().expect("key");
    let borrower = UserKeyPair::generate().expect("key");
    let native = eshare();
    let script = ScriptContract::compile("eshare_script", ESHARE_SCRIPT).expect("compiles");
    let mut group = c.benchmark_group("contracts");
    for (label, contract) in [("native", &native as &dyn Contract), ("script", &script)] {
        let (created, lent) = lend(contract, &owner, &borrower);
        let bytes = serde_json::to_vec(&lent).expect("json");
        group.bench_function(format!("{label}/guard+effect"), |b| {
            b.iter(|| {
                contract
                    .apply(
                        &created.state,
                        "lend",
                        &lent.input,
                        &beaufort_contracts::TransitionContext {
                            actor: hex::encode(owner.public_key().as_bytes()),
                            asset: "drill".into(),
                            view: Some(1),
                        },
                    )
                    .expect("allowed")
            })
        });
        group.bench_function(
            format!("{label}/whole check (parse, signature, guard, effect)"),
            |b| {
                b.iter(|| {
                    let record: AssetRecord =
                        serde_json::from_slice(black_box(&bytes)).expect("parse");
                    check_record(&network, contract, "drill", Some((&created, 1)), &record)
                        .expect("valid")
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

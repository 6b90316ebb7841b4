//! Contracts end to end: the compiled-in machines, the Rhai sandbox, signed asset records and
//! installation through endorsements.

use beaufort_contracts::asset::{
    check_record, next_record, transition_challenge, AssetError, AssetRecord,
};
use beaufort_contracts::builtin::{eloan, eshare, invoice_asset_id};
use beaufort_contracts::install::ContractPackage;
use beaufort_contracts::{
    Contract, ContractError, Registry, ScriptContract, State, TransitionContext, ESHARE_SCRIPT,
};
use beaufort_crypto::bls::SecretKey;
use beaufort_crypto::hash::{hash, Digest, Domain};
use beaufort_crypto::membership::{MemberKey, Membership, Signer};
use beaufort_crypto::user::UserKeyPair;
use serde_json::{json, Value as Json};

fn network() -> Digest {
    hash(Domain::NetworkId, &[b"contracts test"])
}

struct User(UserKeyPair);

impl User {
    fn new() -> User {
        User(UserKeyPair::generate().expect("key pair"))
    }
    fn pk(&self) -> String {
        hex::encode(self.0.public_key().as_bytes())
    }
    fn sign(
        &self,
        asset: &str,
        prev: Option<u64>,
        contract: &str,
        transition: &str,
        input: &Json,
    ) -> String {
        let challenge = transition_challenge(
            &network(),
            asset,
            prev,
            contract,
            transition,
            &self.0.public_key(),
            input,
        );
        hex::encode(self.0.sign(&challenge).expect("sign"))
    }
}

/// Walks an asset through `steps` (actor, transition, input), checking each record as a member
/// would; returns the records.
fn run(
    contract: &dyn Contract,
    asset: &str,
    steps: &[(&User, &str, Json)],
) -> Result<Vec<AssetRecord>, AssetError> {
    let mut records: Vec<AssetRecord> = Vec::new();
    for (i, (actor, transition, input)) in steps.iter().enumerate() {
        let view = records.last().map(|_| i as u64);
        let old = records.last().map(|r| (r, i as u64));
        let signature = actor.sign(asset, view, contract.name(), transition, input);
        let record = next_record(
            contract,
            asset,
            old,
            transition,
            input.clone(),
            actor.0.public_key(),
            signature,
        )?;
        check_record(&network(), contract, asset, old, &record)?;
        records.push(record);
    }
    Ok(records)
}

fn ctx(actor: &User) -> TransitionContext {
    TransitionContext {
        actor: actor.pk(),
        asset: "drill".into(),
        view: Some(1),
    }
}

#[test]
fn eshare_lends_returns_and_breaks_with_the_right_people() {
    let (owner, borrower, stranger) = (User::new(), User::new(), User::new());
    let c = eshare();
    let records = run(
        &c,
        "drill",
        &[
            (&owner, "register", json!({ "tool": "Hammer drill" })),
            (&owner, "lend", json!({ "borrower": borrower.pk() })),
            (&owner, "return", json!({})),
            (
                &borrower,
                "report_broken",
                json!({ "note": "chuck is loose" }),
            ),
        ],
    )
    .expect("the flow is allowed");
    let names: Vec<&str> = records.iter().map(|r| r.state.name.as_str()).collect();
    assert_eq!(names, ["Ready", "Offered", "Ready", "Broken"]);
    assert_eq!(records[1].state.value["borrower"], json!(borrower.pk()));
    assert_eq!(records[2].state.value["borrower"], Json::Null);
    assert_eq!(records[3].state.value["reported_by"], json!(borrower.pk()));

    let ready = &records[0].state;
    let lend = json!({ "borrower": borrower.pk() });
    assert!(matches!(
        c.apply(ready, "lend", &lend, &ctx(&stranger)),
        Err(ContractError::Refused(_))
    ));
    assert!(matches!(
        c.apply(
            ready,
            "report_broken",
            &json!({ "note": "x" }),
            &ctx(&stranger)
        ),
        Err(ContractError::Refused(_))
    ));
    assert!(matches!(
        c.apply(&records[1].state, "lend", &lend, &ctx(&owner)),
        Err(ContractError::WrongState { .. })
    ));
    assert!(matches!(
        c.apply(ready, "fly", &lend, &ctx(&owner)),
        Err(ContractError::UnknownTransition { .. })
    ));
    assert!(matches!(
        c.apply(
            &State::start(),
            "register",
            &json!({ "tool": "" }),
            &ctx(&owner)
        ),
        Err(ContractError::Refused(_))
    ));
}

#[test]
fn the_rhai_eshare_computes_what_the_rust_one_does() {
    let (owner, borrower, stranger) = (User::new(), User::new(), User::new());
    let script = ScriptContract::compile("eshare_script", ESHARE_SCRIPT).expect("compiles");
    let native = eshare();
    assert_eq!(script.transitions(), native.transitions());
    let steps = [
        (&owner, "register", json!({ "tool": "Ladder" })),
        (&owner, "lend", json!({ "borrower": borrower.pk() })),
        (&owner, "return", json!({})),
        (&owner, "lend", json!({ "borrower": borrower.pk() })),
        (&owner, "return", json!({})),
        (&owner, "report_broken", json!({ "note": "rung cracked" })),
    ];
    let a = run(&native, "drill", &steps).expect("native");
    let b = run(&script, "drill", &steps).expect("script");
    let states = |r: &[AssetRecord]| r.iter().map(|r| r.state.clone()).collect::<Vec<_>>();
    assert_eq!(states(&a), states(&b));
    for state in states(&a) {
        for (transition, input, who) in [
            ("lend", json!({ "borrower": borrower.pk() }), &stranger),
            ("report_broken", json!({ "note": "x" }), &stranger),
            ("return", json!({}), &stranger),
            ("lend", json!({ "borrower": owner.pk() }), &owner),
        ] {
            assert_eq!(
                native.apply(&state, transition, &input, &ctx(who)).is_ok(),
                script.apply(&state, transition, &input, &ctx(who)).is_ok(),
                "{transition} from {} by someone",
                state.name
            );
        }
    }
}

#[test]
fn signed_requests_are_single_use_and_states_cannot_be_forged() {
    let (owner, borrower, thief) = (User::new(), User::new(), User::new());
    let c = eshare();
    let records = run(
        &c,
        "drill",
        &[(&owner, "register", json!({ "tool": "Saw" }))],
    )
    .expect("register");
    let input = json!({ "borrower": borrower.pk() });
    let old = Some((&records[0], 1));
    let sig = owner.sign("drill", Some(1), "eshare", "lend", &input);
    let lent = next_record(
        &c,
        "drill",
        old,
        "lend",
        input.clone(),
        owner.0.public_key(),
        sig,
    )
    .expect("lend");
    check_record(&network(), &c, "drill", old, &lent).expect("valid");
    // The same signed request replayed at a later view, or on another asset, is refused.
    assert!(matches!(
        check_record(&network(), &c, "drill", Some((&records[0], 5)), &lent),
        Err(AssetError::BadSignature)
    ));
    assert!(matches!(
        check_record(&network(), &c, "saw", old, &lent),
        Err(AssetError::BadSignature)
    ));
    // A thief signing for the owner's key, or a state the contract did not compute.
    let mut stolen = lent.clone();
    stolen.signature = thief.sign("drill", Some(1), "eshare", "lend", &input);
    assert!(matches!(
        check_record(&network(), &c, "drill", old, &stolen),
        Err(AssetError::BadSignature)
    ));
    let mut forged = lent.clone();
    forged.state.value["owner"] = json!(thief.pk());
    assert!(matches!(
        check_record(&network(), &c, "drill", old, &forged),
        Err(AssetError::Inconsistent(_))
    ));
    // The thief signing as itself is refused by the guard.
    let sig = thief.sign("drill", Some(1), "eshare", "lend", &input);
    assert!(matches!(
        next_record(&c, "drill", old, "lend", input, thief.0.public_key(), sig),
        Err(AssetError::Contract(ContractError::Refused(_)))
    ));
}

#[test]
fn an_invoice_is_registered_once_and_pledged_once() {
    let (supplier, bank, other_bank) = (User::new(), User::new(), User::new());
    let c = eloan();
    let invoice =
        json!({ "supplier_id": "BE0123", "number": "2026-17", "debtor": "ACME", "amount": 1200 });
    let id = invoice_asset_id("BE0123", "2026-17");
    assert!(matches!(
        run(
            &c,
            "some-other-id",
            &[(&supplier, "register", invoice.clone())]
        ),
        Err(AssetError::Contract(ContractError::Refused(_)))
    ));
    let records = run(
        &c,
        &id,
        &[
            (&supplier, "register", invoice.clone()),
            (&supplier, "pledge", json!({ "lender": bank.pk() })),
            (&bank, "release", json!({})),
        ],
    )
    .expect("register, pledge, release");
    assert_eq!(records[2].state.name, "Released");
    let released = &records[2].state;
    let again = json!({ "lender": other_bank.pk() });
    let ctx = TransitionContext {
        actor: supplier.pk(),
        asset: id.clone(),
        view: Some(3),
    };
    assert!(matches!(
        c.apply(released, "pledge", &again, &ctx),
        Err(ContractError::WrongState { .. })
    ));
    let pledged = &records[1].state;
    assert!(matches!(
        c.apply(pledged, "pledge", &again, &ctx),
        Err(ContractError::WrongState { .. })
    ));
    let ctx = TransitionContext {
        actor: supplier.pk(),
        asset: id,
        view: Some(2),
    };
    assert!(matches!(
        c.apply(pledged, "release", &json!({}), &ctx),
        Err(ContractError::Refused(_))
    ));
}

fn script(source: &str) -> Result<ScriptContract, ContractError> {
    ScriptContract::compile("test", source)
}

const MACHINE: &str = r#"fn transitions() { [#{ name: "make", from: ["Start"], to: "Made" }] }"#;

#[test]
fn the_sandbox_stops_runaway_and_hostile_scripts() {
    let owner = User::new();
    let start = State::start();
    let go = |body: &str| {
        let c = script(&format!(
            "{MACHINE}\nfn guard_make(s, i, c) {{ true }}\nfn effect_make(s, i, c) {{ {body} }}"
        ))
        .expect("compiles");
        c.apply(&start, "make", &json!({}), &ctx(&owner))
    };
    assert!(go("#{ made: true }").is_ok());
    let looped = go("loop { }");
    assert!(
        matches!(&looped, Err(ContractError::Failed(e)) if e.contains("operations")),
        "{looped:?}"
    );
    assert!(matches!(
        go(r#"let s = "x"; loop { s += s; }"#),
        Err(ContractError::Failed(_))
    ));
    assert!(matches!(
        go("let a = []; loop { a.push(a.len()); }"),
        Err(ContractError::Failed(_))
    ));
    let deep = script(&format!("{MACHINE}\nfn f(n) {{ f(n + 1) }}\nfn guard_make(s, i, c) {{ true }}\nfn effect_make(s, i, c) {{ f(0) }}"))
        .expect("compiles");
    let recursed = deep.apply(&start, "make", &json!({}), &ctx(&owner));
    assert!(
        matches!(&recursed, Err(ContractError::Failed(e)) if e.contains("Stack overflow")),
        "{recursed:?}"
    );
    assert!(matches!(
        go("let x = 1 / 0; x"),
        Err(ContractError::Failed(_))
    ));
    assert!(script(&format!("{MACHINE}\nfn guard_make(s, i, c) {{ eval(\"true\") }}\nfn effect_make(s, i, c) {{ 1 }}")).is_err(), "eval is disabled");
    assert!(script("fn transitions() { [] }").is_err(), "no transitions");
    assert!(script(MACHINE).is_err(), "guard and effect missing");
    assert!(script("this is not rhai").is_err());
    assert!(script(&"x".repeat(40_000)).is_err(), "too long");
}

#[test]
fn a_guard_may_refuse_with_a_reason() {
    let c = script(&format!(
        "{MACHINE}\nfn guard_make(s, i, c) {{ if i.n > 3 {{ return \"too many\"; }} true }}\nfn effect_make(s, i, c) {{ #{{ n: i.n }} }}"
    ))
    .expect("compiles");
    let owner = User::new();
    assert_eq!(
        c.apply(&State::start(), "make", &json!({ "n": 9 }), &ctx(&owner)),
        Err(ContractError::Refused("too many".into()))
    );
    let made = c
        .apply(&State::start(), "make", &json!({ "n": 2 }), &ctx(&owner))
        .expect("allowed");
    assert_eq!(
        made,
        State {
            name: "Made".into(),
            value: json!({ "n": 2 })
        }
    );
}

fn committee(n: usize) -> (Membership, Vec<Signer>) {
    let secrets: Vec<SecretKey> = (0..n)
        .map(|i| SecretKey::generate(hash(Domain::Other, &[b"member", &[i as u8]]).as_bytes()))
        .collect();
    let keys = secrets.iter().map(MemberKey::from_secret).collect();
    let membership = Membership::new(network(), keys).expect("membership");
    let signers = secrets
        .into_iter()
        .enumerate()
        .map(|(i, s)| Signer::new(i as u16, s))
        .collect();
    (membership, signers)
}

#[test]
fn a_contract_installs_once_a_quorum_endorsed_its_unchanged_source() {
    let (m, signers) = committee(4);
    let first = ContractPackage::propose(&network(), "shared_eshare", ESHARE_SCRIPT, &signers[2])
        .expect("proposal");
    first
        .check_write(&m, "shared_eshare", None)
        .expect("a proposal with its proposer's endorsement");
    assert!(!first.is_installed(&m));
    assert!(
        first.check_write(&m, "other_name", None).is_err(),
        "the key names the contract"
    );

    let mut second = first.clone();
    second.endorse(&network(), &signers[0]);
    second
        .check_write(&m, "shared_eshare", Some(&first))
        .expect("one more endorsement");
    assert_eq!(
        second
            .endorsements
            .iter()
            .map(|e| e.member)
            .collect::<Vec<_>>(),
        [0, 2]
    );
    let mut third = second.clone();
    third.endorse(&network(), &signers[3]);
    third
        .check_write(&m, "shared_eshare", Some(&second))
        .expect("a third");
    assert!(third.is_installed(&m), "3 of 4 is a quorum");

    let mut changed = third.clone();
    changed.source.push_str("\n// sneaky");
    changed.endorse(&network(), &signers[1]);
    assert!(
        changed
            .check_write(&m, "shared_eshare", Some(&third))
            .is_err(),
        "source is fixed"
    );
    assert!(
        second
            .check_write(&m, "shared_eshare", Some(&second))
            .is_err(),
        "must add one"
    );
    let mut forged = second.clone();
    forged
        .endorsements
        .push(beaufort_contracts::install::Endorsement {
            member: 3,
            signature: signers[0].sign_statement(b"something else"),
        });
    assert!(
        forged
            .check_write(&m, "shared_eshare", Some(&second))
            .is_err(),
        "forged endorsement"
    );
    let mut vote_as_endorsement = first.clone();
    vote_as_endorsement.endorsements[0].signature =
        signers[2].sign(&beaufort_contracts::install::endorsement_message(
            &network(),
            "shared_eshare",
            ESHARE_SCRIPT,
        ));
    assert!(
        vote_as_endorsement
            .check_write(&m, "shared_eshare", None)
            .is_err(),
        "a vote is no endorsement"
    );
    assert!(
        ContractPackage::propose(&network(), "eshare", ESHARE_SCRIPT, &signers[0]).is_err(),
        "builtin name"
    );
    assert!(
        ContractPackage::propose(&network(), "broken", "fn transitions() {", &signers[0]).is_err()
    );

    let registry = Registry::new();
    assert!(registry.get("shared_eshare").is_none());
    registry.install(&third).expect("install");
    assert_eq!(
        registry
            .get("shared_eshare")
            .expect("installed")
            .transitions(),
        eshare().transitions()
    );
    assert!(registry.get("eloan").is_some());
}

//! A receipt made by four real BLS members verifies; every kind of tampering a holder could try
//! (the value, its text copy, the signature, the signer set, the network) is refused with its
//! reason, and so is a receipt checked against another network's keys.

use beaufort_core::types::{Key, Value};
use beaufort_core::vote::{vote_message, VoteKind, VoteSubject};
use beaufort_crypto::hash::{hash, Domain};
use beaufort_crypto::{MemberIndex, MemberKey, QuorumCertificate, SecretKey, Signer};
use beaufort_receipt::{NetworkKeys, ReceiptError};
use serde_json::{json, Value as Json};

/// The members' key seeds (a `SecretKey` is deliberately not `Clone`).
fn secrets(seed: &str, n: usize) -> Vec<[u8; 32]> {
    (0..n)
        .map(|i| *hash(Domain::Other, &[seed.as_bytes(), &(i as u64).to_le_bytes()]).as_bytes())
        .collect()
}

fn network(name: &str, secrets: &[[u8; 32]]) -> Json {
    let members: Vec<Json> = secrets
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let key = serde_json::to_value(MemberKey::from_secret(&SecretKey::generate(s)))
                .expect("a member key");
            let mut entry = key.as_object().cloned().expect("an object");
            entry.insert("peer_id".into(), json!(format!("peer-{i}")));
            entry.insert("addresses".into(), json!([]));
            entry.insert("name".into(), json!(format!("Merchant {i}")));
            Json::Object(entry)
        })
        .collect();
    json!({ "name": name, "write_once_prefixes": ["voucher/"], "members": members })
}

/// A receipt of `value` at `key` signed by members `signers` of `network`.
fn receipt(network: &NetworkKeys, secrets: &[[u8; 32]], signers: &[usize], value: &str) -> Json {
    let key = Key::new(b"loyalty/ticket/1".to_vec()).expect("a key");
    let value = Value::data(value.as_bytes().to_vec()).expect("a value");
    let subject = VoteSubject {
        view: 3,
        round: 1,
        kind: VoteKind::Commit,
        value: value.hash(),
    };
    let message = vote_message(&network.id(), &key, &subject);
    let shares: Vec<_> = signers
        .iter()
        .map(|&i| {
            let signer = Signer::new(i as MemberIndex, SecretKey::generate(&secrets[i]));
            (signer.index(), signer.sign(message.as_bytes()))
        })
        .collect();
    let qc = QuorumCertificate::aggregate(secrets.len(), &shares).expect("a certificate");
    json!({
        "network_id": network.id().to_hex(),
        "key": "loyalty/ticket/1",
        "value": std::str::from_utf8(value.as_data().expect("data")).expect("text"),
        "value_hex": hex::encode(value.as_data().expect("data")),
        "deleted": false,
        "view": 3,
        "round": 1,
        "certificate": qc,
    })
}

struct World {
    keys: NetworkKeys,
    secrets: Vec<[u8; 32]>,
    genuine: Json,
}

fn world() -> World {
    let secrets = secrets("receipt test", 4);
    let keys = NetworkKeys::from_json(&network("shops", &secrets).to_string()).expect("network");
    let genuine = receipt(&keys, &secrets, &[0, 1, 3], r#"{"points":50}"#);
    World {
        keys,
        secrets,
        genuine,
    }
}

fn check(world: &World, receipt: &Json) -> Result<String, ReceiptError> {
    let checker = world.keys.checker()?;
    checker.verify_json(&receipt.to_string()).map(|v| {
        format!(
            "{} = {} by {} of {}",
            v.key_text(),
            v.shown(),
            v.signers,
            v.members
        )
    })
}

#[test]
fn a_genuine_receipt_verifies_and_shows_its_certified_value() {
    let world = world();
    let shown = check(&world, &world.genuine).expect("the genuine receipt verifies");
    assert_eq!(shown, r#"loyalty/ticket/1 = "{\"points\":50}" by 3 of 4"#);
    // What `beaufort get` prints (no network id) is checked the same way.
    let mut without_id = world.genuine.clone();
    without_id
        .as_object_mut()
        .expect("object")
        .remove("network_id");
    assert!(check(&world, &without_id).is_ok());
}

#[test]
fn every_kind_of_tampering_is_refused() {
    let world = world();
    let edit = |f: &dyn Fn(&mut Json)| {
        let mut r = world.genuine.clone();
        f(&mut r);
        check(&world, &r).expect_err("a tampered receipt must be refused")
    };

    // The text copy alone: caught before any signature is checked.
    let e = edit(&|r| r["value"] = json!(r#"{"points":5000}"#));
    assert!(matches!(e, ReceiptError::Inconsistent(_)), "{e}");
    // The value with its hex, consistently: the certificate covers the bytes.
    let e = edit(&|r| {
        r["value"] = json!(r#"{"points":5000}"#);
        r["value_hex"] = json!(hex::encode(r#"{"points":5000}"#));
    });
    assert!(matches!(e, ReceiptError::Certificate(_)), "{e}");
    // The view or round it claims.
    let e = edit(&|r| r["view"] = json!(4));
    assert!(matches!(e, ReceiptError::Certificate(_)), "{e}");
    // Another signer set of the same size, and a smaller one.
    let set = |bits: u8| json!({"Bitmap": {"n": 4, "bits": [bits], "repeats": []}});
    let e = edit(&|r| r["certificate"]["signers"] = set(0b0111));
    assert!(matches!(e, ReceiptError::Certificate(_)), "{e}");
    let e = edit(&|r| r["certificate"]["signers"] = set(0b0011));
    assert!(matches!(e, ReceiptError::Certificate(_)), "{e}");
    // A signature from other votes (a valid point, the wrong one).
    let other = receipt(&world.keys, &world.secrets, &[0, 1, 3], "another value");
    let e = edit(&|r| r["certificate"]["signature"] = other["certificate"]["signature"].clone());
    assert!(matches!(e, ReceiptError::Certificate(_)), "{e}");
    // A signature that is not a point at all.
    let e = edit(&|r| r["certificate"]["signature"] = json!("00".repeat(48)));
    assert!(
        matches!(e, ReceiptError::Parse { .. } | ReceiptError::Certificate(_)),
        "{e}"
    );
    // A deleted flag on a value.
    let e = edit(&|r| r["deleted"] = json!(true));
    assert!(matches!(e, ReceiptError::Inconsistent(_)), "{e}");
    // Another network's id.
    let e = edit(&|r| r["network_id"] = json!("ab".repeat(32)));
    assert!(matches!(e, ReceiptError::WrongNetwork { .. }), "{e}");
    assert!(e.to_string().contains("(shops)"), "{e}");
}

#[test]
fn a_receipt_does_not_verify_against_another_network() {
    let world = world();
    // Same members, another name: another network id, so the votes were signed for another one.
    let renamed =
        NetworkKeys::from_json(&network("other", &world.secrets).to_string()).expect("network");
    let mut r = world.genuine.clone();
    r.as_object_mut().expect("object").remove("network_id");
    let e = renamed
        .checker()
        .expect("keys")
        .verify_json(&r.to_string())
        .expect_err("signed for another network");
    assert!(matches!(e, ReceiptError::Certificate(_)), "{e}");
}

#[test]
fn malformed_inputs_are_refused_in_words() {
    let world = world();
    let checker = world.keys.checker().expect("keys");
    let e = checker.verify_json("not json").expect_err("not json");
    assert!(e.to_string().starts_with("this is not a receipt"), "{e}");
    let e = checker
        .verify_json(&"x".repeat(beaufort_receipt::MAX_DOCUMENT_BYTES + 1))
        .expect_err("too large");
    assert!(matches!(e, ReceiptError::TooLarge { .. }), "{e}");
    // A member whose proof of possession belongs to another key.
    let mut bad = network("shops", &world.secrets);
    bad["members"][1]["pop"] = bad["members"][2]["pop"].clone();
    let e = NetworkKeys::from_json(&bad.to_string())
        .expect("parses")
        .checker()
        .err()
        .expect("a bad proof of possession");
    assert!(matches!(e, ReceiptError::Members(_)), "{e}");
}

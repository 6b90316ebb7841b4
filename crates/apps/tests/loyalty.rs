//! Loyalty tickets through the hook every member runs.

use beaufort_apps::loyalty::{
    issue, redeem, redeem_challenge, transfer, transfer_challenge, Redemption, TicketAction,
    TicketError, TicketRecord, REMEMBERED_REQUESTS,
};
use beaufort_apps::AppHook;
use beaufort_contracts::Registry;
use beaufort_core::hook::{HookError, ValidationHook};
use beaufort_core::state::Certified;
use beaufort_core::types::{Key, Value};
use beaufort_crypto::bls::SecretKey;
use beaufort_crypto::hash::{hash, Digest, Domain};
use beaufort_crypto::membership::{MemberKey, Membership, Signer};
use beaufort_crypto::qc::QuorumCertificate;
use beaufort_crypto::user::UserKeyPair;
use beaufort_crypto::weights::SignerWeights;
use std::sync::Arc;

const ID: &str = "00112233445566778899aabbccddeeff";

/// A redemption without a request id.
fn redemption(view: u64, merchant: u16, amount: u64, signature: String) -> Redemption {
    Redemption {
        view,
        merchant,
        amount,
        signature,
        request_id: None,
    }
}

struct World {
    membership: Arc<Membership>,
    signers: Vec<Signer>,
    hook: AppHook,
}

fn world() -> World {
    let secrets: Vec<SecretKey> = (0..4u8)
        .map(|i| SecretKey::generate(hash(Domain::Other, &[b"merchant", &[i]]).as_bytes()))
        .collect();
    let keys = secrets.iter().map(MemberKey::from_secret).collect();
    let membership = Arc::new(
        Membership::new(hash(Domain::NetworkId, &[b"loyalty"]), keys).expect("membership"),
    );
    let signers = secrets
        .into_iter()
        .enumerate()
        .map(|(i, s)| Signer::new(i as u16, s))
        .collect();
    let hook = AppHook::new(
        membership.clone(),
        Arc::new(Registry::new()),
        &["voucher/".to_owned()],
    );
    World {
        membership,
        signers,
        hook,
    }
}

impl World {
    fn network(&self) -> Digest {
        self.membership.network_id()
    }
    /// The hook's verdict on moving the ticket from `old` (certified in `view`) to `new`.
    fn check(
        &self,
        old: Option<(&TicketRecord, u64)>,
        new: &TicketRecord,
    ) -> Result<(), HookError> {
        let old = old.map(|(r, view)| certified(r, view));
        self.hook.validate(&key(), old.as_ref(), &value(new))
    }
}

fn key() -> Key {
    Key::new(format!("loyalty/ticket/{ID}").into_bytes()).expect("key")
}

fn value(record: &TicketRecord) -> Value {
    Value::data(serde_json::to_vec(record).expect("json")).expect("fits")
}

/// A certified value as the hook sees it (the hook never looks at the certificate itself).
fn certified(record: &TicketRecord, view: u64) -> Certified {
    Certified {
        view,
        round: 0,
        value: value(record),
        qc: QuorumCertificate {
            signers: SignerWeights::new(4).expect("set"),
            signature: beaufort_crypto::bls::Signature::from_bytes(&[0; 48]).expect("48 bytes"),
        },
    }
}

fn sign(user: &UserKeyPair, challenge: &[u8]) -> String {
    hex::encode(user.sign(challenge).expect("sign"))
}

#[test]
fn a_ticket_is_issued_redeemed_in_parts_and_transferred_by_its_owner_only() {
    let w = world();
    let (alice, bob) = (
        UserKeyPair::generate().expect("key"),
        UserKeyPair::generate().expect("key"),
    );
    let ticket = issue(&w.network(), &w.signers[0], ID, alice.public_key(), 100).expect("issue");
    w.check(None, &ticket).expect("issued by merchant 0");

    // Alice redeems 30 at merchant 2 (ticket certified in view 1).
    let sig = sign(&alice, &redeem_challenge(&w.network(), ID, 1, 2, 30, None));
    let part = redeem(&w.network(), &ticket, redemption(1, 2, 30, sig)).expect("redeem");
    assert_eq!(part.points, 70);
    w.check(Some((&ticket, 1)), &part)
        .expect("valid partial redemption");

    // Alice gives the rest to Bob (view 2); Bob redeems all of it at merchant 1 (view 3).
    let sig = sign(
        &alice,
        &transfer_challenge(&w.network(), ID, 2, &bob.public_key()),
    );
    let given = transfer(&w.network(), &part, 2, bob.public_key(), sig).expect("transfer");
    w.check(Some((&part, 2)), &given).expect("valid transfer");
    let sig = sign(&bob, &redeem_challenge(&w.network(), ID, 3, 1, 70, None));
    let spent = redeem(&w.network(), &given, redemption(3, 1, 70, sig)).expect("redeem rest");
    w.check(Some((&given, 3)), &spent).expect("valid");
    assert!(!spent.is_live());

    // Nothing more can happen to a spent ticket.
    let sig = sign(&bob, &redeem_challenge(&w.network(), ID, 4, 1, 1, None));
    assert_eq!(
        redeem(&w.network(), &spent, redemption(4, 1, 1, sig)),
        Err(TicketError::AlreadyRedeemed)
    );
    // Alice can no longer spend what she gave away.
    let sig = sign(&alice, &redeem_challenge(&w.network(), ID, 3, 1, 70, None));
    assert!(matches!(
        redeem(&w.network(), &given, redemption(3, 1, 70, sig)),
        Err(TicketError::BadSignature(_))
    ));
}

#[test]
fn of_two_redemptions_signed_for_one_view_only_the_first_committed_can_follow() {
    let w = world();
    let alice = UserKeyPair::generate().expect("key");
    let ticket = issue(&w.network(), &w.signers[0], ID, alice.public_key(), 50).expect("issue");
    let at_1 = redeem(
        &w.network(),
        &ticket,
        redemption(
            1,
            1,
            50,
            sign(&alice, &redeem_challenge(&w.network(), ID, 1, 1, 50, None)),
        ),
    )
    .expect("at 1");
    let at_2 = redeem(
        &w.network(),
        &ticket,
        redemption(
            1,
            2,
            50,
            sign(&alice, &redeem_challenge(&w.network(), ID, 1, 2, 50, None)),
        ),
    )
    .expect("at 2");
    // Both are valid successors of view 1, so both may be proposed concurrently...
    w.check(Some((&ticket, 1)), &at_1).expect("valid");
    w.check(Some((&ticket, 1)), &at_2).expect("valid");
    // ...but once one is certified (view 2), the other is refused by every member.
    let Err(HookError::Rejected(why)) = w.check(Some((&at_1, 2)), &at_2) else {
        panic!("the loser must be refused");
    };
    assert!(why.contains("already fully redeemed"), "{why}");
    // Even a partial second redemption signed for the old view is refused.
    let ticket = issue(&w.network(), &w.signers[0], ID, alice.public_key(), 50).expect("issue");
    let a = redeem(
        &w.network(),
        &ticket,
        redemption(
            1,
            1,
            10,
            sign(&alice, &redeem_challenge(&w.network(), ID, 1, 1, 10, None)),
        ),
    )
    .expect("a");
    let b = redeem(
        &w.network(),
        &ticket,
        redemption(
            1,
            2,
            10,
            sign(&alice, &redeem_challenge(&w.network(), ID, 1, 2, 10, None)),
        ),
    )
    .expect("b");
    let mut b_after_a = b.clone();
    b_after_a.points = 30;
    assert!(w.check(Some((&a, 2)), &b).is_err());
    assert!(
        w.check(Some((&a, 2)), &b_after_a).is_err(),
        "the signature names view 1"
    );
}

#[test]
fn merchants_cannot_forge_reissue_or_redeem_for_a_customer() {
    let w = world();
    let (alice, mallory) = (
        UserKeyPair::generate().expect("key"),
        UserKeyPair::generate().expect("key"),
    );
    let ticket = issue(&w.network(), &w.signers[0], ID, alice.public_key(), 100).expect("issue");
    // Merchant 3 claims merchant 0 issued a ticket: the statement is 3's, not 0's.
    let mut forged =
        issue(&w.network(), &w.signers[3], ID, alice.public_key(), 100).expect("issue");
    forged.issuer = 0;
    assert!(w.check(None, &forged).is_err());
    // Inflating the points of an issued ticket.
    let mut inflated = ticket.clone();
    inflated.issued_points = 1000;
    inflated.points = 1000;
    assert!(w.check(None, &inflated).is_err());
    // Re-issuing over an existing ticket.
    let reissued =
        issue(&w.network(), &w.signers[1], ID, mallory.public_key(), 100).expect("issue");
    assert!(w.check(Some((&ticket, 1)), &reissued).is_err());
    // A merchant redeeming with a signature that is not the owner's.
    let stolen = TicketRecord {
        points: 0,
        last: TicketAction::Redeem {
            merchant: 3,
            amount: 100,
            signature: sign(
                &mallory,
                &redeem_challenge(&w.network(), ID, 1, 3, 100, None),
            ),
            request_id: None,
        },
        ..ticket.clone()
    };
    assert!(w.check(Some((&ticket, 1)), &stolen).is_err());
    // A valid owner signature but a record that does not match it (more points taken).
    let honest = redeem(
        &w.network(),
        &ticket,
        redemption(
            1,
            3,
            10,
            sign(&alice, &redeem_challenge(&w.network(), ID, 1, 3, 10, None)),
        ),
    )
    .expect("redeem");
    let greedy = TicketRecord {
        points: 0,
        ..honest.clone()
    };
    assert!(w.check(Some((&ticket, 1)), &greedy).is_err());
    // Deleting a ticket.
    let old = certified(&ticket, 1);
    assert!(w
        .hook
        .validate(&key(), Some(&old), &Value::Tombstone)
        .is_err());
    // Other loyalty keys are reserved; write-once prefixes still hold.
    let other = Key::new(b"loyalty/balance/alice".to_vec()).expect("key");
    assert!(w.hook.validate(&other, None, &value(&ticket)).is_err());
    let voucher = Key::new(b"voucher/1".to_vec()).expect("key");
    let plain = Value::data(b"x".to_vec()).expect("fits");
    assert!(w.hook.validate(&voucher, None, &plain).is_ok());
    let mut cert = certified(&ticket, 1);
    cert.value = plain.clone();
    assert!(w.hook.validate(&voucher, Some(&cert), &plain).is_err());
}

#[test]
fn a_request_id_is_signed_remembered_and_never_charged_twice() {
    let w = world();
    let alice = UserKeyPair::generate().expect("key");
    let ticket = issue(&w.network(), &w.signers[0], ID, alice.public_key(), 100).expect("issue");
    let signed = |view: u64, amount: u64, request_id: &str| Redemption {
        view,
        merchant: 1,
        amount,
        signature: sign(
            &alice,
            &redeem_challenge(&w.network(), ID, view, 1, amount, Some(request_id)),
        ),
        request_id: Some(request_id.to_owned()),
    };
    let first = redeem(&w.network(), &ticket, signed(1, 10, "r-1")).expect("redeem");
    w.check(Some((&ticket, 1)), &first).expect("valid");
    let remembered = first.request("r-1").expect("remembered");
    assert_eq!(
        (remembered.view, remembered.merchant, remembered.amount),
        (1, 1, 10)
    );
    // The owner signing the same request id again for the new view is refused everywhere.
    let again = signed(2, 10, "r-1");
    assert!(matches!(
        redeem(&w.network(), &first, again),
        Err(TicketError::Invalid(_))
    ));
    // The id is part of what was signed: another id under the same signature fails.
    let mut swapped = signed(2, 10, "r-2");
    swapped.request_id = Some("r-3".into());
    assert!(matches!(
        redeem(&w.network(), &first, swapped),
        Err(TicketError::BadSignature(_))
    ));
    // A record that drops the remembered ids is not what the step produces.
    let second = redeem(&w.network(), &first, signed(2, 10, "r-2")).expect("second");
    let forgetful = TicketRecord {
        requests: Vec::new(),
        ..second.clone()
    };
    assert!(w.check(Some((&first, 2)), &forgetful).is_err());
    w.check(Some((&first, 2)), &second).expect("valid");
    // Malformed ids are refused before anything is checked.
    assert!(matches!(
        redeem(&w.network(), &second, signed(3, 1, "has space")),
        Err(TicketError::Malformed(_))
    ));
    // Only the most recent ids are kept, so a record stays small.
    let mut record = second;
    for view in 3..(3 + REMEMBERED_REQUESTS as u64) {
        record =
            redeem(&w.network(), &record, signed(view, 1, &format!("n-{view}"))).expect("redeem");
    }
    assert_eq!(record.requests.len(), REMEMBERED_REQUESTS);
    assert!(record.request("r-1").is_none() && record.request("n-3").is_some());
}

#[test]
fn the_owner_index_follows_issues_and_transfers_and_never_goes_back() {
    let w = world();
    let (alice, bob) = (
        UserKeyPair::generate().expect("key"),
        UserKeyPair::generate().expect("key"),
    );
    let ticket = issue(&w.network(), &w.signers[0], ID, alice.public_key(), 10).expect("issue");
    w.hook.learn(&key(), &certified(&ticket, 1)).expect("learn");
    assert_eq!(w.hook.tickets_of(&alice.public_key()), vec![ID.to_owned()]);
    let sig = sign(
        &alice,
        &transfer_challenge(&w.network(), ID, 1, &bob.public_key()),
    );
    let given = transfer(&w.network(), &ticket, 1, bob.public_key(), sig).expect("transfer");
    w.hook.learn(&key(), &certified(&given, 2)).expect("learn");
    assert!(w.hook.tickets_of(&alice.public_key()).is_empty());
    assert_eq!(w.hook.tickets_of(&bob.public_key()), vec![ID.to_owned()]);
    // A value older than the one indexed (learnt late, e.g. restored) changes nothing.
    w.hook.learn(&key(), &certified(&ticket, 1)).expect("learn");
    assert!(w.hook.tickets_of(&alice.public_key()).is_empty());
    assert_eq!(w.hook.tickets_of(&bob.public_key()), vec![ID.to_owned()]);
}

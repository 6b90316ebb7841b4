//! Idempotent redemptions on an in-process consortium: a redemption names a request id inside
//! what the customer signs; the same signed request sent again, to the same member or another,
//! concurrently or after the first committed, is answered with the first outcome and charged
//! once.

mod common;

use axum::http::{Method, StatusCode};
use beaufort_crypto::user::UserKeyPair;
use common::{Answer, Cluster};
use serde_json::{json, Value as Json};

/// A signed redemption of `amount` points at member `at`, named `request_id`.
async fn signed(
    cluster: &Cluster,
    customer: &UserKeyPair,
    ticket: &str,
    at: usize,
    amount: u64,
    request_id: &str,
) -> Json {
    let challenge = cluster
        .call(
            at,
            Method::GET,
            &format!("/v1/loyalty/tickets/{ticket}/challenge?action=redeem&amount={amount}&request_id={request_id}"),
            None,
            false,
        )
        .await;
    assert_eq!(challenge.status, StatusCode::OK, "{:?}", challenge.json());
    let challenge = challenge.json();
    assert_eq!(challenge["request_id"], request_id);
    let bytes = hex::decode(challenge["challenge_hex"].as_str().expect("hex")).expect("hex");
    assert!(
        String::from_utf8_lossy(&bytes).contains(&format!("request {request_id}\n")),
        "the request id is part of what is signed"
    );
    json!({
        "view": challenge["view"],
        "amount": amount,
        "merchant": challenge["merchant"],
        "request_id": request_id,
        "signature": hex::encode(customer.sign(&bytes).expect("sign")),
    })
}

async fn redeem(cluster: &Cluster, at: usize, ticket: &str, body: &Json) -> Answer {
    cluster
        .call(
            at,
            Method::POST,
            &format!("/v1/loyalty/tickets/{ticket}/redeem"),
            Some(body),
            false,
        )
        .await
}

/// The ticket's points at member `at`; `None` while that member does not know the ticket.
async fn points(cluster: &Cluster, at: usize, ticket: &str) -> Option<u64> {
    let answer = cluster
        .call(
            at,
            Method::GET,
            &format!("/v1/loyalty/tickets/{ticket}"),
            None,
            false,
        )
        .await;
    answer.json()["points"].as_u64()
}

/// Waits until member `at` has learnt the ticket's points are `expected` (a member that did not
/// take part in a commit hears of it through gossip).
async fn eventually_points(cluster: &Cluster, at: usize, ticket: &str, expected: u64) {
    let deadline = std::time::Instant::now() + common::DEADLINE;
    while points(cluster, at, ticket).await != Some(expected) {
        assert!(
            std::time::Instant::now() < deadline,
            "member {at} never saw {expected} points"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

fn replayed(answer: &Answer) -> bool {
    answer
        .headers
        .get("beaufort-replayed")
        .is_some_and(|v| v == "true")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_redemption_at_any_member_returns_the_first_outcome_and_charges_once() {
    let cluster = Cluster::start(2).await;
    let customer = UserKeyPair::generate().expect("key");
    let owner = hex::encode(customer.public_key().as_bytes());
    let issued = cluster
        .call(
            0,
            Method::POST,
            "/v1/loyalty/tickets",
            Some(&json!({ "owner": owner, "points": 100 })),
            true,
        )
        .await;
    assert_eq!(issued.status, StatusCode::OK, "{:?}", issued.json());
    let ticket = issued.json()["id"].as_str().expect("id").to_owned();
    eventually_points(&cluster, 1, &ticket, 100).await;

    // The customer's request leaves for member 0 and, not knowing whether it arrived, the
    // customer sends it to member 1 as well, at the same time.
    let first = signed(&cluster, &customer, &ticket, 0, 30, "order-1").await;
    let (at_0, at_1) = tokio::join!(
        redeem(&cluster, 0, &ticket, &first),
        redeem(&cluster, 1, &ticket, &first)
    );
    for answer in [&at_0, &at_1] {
        assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.json());
        assert_eq!(answer.json()["points"], 70);
        assert_eq!(answer.json()["last"]["request_id"], "order-1");
    }
    // Sent again later, to either member: the same outcome, marked as a replay, no charge.
    for at in [0, 1] {
        let again = redeem(&cluster, at, &ticket, &first).await;
        assert_eq!(again.status, StatusCode::OK, "{:?}", again.json());
        assert!(replayed(&again));
        assert_eq!(again.json()["points"], 70);
        assert_eq!(points(&cluster, at, &ticket).await, Some(70));
    }

    // The id cannot be spent again: no new challenge for it, and a request that reuses it for
    // a different redemption is a conflict.
    let reused = cluster
        .call(
            1,
            Method::GET,
            &format!(
                "/v1/loyalty/tickets/{ticket}/challenge?action=redeem&amount=5&request_id=order-1"
            ),
            None,
            false,
        )
        .await;
    assert_eq!(reused.status, StatusCode::CONFLICT, "{:?}", reused.json());
    let mut different = first.clone();
    different["amount"] = json!(20);
    let answer = redeem(&cluster, 1, &ticket, &different).await;
    assert_eq!(answer.status, StatusCode::CONFLICT, "{:?}", answer.json());

    // A new request id is a new redemption; the first one is still answered as it was.
    let second = signed(&cluster, &customer, &ticket, 1, 20, "order-2").await;
    let answer = redeem(&cluster, 1, &ticket, &second).await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.json());
    assert!(!replayed(&answer));
    assert_eq!(answer.json()["points"], 50);
    eventually_points(&cluster, 0, &ticket, 50).await;
    let late = redeem(&cluster, 0, &ticket, &first).await;
    assert_eq!(late.status, StatusCode::OK, "{:?}", late.json());
    assert!(replayed(&late));
    assert_eq!(late.json()["points"], 50);
    // The wallet's listing (through each member's owner index) shows the ticket once, charged
    // once for each request.
    for at in [0, 1] {
        let wallet = cluster
            .call(
                at,
                Method::GET,
                &format!("/v1/loyalty/tickets?owner={owner}"),
                None,
                false,
            )
            .await
            .json();
        assert_eq!(wallet["balance"], 50, "member {at}: {wallet}");
        assert_eq!(wallet["tickets"].as_array().map(Vec::len), Some(1));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redemption_without_a_request_id_is_answered_as_before() {
    let cluster = Cluster::start(1).await;
    let customer = UserKeyPair::generate().expect("key");
    let owner = hex::encode(customer.public_key().as_bytes());
    let issued = cluster
        .call(
            0,
            Method::POST,
            "/v1/loyalty/tickets",
            Some(&json!({ "owner": owner, "points": 10 })),
            true,
        )
        .await;
    let ticket = issued.json()["id"].as_str().expect("id").to_owned();
    let challenge = cluster
        .call(
            0,
            Method::GET,
            &format!("/v1/loyalty/tickets/{ticket}/challenge?action=redeem&amount=4"),
            None,
            false,
        )
        .await
        .json();
    let bytes = hex::decode(challenge["challenge_hex"].as_str().expect("hex")).expect("hex");
    let body = json!({
        "view": challenge["view"],
        "amount": 4,
        "signature": hex::encode(customer.sign(&bytes).expect("sign")),
    });
    let answer = redeem(&cluster, 0, &ticket, &body).await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.json());
    assert_eq!(answer.json()["points"], 6);
    // Without an id a repeat is a request for a ticket that has changed since.
    let again = redeem(&cluster, 0, &ticket, &body).await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{:?}", again.json());
    assert_eq!(points(&cluster, 0, &ticket).await, Some(6));
}

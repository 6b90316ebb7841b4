//! The applications end to end on a real consortium (one process per member): loyalty tickets
//! driven by an independent client (a Python script with its own P-256 keys), and a contract
//! installed at run time through endorsements and then used by signed transitions.

mod common;

use beaufort_crypto::user::UserKeyPair;
use common::*;
use serde_json::{json, Value as Json};
use std::process::Command;

/// `(status, JSON body)` of a request, retried while the member does not answer.
fn call(member: &Member, method: &str, path: &str, body: &Json) -> (u16, Json) {
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let mut answer = None;
    eventually(&format!("an answer to {method} {path}"), || {
        answer = member.http(method, path, &body);
        answer.is_some()
    });
    let (status, text) = answer.expect("answered");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Json::String(text)),
    )
}

#[test]
fn an_independent_client_issues_redeems_concurrently_and_verifies_a_receipt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let members = consortium(dir.path(), 4);
    members[0].put("warmup", "1");
    for m in &members {
        m.wait_for("warmup", "1");
    }
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/loyalty_client.py"
    );
    let out = Command::new("python3")
        .arg(script)
        .args(["--beaufort", BIN, "--token", &members[0].token()])
        .args(members.iter().map(Member::api_url))
        .output()
        .expect("python3 runs (scripts/test.sh installs it and its cryptography package)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the client's checks failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("all checks passed"), "{stdout}");

    let (status, openapi) = call(&members[1], "GET", "/openapi.json", &Json::Null);
    assert_eq!(status, 200);
    for path in [
        "/v1/loyalty/tickets",
        "/v1/loyalty/tickets/{id}",
        "/v1/loyalty/tickets/{id}/challenge",
        "/v1/loyalty/tickets/{id}/redeem",
        "/v1/loyalty/tickets/{id}/transfer",
        "/v1/receipts/{key}",
        "/v1/contracts",
        "/v1/assets/{id}/transitions",
    ] {
        assert!(
            openapi["paths"].get(path).is_some(),
            "{path} is described in /openapi.json"
        );
    }

    // Malformed requests get the same JSON error shape as every other refusal.
    let zero_id = "0".repeat(32);
    for (method, path, body) in [
        (
            "POST",
            format!("/v1/loyalty/tickets/{zero_id}/redeem"),
            json!({}),
        ),
        ("GET", "/v1/loyalty/tickets?owner=zz".to_owned(), Json::Null),
        ("DELETE", "/v1/loyalty/tickets".to_owned(), Json::Null),
    ] {
        let (status, answer) = call(&members[2], method, &path, &body);
        assert!((400..500).contains(&status), "{method} {path}: {status}");
        assert!(
            answer["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{method} {path}: {answer}"
        );
    }
}

struct User(UserKeyPair);

impl User {
    fn new() -> User {
        User(UserKeyPair::generate().expect("key pair"))
    }
    fn pk(&self) -> String {
        hex::encode(self.0.public_key().as_bytes())
    }
    /// Asks `member` for the challenge of a transition, signs it, submits it.
    fn transition(
        &self,
        member: &Member,
        asset: &str,
        contract: &str,
        transition: &str,
        input: Json,
    ) -> (u16, Json) {
        let body = json!({ "contract": contract, "transition": transition, "input": input, "actor": self.pk() });
        let (status, challenge) = call(
            member,
            "POST",
            &format!("/v1/assets/{asset}/challenge"),
            &body,
        );
        if status != 200 {
            return (status, challenge);
        }
        let bytes = hex::decode(challenge["challenge_hex"].as_str().expect("hex")).expect("hex");
        let mut signed = body;
        signed["view"] = challenge["view"].clone();
        signed["signature"] = json!(hex::encode(self.0.sign(&bytes).expect("sign")));
        call(
            member,
            "POST",
            &format!("/v1/assets/{asset}/transitions"),
            &signed,
        )
    }
}

#[test]
fn a_contract_installed_through_endorsements_governs_assets_on_every_member() {
    let dir = tempfile::tempdir().expect("tempdir");
    let members = consortium(dir.path(), 4);
    members[0].put("warmup", "1");
    for m in &members {
        m.wait_for("warmup", "1");
    }
    let (owner, borrower, stranger) = (User::new(), User::new(), User::new());
    let proposal = json!({ "name": "tools", "source": beaufort_contracts_source() });
    let (status, body) = call(&members[0], "POST", "/v1/contracts", &proposal);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "pending");
    let (status, body) = call(
        &members[0],
        "POST",
        "/v1/contracts",
        &json!({ "name": "bad", "source": "fn x() {" }),
    );
    assert_eq!(status, 422, "code that does not compile is refused: {body}");

    // Not installed yet: 1 of the 3 endorsements needed.
    let (status, body) = owner.transition(
        &members[0],
        "drill-1",
        "tools",
        "register",
        json!({ "tool": "Drill" }),
    );
    assert_eq!(status, 404, "{body}");
    eventually("member 1 sees the proposal", || {
        call(&members[1], "GET", "/v1/contracts", &Json::Null)
            .1
            .to_string()
            .contains("\"tools\"")
    });
    let (status, body) = call(
        &members[1],
        "POST",
        "/v1/contracts/tools/endorse",
        &Json::Null,
    );
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("pending")),
        "{body}"
    );
    eventually("member 2 sees the endorsement", || {
        call(&members[2], "GET", "/v1/contracts", &Json::Null)
            .1
            .as_array()
            .is_some_and(|list| {
                list.iter().any(|c| {
                    c["name"] == "tools"
                        && c["endorsements"].as_array().is_some_and(|e| e.len() == 2)
                })
            })
    });
    let (status, body) = call(
        &members[2],
        "POST",
        "/v1/contracts/tools/endorse",
        &Json::Null,
    );
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("installed")),
        "{body}"
    );
    for m in &members {
        eventually("every member installs it", || {
            call(m, "GET", "/v1/contracts", &Json::Null)
                .1
                .as_array()
                .is_some_and(|list| {
                    list.iter()
                        .any(|c| c["name"] == "tools" && c["status"] == "installed")
                })
        });
    }

    let (status, body) = owner.transition(
        &members[3],
        "drill-1",
        "tools",
        "register",
        json!({ "tool": "Drill" }),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"]["name"], "Ready");
    eventually("member 1 sees the tool", || {
        call(&members[1], "GET", "/v1/assets/drill-1", &Json::Null).0 == 200
    });
    let (status, body) = stranger.transition(
        &members[1],
        "drill-1",
        "tools",
        "lend",
        json!({ "borrower": stranger.pk() }),
    );
    assert_eq!(status, 422, "only the owner lends: {body}");
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains("owner")),
        "{body}"
    );
    let (status, body) = owner.transition(
        &members[1],
        "drill-1",
        "tools",
        "lend",
        json!({ "borrower": borrower.pk() }),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"]["name"], "Offered");

    // A signature by someone else than the actor named, and a request signed for an old view.
    let view = body["view"].clone();
    let forged = json!({ "transition": "return", "input": {}, "actor": owner.pk(), "view": view,
        "signature": hex::encode(stranger.0.sign(b"anything").expect("sign")) });
    let (status, body) = call(
        &members[1],
        "POST",
        "/v1/assets/drill-1/transitions",
        &forged,
    );
    assert_eq!(status, 403, "{body}");
    let stale = json!({ "transition": "return", "input": {}, "actor": owner.pk(), "view": 0, "signature": "00" });
    let (status, body) = call(
        &members[1],
        "POST",
        "/v1/assets/drill-1/transitions",
        &stale,
    );
    assert_eq!(status, 409, "{body}");

    eventually(
        "every member holds the tool as Offered to the borrower",
        || {
            let states: Vec<Json> = members
                .iter()
                .map(|m| call(m, "GET", "/v1/assets/drill-1", &Json::Null).1)
                .collect();
            states.iter().all(|s| {
                s["state"]["name"] == "Offered"
                    && s["state"]["value"]["borrower"] == json!(borrower.pk())
                    && *s == states[0]
            })
        },
    );
}

/// The eShare script shipped with the contracts crate.
fn beaufort_contracts_source() -> &'static str {
    include_str!("../../contracts/scripts/eshare.rhai")
}

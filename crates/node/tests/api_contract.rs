//! The API keeps the promises of its OpenAPI document: the document is well-formed OpenAPI 3.1
//! with an id, request and response schemas and error answers on every operation; the router
//! serves exactly the documented operations; and a bounded property-style run sends malformed
//! and edge inputs to every operation of a live member, requiring no 5xx, only documented
//! statuses, a JSON error body on every 4xx and a documented shape on every 2xx.

mod common;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use beaufort_crypto::user::UserKeyPair;
use common::{validate, Answer, Cluster};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value as Json};
use std::collections::BTreeSet;

const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

fn document() -> Json {
    serde_json::to_value(beaufort_node::api::openapi_document()).expect("document as JSON")
}

/// Every (path, method, operation) of the document.
fn operations(doc: &Json) -> Vec<(String, String, Json)> {
    let mut all = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in METHODS {
            if let Some(op) = item.get(method) {
                all.push((path.clone(), method.to_owned(), op.clone()));
            }
        }
    }
    all
}

fn statuses(op: &Json) -> BTreeSet<u16> {
    op["responses"]
        .as_object()
        .expect("responses")
        .keys()
        .map(|s| s.parse().expect("numeric status"))
        .collect()
}

/// The web pages' TypeScript client takes its types from the committed copy of the document
/// (crates/node/web-ts/openapi.json; scripts/check-web-client.sh checks the rest of the chain).
#[test]
fn the_committed_copy_of_the_document_is_the_one_the_node_serves() {
    let served = serde_json::to_string_pretty(&beaufort_node::api::openapi_document())
        .expect("the document serialises");
    let committed = include_str!("../web-ts/openapi.json");
    assert!(
        committed == format!("{served}\n"),
        "crates/node/web-ts/openapi.json is stale: regenerate it with \
         `cargo run --release --example openapi > crates/node/web-ts/openapi.json` \
         (crates/node/web-ts/README.md)"
    );
}

#[test]
fn the_document_is_openapi_3_1_with_ids_bodies_responses_and_errors() {
    let doc = document();
    let parsed: utoipa::openapi::OpenApi =
        serde_json::from_value(doc.clone()).expect("the document parses as OpenAPI");
    assert_eq!(serde_json::to_value(&parsed).expect("back to JSON"), doc);
    assert_eq!(doc["openapi"], "3.1.0");
    let mut ids = BTreeSet::new();
    let ops = operations(&doc);
    assert!(ops.len() >= 30, "{} operations", ops.len());
    for (path, method, op) in &ops {
        let at = format!("{method} {path}");
        let id = op["operationId"]
            .as_str()
            .unwrap_or_else(|| panic!("{at}: no operationId"));
        assert!(ids.insert(id.to_owned()), "{at}: operationId {id} repeats");
        assert!(
            !path.contains('*'),
            "{at}: an axum wildcard in the document"
        );
        // Path templates and path parameters name the same things.
        let templated: BTreeSet<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        let declared: BTreeSet<&str> = op["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["in"] == "path")
            .filter_map(|p| p["name"].as_str())
            .collect();
        assert_eq!(templated, declared, "{at}: path parameters");
        let codes = statuses(op);
        if let Some(body) = op.get("requestBody") {
            let content = body["content"].as_object().expect("request content");
            assert!(
                content.values().all(|c| c.get("schema").is_some()),
                "{at}: a request body without a schema"
            );
            if content.contains_key("application/json") {
                for code in [400, 413, 415] {
                    assert!(
                        codes.contains(&code),
                        "{at}: a JSON body route without {code}"
                    );
                }
            }
        }
        if op.get("security").is_some() {
            assert!(codes.contains(&401), "{at}: an operator route without 401");
        }
        for (code, response) in op["responses"].as_object().expect("responses") {
            let content = response["content"].as_object();
            assert!(
                content.is_some_and(|c| c.values().all(|m| m.get("schema").is_some())),
                "{at} {code}: no response schema"
            );
            if code.starts_with('4') || code.starts_with('5') {
                let schema = &response["content"]["application/json"]["schema"];
                let error = json!({ "error": "x" });
                assert!(
                    schema.is_object() && validate(&doc, schema, &error, &at).is_ok()
                        || validate(
                            &doc,
                            schema,
                            &json!({"ready": false, "reason": "stopped", "error": "x"}),
                            &at
                        )
                        .is_ok(),
                    "{at} {code}: not a JSON error body"
                );
            }
        }
    }
    // Every reference resolves.
    let text = doc.to_string();
    for piece in text.split("\"$ref\":\"").skip(1) {
        let reference = piece.split('"').next().expect("ref");
        let name = reference
            .strip_prefix("#/components/schemas/")
            .expect("a local schema ref");
        assert!(
            doc["components"]["schemas"].get(name).is_some(),
            "dangling {reference}"
        );
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
}

/// A value for a path parameter that names something that may exist.
fn sample_path(path: &str, id: &str, key: &str) -> String {
    path.replace("{key}", key)
        .replace("{name}", "nope")
        .replace("{file}", "common.js")
        .replace(
            "{id}",
            if path.starts_with("/v1/assets") {
                "drill-1"
            } else {
                id
            },
        )
}

fn method(name: &str) -> Method {
    Method::from_bytes(name.to_uppercase().as_bytes()).expect("method")
}

fn is_fallback(answer: &Answer) -> bool {
    answer.status == StatusCode::NOT_FOUND && answer.json()["error"] == "no such route"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_serves_exactly_the_documented_operations() {
    let cluster = Cluster::start(1).await;
    let doc = document();
    let id = "0".repeat(32);
    for (path, item) in doc["paths"].as_object().expect("paths") {
        let uri = sample_path(path, &id, "route/check");
        for name in METHODS {
            let request = Request::builder()
                .method(method(name))
                .uri(&uri)
                .header(
                    header::AUTHORIZATION,
                    format!("Bearer {}", cluster.tokens[0]),
                )
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from("{}"))
                .expect("request");
            let answer = cluster.send(0, request).await;
            if item.get(name).is_some() {
                assert!(
                    !is_fallback(&answer) && answer.status != StatusCode::METHOD_NOT_ALLOWED,
                    "{name} {path} is documented but not served ({})",
                    answer.status
                );
            } else {
                assert_eq!(
                    answer.status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{name} {path} is served but not documented"
                );
            }
        }
    }
    // A path the document does not name is not served.
    let answer = cluster
        .call(0, Method::GET, "/v1/undocumented", None, true)
        .await;
    assert!(is_fallback(&answer));
}

/// Edge values for a parameter or field, by its name: valid ones (so 2xx answers are checked
/// too) mixed with malformed ones.
fn pool(name: &str, seed: &Seed) -> Vec<Json> {
    let long = "x".repeat(300);
    let strings = |v: &[&str]| v.iter().map(|s| json!(s)).collect::<Vec<_>>();
    match name {
        "key" | "after" => vec![
            json!(seed.key),
            json!("a/b/c"),
            json!(long),
            json!("%FF%FE"),
            json!("%00"),
            json!("..%2F.."),
        ],
        "id" => vec![
            json!(seed.ticket),
            json!("0".repeat(32)),
            json!("ABC"),
            json!(long),
            json!("%FF"),
        ],
        "owner" | "to" | "actor" => vec![
            json!(seed.owner),
            json!(format!("04{}", "0".repeat(128))),
            json!("zz"),
            json!(""),
            json!(7),
        ],
        "limit" | "amount" | "points" | "view" => vec![
            json!(0),
            json!(1),
            json!(5),
            json!(1000),
            json!(5000),
            json!(-1),
            json!("abc"),
            json!("99999999999999999999999"),
            json!(1.5),
        ],
        "wait" => strings(&["1s", "10ms", "abc", "-5s", "100years"]),
        "action" => strings(&["redeem", "transfer", "burn", ""]),
        "prefix" | "contract" | "name" | "transition" => vec![
            json!(""),
            json!("eshare"),
            json!("api/"),
            json!(long),
            json!(3),
        ],
        "signature" => vec![json!("ab".repeat(64)), json!("zz"), json!(null)],
        "members" => vec![json!([]), json!([1]), json!("x"), json!([70000])],
        "source" => vec![json!("fn x() {"), json!(""), json!(1)],
        "file" => vec![json!("common.js"), json!("nope.js"), json!("%FF")],
        _ => vec![json!(null), json!("x"), json!(1), json!({}), json!([])],
    }
}

/// A value from the pool: its first (valid) value half of the time, so requests reach the
/// handlers' own checks, not only the extractors' refusals.
fn pick(rng: &mut StdRng, name: &str, seed: &Seed) -> Json {
    let values = pool(name, seed);
    if rng.gen_bool(0.5) {
        values[0].clone()
    } else {
        values.choose(rng).expect("a value").clone()
    }
}

/// What the run seeds the member with, so some requests name things that exist.
struct Seed {
    key: String,
    ticket: String,
    owner: String,
}

fn text(value: &Json) -> String {
    match value {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A random request for one operation.
fn request(
    rng: &mut StdRng,
    path: &str,
    name: &str,
    op: &Json,
    doc: &Json,
    seed: &Seed,
    token: &str,
) -> Request<Body> {
    let mut uri = path.to_owned();
    let mut query = Vec::new();
    for param in op["parameters"].as_array().into_iter().flatten() {
        let pname = param["name"].as_str().expect("name");
        let value = text(&pick(rng, pname, seed));
        match param["in"].as_str() {
            Some("path") => {
                let value = if value.is_empty() {
                    "x".into()
                } else {
                    value.replace(['?', '#', ' '], "_")
                };
                uri = uri.replace(&format!("{{{pname}}}"), &value);
            }
            _ if param["required"] == true || rng.gen_bool(0.7) => {
                query.push(format!("{pname}={}", value.replace(['&', '#', ' '], "_")))
            }
            _ => {}
        }
    }
    if rng.gen_bool(0.1) {
        query.push("unknown=1".into());
    }
    if !query.is_empty() {
        uri = format!("{uri}?{}", query.join("&"));
    }
    let mut builder = Request::builder().method(method(name)).uri(&uri);
    if op.get("security").is_some() {
        let auth = [
            format!("Bearer {token}"),
            format!("bearer {token}"),
            "Bearer wrong".into(),
            format!("Basic {token}"),
            String::new(),
        ];
        let auth = auth.choose(rng).expect("auth").clone();
        if !auth.is_empty() {
            builder = builder.header(header::AUTHORIZATION, auth);
        }
    }
    let content = op["requestBody"]["content"].as_object();
    let body = match content {
        Some(content) if content.contains_key("application/json") => {
            let schema = &content["application/json"]["schema"];
            let name = schema["$ref"]
                .as_str()
                .and_then(|r| r.rsplit('/').next())
                .unwrap_or("");
            let fields = &doc["components"]["schemas"][name]["properties"];
            let mut object = serde_json::Map::new();
            for field in fields.as_object().into_iter().flat_map(|f| f.keys()) {
                if rng.gen_bool(0.85) {
                    object.insert(field.clone(), pick(rng, field, seed));
                }
            }
            if rng.gen_bool(0.1) {
                object.insert("unknown".into(), json!(1));
            }
            let body = match rng.gen_range(0..10) {
                0 => "{".to_owned(),
                1 => "null".to_owned(),
                2 => "[]".to_owned(),
                3 => format!("{{\"pad\":\"{}\"}}", "p".repeat(70 * 1024)),
                _ => Json::Object(object).to_string(),
            };
            let content_type = if rng.gen_bool(0.1) {
                "text/plain"
            } else {
                "application/json"
            };
            builder = builder.header(header::CONTENT_TYPE, content_type);
            Body::from(body)
        }
        Some(_) => Body::from(match rng.gen_range(0..4) {
            0 => Vec::new(),
            1 => vec![0xff; 70 * 1024],
            _ => b"value".to_vec(),
        }),
        None => Body::empty(),
    };
    builder.body(body).expect("request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_edge_inputs_never_get_a_5xx_or_an_undocumented_answer() {
    let cluster = Cluster::start(2).await;
    let doc = document();
    let customer = UserKeyPair::generate().expect("key");
    let owner = hex::encode(customer.public_key().as_bytes());
    let put = cluster
        .call(0, Method::PUT, "/v1/kv/api/seed", None, true)
        .await;
    assert_eq!(put.status, StatusCode::OK);
    let issued = cluster
        .call(
            0,
            Method::POST,
            "/v1/loyalty/tickets",
            Some(&json!({ "owner": owner, "points": 10 })),
            true,
        )
        .await;
    assert_eq!(issued.status, StatusCode::OK, "{:?}", issued.json());
    let seed = Seed {
        key: "api/seed".into(),
        ticket: issued.json()["id"].as_str().expect("ticket id").to_owned(),
        owner,
    };
    let mut rng = StdRng::seed_from_u64(18);
    let mut seen = BTreeSet::new();
    for (path, name, op) in operations(&doc) {
        let documented = statuses(&op);
        for _ in 0..64 {
            let request = request(&mut rng, &path, &name, &op, &doc, &seed, &cluster.tokens[0]);
            let uri = request.uri().to_string();
            let answer = cluster.send(0, request).await;
            let at = format!("{name} {uri} -> {}", answer.status);
            seen.insert((
                op["operationId"].as_str().unwrap_or("").to_owned(),
                answer.status.as_u16(),
            ));
            assert!(
                !answer.status.is_server_error(),
                "{at}: {:?}",
                answer.json()
            );
            if is_fallback(&answer) {
                // An edge value made the path leave the route (e.g. a key segment decoded to
                // nothing); the router's own 404 is JSON too.
                continue;
            }
            assert!(
                documented.contains(&answer.status.as_u16()),
                "{at}: not in the document {documented:?} {:?}",
                answer.json()
            );
            if answer.status.is_client_error() {
                assert!(
                    answer.content_type().starts_with("application/json"),
                    "{at}: {}",
                    answer.content_type()
                );
                assert!(answer.json()["error"].is_string(), "{at}: no error text");
            }
            let schema =
                &op["responses"][answer.status.as_str()]["content"]["application/json"]["schema"];
            if answer.status.is_success() && schema.is_object() {
                validate(&doc, schema, &answer.json(), &at).unwrap_or_else(|e| panic!("{e}"));
            }
        }
    }
    // The run reached the handlers, not only the extractors' refusals.
    for expected in [
        ("getValue", 200),
        ("getTicket", 200),
        ("listTickets", 200),
        ("ticketChallenge", 200),
        ("redeemTicket", 403),
        ("putValue", 401),
        ("issueTicket", 415),
        ("webFile", 200),
    ] {
        assert!(
            seen.contains(&(expected.0.to_owned(), expected.1)),
            "never saw {expected:?}: {seen:?}"
        );
    }
}

//! An in-process consortium for the API tests: `init_local` on loopback, every member a real
//! `NodeHandle` (libp2p, redb store in a temporary directory), requests sent straight into each
//! member's axum router. Conditions are polled with a deadline; nothing depends on timing
//! beyond that deadline.

#![allow(dead_code)] // Each test binary uses its own subset of these helpers.

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use beaufort_node::config::{init_local, Config, InitOptions, DEFAULT_NEIGHBOURS};
use beaufort_node::{api, NodeHandle, StartOptions};
use serde_json::Value as Json;
use std::time::{Duration, Instant};
use tower::ServiceExt;

/// Generous: tests share a loaded 2-core machine.
pub const DEADLINE: Duration = Duration::from_secs(120);

/// Most bytes of an answer a test reads.
const MAX_ANSWER: usize = 4 << 20;

/// Members running in this process, with their operator tokens.
pub struct Cluster {
    pub nodes: Vec<NodeHandle>,
    pub routers: Vec<axum::Router>,
    pub tokens: Vec<String>,
    _dir: tempfile::TempDir,
}

/// An answer: status, headers and the whole body (empty for an event stream, which never ends).
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    /// The body as JSON, or `Json::Null` if it is not JSON.
    pub fn json(&self) -> Json {
        serde_json::from_slice(&self.body).unwrap_or(Json::Null)
    }

    pub fn content_type(&self) -> &str {
        self.headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

impl Cluster {
    /// Starts `n` members and waits until each is connected to every other.
    pub async fn start(n: usize) -> Cluster {
        let dir = tempfile::tempdir().expect("temporary directory");
        let consortium = init_local(
            dir.path(),
            &InitOptions {
                members: n,
                name: "api-test".into(),
                p2p_base_port: 0,
                api_base_port: 0,
                write_once_prefixes: vec!["voucher/".into()],
                neighbours: DEFAULT_NEIGHBOURS,
                aggregate_wait_ms: None,
            },
        )
        .expect("init");
        let mut nodes = Vec::new();
        let mut tokens = Vec::new();
        for path in &consortium.config_files {
            let config = Config::load(path).expect("configuration");
            tokens.push(config.node.api_token.clone());
            nodes.push(NodeHandle::start(config, StartOptions::default()).expect("start"));
        }
        let routers = nodes.iter().map(|n| api::router(n.clone())).collect();
        let cluster = Cluster {
            nodes,
            routers,
            tokens,
            _dir: dir,
        };
        let deadline = Instant::now() + DEADLINE;
        for node in &cluster.nodes {
            loop {
                let status = node.status().await.expect("status");
                if status.neighbours.len() + 1 == n {
                    break;
                }
                assert!(Instant::now() < deadline, "members did not connect");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        cluster
    }

    /// Sends a request to member `member`'s router.
    pub async fn send(&self, member: usize, request: Request<Body>) -> Answer {
        let response = self.routers[member]
            .clone()
            .oneshot(request)
            .await
            .expect("the router never fails");
        let status = response.status();
        let headers = response.headers().clone();
        let streaming = headers
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        let body = if streaming {
            Bytes::new()
        } else {
            axum::body::to_bytes(response.into_body(), MAX_ANSWER)
                .await
                .expect("the answer's body")
        };
        Answer {
            status,
            headers,
            body,
        }
    }

    /// A JSON request (with the operator token when `operator`).
    pub async fn call(
        &self,
        member: usize,
        method: Method,
        uri: &str,
        body: Option<&Json>,
        operator: bool,
    ) -> Answer {
        let mut request = Request::builder().method(method).uri(uri);
        if operator {
            request = request.header(
                header::AUTHORIZATION,
                format!("Bearer {}", self.tokens[member]),
            );
        }
        let body = match body {
            Some(json) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Body::from(json.to_string())
            }
            None => Body::empty(),
        };
        self.send(member, request.body(body).expect("request"))
            .await
    }
}

/// Checks `value` against an OpenAPI 3.1 schema of `document` (the subset the API uses:
/// `$ref`, `type`, `properties`, `required`, `items`, `oneOf`/`anyOf`/`allOf`, `enum`,
/// `minimum`, `maximum`). An object schema with `properties` outside an `allOf` must name every
/// field the value has, so an undocumented field fails too.
pub fn validate(document: &Json, schema: &Json, value: &Json, at: &str) -> Result<(), String> {
    validate_in(document, schema, value, at, true)
}

fn validate_in(
    document: &Json,
    schema: &Json,
    value: &Json,
    at: &str,
    strict: bool,
) -> Result<(), String> {
    if let Some(reference) = schema.get("$ref").and_then(Json::as_str) {
        let name = reference
            .strip_prefix("#/components/schemas/")
            .ok_or_else(|| format!("{at}: unsupported $ref {reference}"))?;
        let target = &document["components"]["schemas"][name];
        if target.is_null() {
            return Err(format!("{at}: dangling $ref {reference}"));
        }
        return validate_in(document, target, value, at, strict);
    }
    if let Some(all) = schema.get("allOf").and_then(Json::as_array) {
        for part in all {
            validate_in(document, part, value, at, false)?;
        }
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(choices) = schema.get(key).and_then(Json::as_array) {
            let errors: Vec<String> = choices
                .iter()
                .filter_map(|c| validate_in(document, c, value, at, strict).err())
                .collect();
            if errors.len() == choices.len() {
                return Err(format!("{at}: matches none of {key}: {errors:?}"));
            }
        }
    }
    if let Some(types) = schema.get("type") {
        let types: Vec<&str> = match types {
            Json::String(t) => vec![t.as_str()],
            Json::Array(ts) => ts.iter().filter_map(Json::as_str).collect(),
            _ => return Err(format!("{at}: malformed type {types}")),
        };
        let fits = |t: &str| match t {
            "null" => value.is_null(),
            "boolean" => value.is_boolean(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "string" => value.is_string(),
            "array" => value.is_array(),
            "object" => value.is_object(),
            _ => false,
        };
        if !types.iter().any(|t| fits(t)) {
            return Err(format!("{at}: {value} is not of type {types:?}"));
        }
    }
    if let Some(options) = schema.get("enum").and_then(Json::as_array) {
        if !options.contains(value) {
            return Err(format!("{at}: {value} is not one of {options:?}"));
        }
    }
    if let (Some(n), Some(min)) = (value.as_f64(), schema.get("minimum").and_then(Json::as_f64)) {
        if n < min {
            return Err(format!("{at}: {n} below the minimum {min}"));
        }
    }
    if let (Some(n), Some(max)) = (value.as_f64(), schema.get("maximum").and_then(Json::as_f64)) {
        if n > max {
            return Err(format!("{at}: {n} above the maximum {max}"));
        }
    }
    if let Some(object) = value.as_object() {
        let properties = schema.get("properties").and_then(Json::as_object);
        for name in schema
            .get("required")
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
            .filter_map(Json::as_str)
        {
            if !object.contains_key(name) {
                return Err(format!("{at}: required field {name} missing"));
            }
        }
        if let Some(properties) = properties {
            for (name, field) in object {
                match properties.get(name) {
                    Some(s) => validate_in(document, s, field, &format!("{at}.{name}"), true)?,
                    None if strict && schema.get("allOf").is_none() => {
                        return Err(format!("{at}: field {name} is not in the document"))
                    }
                    None => {}
                }
            }
        }
    }
    if let (Some(items), Some(values)) = (schema.get("items"), value.as_array()) {
        for (i, item) in values.iter().enumerate() {
            validate_in(document, items, item, &format!("{at}[{i}]"), true)?;
        }
    }
    Ok(())
}

/// One server-sent event.
#[derive(Debug)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: String,
    pub data: Json,
}

/// The events of an open `text/event-stream` answer, read as they come.
pub struct EventStream {
    body: axum::body::BodyDataStream,
    buffer: String,
}

impl EventStream {
    /// The next event (keep-alive comments skipped); panics after [`DEADLINE`].
    pub async fn next(&mut self) -> SseEvent {
        use futures::StreamExt;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = SseEvent {
                    id: None,
                    event: "message".into(),
                    data: Json::Null,
                };
                let mut any = false;
                for line in block.lines() {
                    let (field, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    match field {
                        "id" => event.id = Some(value.to_owned()),
                        "event" => event.event = value.to_owned(),
                        "data" => event.data = serde_json::from_str(value).expect("JSON data"),
                        _ => continue,
                    }
                    any = true;
                }
                if any {
                    return event;
                }
                continue;
            }
            let chunk = tokio::time::timeout(DEADLINE, self.body.next())
                .await
                .expect("an event before the deadline")
                .expect("the stream goes on")
                .expect("a chunk");
            self.buffer
                .push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
        }
    }
}

impl Cluster {
    /// Opens `/v1/watch?prefix=…` at `member`, resuming after `last_event_id` if given.
    pub async fn watch(
        &self,
        member: usize,
        prefix: &str,
        last_event_id: Option<&str>,
    ) -> EventStream {
        let mut request = Request::builder()
            .method(Method::GET)
            .uri(format!("/v1/watch?prefix={prefix}"));
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = self.routers[member]
            .clone()
            .oneshot(request.body(Body::empty()).expect("request"))
            .await
            .expect("the router never fails");
        assert_eq!(response.status(), StatusCode::OK);
        EventStream {
            body: response.into_body().into_data_stream(),
            buffer: String::new(),
        }
    }
}

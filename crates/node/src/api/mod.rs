//! The HTTP API (axum): key-value routes, a prefix listing, server-sent events of committed
//! changes, status, Prometheus metrics and an OpenAPI description of every route.
//!
//! Writes and the status page are operator routes: they need `Authorization: Bearer <token>` with
//! the token from the node's configuration. Every error is a 4xx/5xx with a JSON body
//! `{"error": "..."}`; request bodies are limited to the largest value, keys to the core's bound.

mod assets;
mod conn;
mod loyalty;
mod web;

pub use loyalty::TicketView;

use crate::{Change, NodeError, NodeHandle};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use beaufort_core::state::Certified;
use beaufort_core::types::{Key, Value, MAX_VALUE_LEN};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::convert::Infallible;
use std::time::Duration;

/// Longest a write request waits for its commit before answering 202 (pending).
pub const MAX_WAIT: Duration = Duration::from_secs(60);
/// Default wait of a write request.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(30);

/// A committed value as the API returns it.
#[derive(Debug, Serialize, Deserialize)]
pub struct ValueView {
    /// The key.
    pub key: String,
    /// The value as UTF-8 text, when it is text.
    pub value: Option<String>,
    /// The value's bytes in hex (absent for a delete).
    pub value_hex: Option<String>,
    /// The key was deleted.
    pub deleted: bool,
    /// The view the value was certified in.
    pub view: u64,
    /// The round it was certified in.
    pub round: u32,
    /// The quorum certificate (signer bitmap and aggregate BLS signature).
    pub certificate: beaufort_crypto::qc::QuorumCertificate,
}

impl ValueView {
    /// The API form of a certified value.
    pub fn new(key: &Key, certified: &Certified) -> ValueView {
        let data = certified.value.as_data();
        ValueView {
            key: crate::key_text(key),
            value: data.and_then(|d| std::str::from_utf8(d).ok().map(str::to_owned)),
            value_hex: data.map(hex::encode),
            deleted: data.is_none(),
            view: certified.view,
            round: certified.round,
            certificate: certified.qc.clone(),
        }
    }

    /// Rebuilds the certified value (for offline verification) from the fields the certificate
    /// covers: the key, `value_hex` (or `deleted`), the view and the round.
    ///
    /// `value` is only a convenience copy of `value_hex` as text, so it is refused unless it is
    /// exactly what the verified bytes decode to: otherwise a receipt with an edited `value`
    /// would pass verification while showing a value nobody certified.
    pub fn certified(&self) -> Result<(Key, Certified), String> {
        let key = Key::new(self.key.as_bytes().to_vec()).map_err(|e| e.to_string())?;
        let value = match (&self.value_hex, self.deleted) {
            (None, true) => Value::Tombstone,
            (Some(_), true) => return Err("the receipt is marked deleted but has value_hex".into()),
            (Some(h), false) => Value::data(hex::decode(h).map_err(|e| format!("value_hex: {e}"))?)
                .map_err(|e| e.to_string())?,
            (None, false) => return Err("value_hex missing".into()),
        };
        let certified = Certified {
            view: self.view,
            round: self.round,
            value,
            qc: self.certificate.clone(),
        };
        let derived = ValueView::new(&key, &certified);
        if derived.value != self.value {
            return Err(format!(
                "the receipt's value {:?} is not what its value_hex holds ({:?})",
                self.value, derived.value
            ));
        }
        Ok((key, certified))
    }
}

/// An error answer.
pub(crate) struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<NodeError> for ApiError {
    fn from(error: NodeError) -> ApiError {
        let status = match &error {
            NodeError::Rejected(_) => StatusCode::UNPROCESSABLE_ENTITY,
            NodeError::Lost(_) => StatusCode::CONFLICT,
            NodeError::Busy => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError(status, error.to_string())
    }
}

fn parse_key(key: String) -> Result<Key, ApiError> {
    Key::new(key.into_bytes()).map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.to_string()))
}

/// The router for a node, serving until the process ends (see [`serve_until`] for a drain).
pub fn router(node: NodeHandle) -> Router {
    // The sender is dropped at once: watch streams then never end on their own.
    let (_, stopping) = tokio::sync::watch::channel(false);
    app(node, stopping)
}

/// Ends the streams that would otherwise outlive a drain (`/v1/watch` never ends by itself): set
/// to `true` when the server stops accepting.
#[derive(Clone)]
struct Stopping(tokio::sync::watch::Receiver<bool>);

impl Stopping {
    /// Resolves once the server is stopping; never if nobody can stop it.
    async fn wait(mut self) {
        if self.0.wait_for(|stopping| *stopping).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

fn app(node: NodeHandle, stopping: tokio::sync::watch::Receiver<bool>) -> Router {
    let operator = Router::new()
        .route(
            "/v1/kv/{*key}",
            axum::routing::put(put_value).delete(delete_value),
        )
        .route("/v1/status", get(status))
        .route("/v1/loyalty/tickets", axum::routing::post(loyalty::issue))
        .route(
            "/v1/contracts",
            axum::routing::post(assets::propose_contract),
        )
        .route(
            "/v1/contracts/{name}/endorse",
            axum::routing::post(assets::endorse_contract),
        )
        .route("/v1/test/isolate", axum::routing::put(isolate))
        .route_layer(middleware::from_fn_with_state(node.clone(), require_token));
    Router::new()
        .route("/v1/kv/{*key}", get(get_value))
        .route("/v1/kv", get(list))
        .route("/v1/watch", get(watch))
        .route("/v1/info", get(info))
        .route("/v1/network", get(network))
        .route("/v1/receipts/{*key}", get(receipt))
        .route("/v1/loyalty/tickets", get(loyalty::list))
        .route("/v1/loyalty/tickets/{id}", get(loyalty::get))
        .route(
            "/v1/loyalty/tickets/{id}/challenge",
            get(loyalty::challenge),
        )
        .route(
            "/v1/loyalty/tickets/{id}/redeem",
            axum::routing::post(loyalty::redeem),
        )
        .route(
            "/v1/loyalty/tickets/{id}/transfer",
            axum::routing::post(loyalty::transfer),
        )
        .route("/v1/contracts", get(assets::list_contracts))
        .route("/v1/assets", get(assets::list_assets))
        .route("/v1/assets/{id}", get(assets::get_asset))
        .route(
            "/v1/assets/{id}/challenge",
            axum::routing::post(assets::challenge),
        )
        .route(
            "/v1/assets/{id}/transitions",
            axum::routing::post(assets::transition),
        )
        .merge(web::router())
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .merge(operator)
        .fallback(|| async { ApiError(StatusCode::NOT_FOUND, "no such route".into()) })
        .layer(axum::Extension(Stopping(stopping)))
        .layer(DefaultBodyLimit::max(MAX_VALUE_LEN))
        .layer(middleware::from_fn(json_errors))
        .layer(middleware::from_fn(cors))
        .with_state(node)
}

async fn require_token(
    State(node): State<NodeHandle>,
    headers: HeaderMap,
    request: Request,
    next: Next,
) -> Response {
    let expected = format!("Bearer {}", node.config().node.api_token);
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !constant_time_eq(given.as_bytes(), expected.as_bytes()) {
        return ApiError(
            StatusCode::UNAUTHORIZED,
            "this route needs the operator's bearer token".into(),
        )
        .into_response();
    }
    next.run(request).await
}

/// Lets a wallet page served by one member call another member's customer routes (a customer
/// whose wallet lives at merchant A redeems at merchant B). Any origin may send GET and POST with
/// a JSON body, but no credentials and no `Authorization` header: operator routes stay out of
/// reach of other origins because the preflight never approves that header.
async fn cors(request: Request, next: Next) -> Response {
    if request.method() == axum::http::Method::OPTIONS {
        return (
            StatusCode::NO_CONTENT,
            [
                (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
                (header::ACCESS_CONTROL_ALLOW_METHODS, "GET, POST"),
                (header::ACCESS_CONTROL_ALLOW_HEADERS, "content-type"),
                (header::ACCESS_CONTROL_MAX_AGE, "600"),
            ],
        )
            .into_response();
    }
    let mut response = next.run(request).await;
    response.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        axum::http::HeaderValue::from_static("*"),
    );
    response
}

/// Most bytes of a plain-text error kept when it is rewrapped as JSON.
const MAX_ERROR_TEXT: usize = 4096;

/// Gives every error the same shape, `{"error": "..."}`: axum's own rejections (a body that is
/// not the expected JSON, a bad query string, a method the route does not have) answer in plain
/// text, which clients and the web app would otherwise have to special-case.
async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let text = axum::body::to_bytes(response.into_body(), MAX_ERROR_TEXT)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("request refused")
            .to_owned()
    } else {
        text
    };
    ApiError(status, message).into_response()
}

/// Compares without an early exit, so the token cannot be guessed byte by byte from timing.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn get_value(
    State(node): State<NodeHandle>,
    Path(key): Path<String>,
) -> Result<Json<ValueView>, ApiError> {
    let key = parse_key(key)?;
    match node.get(key.clone()).await? {
        Some(certified) => Ok(Json(ValueView::new(&key, &certified))),
        None => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("{key} has no value"),
        )),
    }
}

/// Query of a write: how long to wait for the commit.
#[derive(Deserialize)]
struct WaitQuery {
    /// e.g. "10s" or "500ms"; at most [`MAX_WAIT`].
    wait: Option<String>,
}

/// How a write ended, for routes that shape their own answers.
pub(crate) enum Outcome {
    /// Committed with this certificate.
    Committed(Certified),
    /// Not committed within the wait: the 202 answer to send.
    Pending(Response),
    /// Refused or lost.
    Failed(NodeError),
}

/// Proposes `value` under `key` and waits for the outcome (at most `wait`, default
/// [`DEFAULT_WAIT`]).
pub(crate) async fn wait_for(
    node: &NodeHandle,
    key: Key,
    value: Value,
    wait: Option<Duration>,
) -> Outcome {
    let pending = match node.submit(key.clone(), value).await {
        Ok(p) => p,
        Err(e) => return Outcome::Failed(e),
    };
    match tokio::time::timeout(wait.unwrap_or(DEFAULT_WAIT), pending.wait()).await {
        Ok(Ok(certified)) => Outcome::Committed(certified),
        Ok(Err(e)) => Outcome::Failed(e),
        Err(_) => Outcome::Pending(
            (
                StatusCode::ACCEPTED,
                Json(json!({ "status": "pending", "key": crate::key_text(&key) })),
            )
                .into_response(),
        ),
    }
}

async fn write(node: NodeHandle, key: Key, value: Value, wait: WaitQuery) -> Response {
    let wait = match wait.wait.as_deref().map(humantime::parse_duration) {
        None => DEFAULT_WAIT,
        Some(Ok(d)) => d.min(MAX_WAIT),
        Some(Err(e)) => {
            return ApiError(StatusCode::BAD_REQUEST, format!("wait: {e}")).into_response()
        }
    };
    match wait_for(&node, key.clone(), value, Some(wait)).await {
        Outcome::Committed(certified) => Json(ValueView::new(&key, &certified)).into_response(),
        Outcome::Pending(response) => response,
        Outcome::Failed(e) => ApiError::from(e).into_response(),
    }
}

async fn put_value(
    State(node): State<NodeHandle>,
    Path(key): Path<String>,
    Query(wait): Query<WaitQuery>,
    body: Bytes,
) -> Response {
    let key = match parse_key(key) {
        Ok(k) => k,
        Err(e) => return e.into_response(),
    };
    match Value::data(body.to_vec()) {
        Ok(value) => write(node, key, value, wait).await,
        Err(e) => ApiError(StatusCode::PAYLOAD_TOO_LARGE, e.to_string()).into_response(),
    }
}

async fn delete_value(
    State(node): State<NodeHandle>,
    Path(key): Path<String>,
    Query(wait): Query<WaitQuery>,
) -> Response {
    match parse_key(key) {
        Ok(key) => write(node, key, Value::Tombstone, wait).await,
        Err(e) => e.into_response(),
    }
}

/// Query of the list and watch routes.
#[derive(Deserialize)]
struct PrefixQuery {
    #[serde(default)]
    prefix: String,
    limit: Option<usize>,
}

async fn list(
    State(node): State<NodeHandle>,
    Query(q): Query<PrefixQuery>,
) -> Result<Json<Vec<ValueView>>, ApiError> {
    let limit = q.limit.unwrap_or(100).min(crate::runtime::MAX_LIST);
    let items = node.list(q.prefix, limit).await?;
    Ok(Json(
        items.iter().map(|(k, c)| ValueView::new(k, c)).collect(),
    ))
}

async fn watch(
    State(node): State<NodeHandle>,
    axum::Extension(stopping): axum::Extension<Stopping>,
    Query(q): Query<PrefixQuery>,
) -> Sse<impl futures::Stream<Item = Result<Event, Infallible>>> {
    let stream = node
        .listen(q.prefix)
        .map(|Change { key, certified }| {
            let view = ValueView::new(&key, &certified);
            Ok(Event::default()
                .event("change")
                .json_data(&view)
                .unwrap_or_else(|_| Event::default().event("error")))
        })
        // A watch never ends by itself, so a drain would otherwise wait on it until its limit.
        .take_until(stopping.wait());
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// What `GET /v1/info` shows: which member this node is, for every page's header, and which
/// build and network, so an operator comparing members sees a mismatch at once.
#[derive(Serialize)]
struct Info {
    version: &'static str,
    member: beaufort_core::types::MemberIndex,
    members: usize,
    name: String,
    network: String,
    network_id: String,
}

async fn info(State(node): State<NodeHandle>) -> Json<Info> {
    let member = node.config().node.index;
    let entry = node.config().network.members.get(usize::from(member));
    Json(Info {
        version: env!("CARGO_PKG_VERSION"),
        member,
        members: node.membership().n(),
        name: entry
            .and_then(|e| e.name.clone())
            .unwrap_or_else(|| format!("member-{member}")),
        network: node.config().network.name.clone(),
        network_id: node.membership().network_id().to_hex(),
    })
}

/// The public network description (member keys and addresses): what `beaufort verify
/// --network` checks receipts against.
async fn network(State(node): State<NodeHandle>) -> Response {
    (
        [(
            header::CONTENT_DISPOSITION,
            "attachment; filename=\"network.json\"",
        )],
        Json(node.config().network.clone()),
    )
        .into_response()
}

/// A committed value with everything needed to check it offline: the network it belongs to and
/// its certificate.
#[derive(Debug, Serialize, Deserialize)]
pub struct Receipt {
    /// The network id (hex) the certificate's signers belong to.
    pub network_id: String,
    /// The value and its certificate.
    #[serde(flatten)]
    pub value: ValueView,
}

async fn receipt(
    State(node): State<NodeHandle>,
    Path(key): Path<String>,
) -> Result<Json<Receipt>, ApiError> {
    let key = parse_key(key)?;
    match node.get(key.clone()).await? {
        Some(certified) => Ok(Json(Receipt {
            network_id: node.membership().network_id().to_hex(),
            value: ValueView::new(&key, &certified),
        })),
        None => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("{key} has no value"),
        )),
    }
}

async fn status(State(node): State<NodeHandle>) -> Result<Json<crate::Status>, ApiError> {
    Ok(Json(node.status().await?))
}

/// Body of the test-only isolate route.
#[derive(Deserialize)]
struct IsolateBody {
    /// Members whose traffic is dropped (empty heals).
    members: std::collections::BTreeSet<beaufort_core::types::MemberIndex>,
}

async fn isolate(
    State(node): State<NodeHandle>,
    Json(body): Json<IsolateBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if !node.config().node.test_controls {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            "test controls are disabled in this node's configuration".into(),
        ));
    }
    node.isolate(body.members.clone()).await?;
    Ok(Json(json!({ "isolated": body.members })))
}

async fn metrics(State(node): State<NodeHandle>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        node.metrics().render(),
    )
        .into_response()
}

async fn openapi() -> Json<serde_json::Value> {
    Json(openapi_document())
}

/// The OpenAPI 3.1 description of every route.
pub fn openapi_document() -> serde_json::Value {
    let key_param = json!([{ "name": "key", "in": "path", "required": true,
        "schema": { "type": "string", "maxLength": beaufort_core::types::MAX_KEY_LEN } }]);
    let wait_param = json!({ "name": "wait", "in": "query",
        "schema": { "type": "string", "example": "10s" },
        "description": "How long to wait for the commit (default 30s, at most 60s)" });
    let error = json!({ "description": "Error", "content": { "application/json": { "schema":
        { "$ref": "#/components/schemas/Error" } } } });
    let value = json!({ "description": "The committed value and its certificate",
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Value" } } } });
    let write = |summary: &str| {
        json!({ "summary": summary, "security": [{ "bearer": [] }],
            "parameters": [key_param[0].clone(), wait_param.clone()],
            "responses": { "200": value, "202": { "description": "Not committed within the wait" },
                "401": error, "409": error, "413": error, "422": error } })
    };
    let mut document = json!({
        "openapi": "3.1.0",
        "info": { "title": "Beaufort node API", "version": env!("CARGO_PKG_VERSION") },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": {
                "Error": { "type": "object", "properties": { "error": { "type": "string" } } },
                "Value": { "type": "object", "properties": {
                    "key": { "type": "string" }, "value": { "type": ["string", "null"] },
                    "value_hex": { "type": ["string", "null"] }, "deleted": { "type": "boolean" },
                    "view": { "type": "integer" }, "round": { "type": "integer" },
                    "certificate": { "type": "object" } } },
                "Ticket": { "type": "object", "properties": {
                    "id": { "type": "string" }, "key": { "type": "string" }, "issuer": { "type": "integer" },
                    "points": { "type": "integer" }, "issued_points": { "type": "integer" },
                    "owner": { "type": "string" }, "status": { "enum": ["live", "redeemed"] },
                    "view": { "type": "integer" }, "round": { "type": "integer" }, "last": { "type": "object" } } }
            }
        },
        "paths": {
            "/v1/kv/{key}": {
                "get": { "summary": "Read a committed value with its certificate",
                    "parameters": key_param, "responses": { "200": value, "400": error, "404": error } },
                "put": write("Write a value (raw body); waits for the commit"),
                "delete": write("Delete a key (a tombstone through consensus)")
            },
            "/v1/kv": { "get": { "summary": "List committed keys by prefix",
                "parameters": [{ "name": "prefix", "in": "query", "schema": { "type": "string" } },
                    { "name": "limit", "in": "query", "schema": { "type": "integer", "maximum": 1000 } }],
                "responses": { "200": { "description": "Values in key order" } } } },
            "/v1/watch": { "get": { "summary": "Committed changes as server-sent events (event: change)",
                "parameters": [{ "name": "prefix", "in": "query", "schema": { "type": "string" } }],
                "responses": { "200": { "description": "text/event-stream" } } } },
            "/v1/status": { "get": { "summary": "Members, neighbours, excluded members, progress",
                "security": [{ "bearer": [] }],
                "responses": { "200": { "description": "Status" }, "401": error } } },
            "/v1/test/isolate": { "put": { "summary": "Test-only (node.test_controls): drop all traffic to and from the given members; an empty list heals",
                "security": [{ "bearer": [] }],
                "requestBody": { "content": { "application/json": { "schema": { "type": "object",
                    "properties": { "members": { "type": "array", "items": { "type": "integer" } } } } } } },
                "responses": { "200": { "description": "Isolated" }, "401": error, "404": error } } },
            "/metrics": { "get": { "summary": "Prometheus metrics",
                "responses": { "200": { "description": "OpenMetrics text" } } } },
            "/livez": { "get": { "summary": "Liveness (no token): 200 while the process serves HTTP",
                "responses": { "200": { "description": "{\"live\": true}" } } } },
            "/readyz": { "get": { "summary": "Readiness (no token): 200 when the store is open and the member has at least one neighbour",
                "responses": { "200": { "description": "{\"ready\": true, \"neighbours\": N}" },
                    "503": { "description": "Not ready: {\"ready\": false, \"reason\": \"no_neighbours\" | \"stopped\" | \"unresponsive\", \"error\": \"...\"}",
                        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } } } } },
            "/openapi.json": { "get": { "summary": "This document",
                "responses": { "200": { "description": "OpenAPI 3.1" } } } },
            "/v1/info": { "get": { "summary": "Which member this node is: {version, member, members, name, network, network_id}",
                "responses": { "200": { "description": "Info" } } } },
            "/v1/network": { "get": { "summary": "The public network description (what beaufort verify --network checks receipts against)",
                "responses": { "200": { "description": "network.json" } } } },
            "/v1/receipts/{key}": { "get": { "summary": "A committed value with its certificate and network id, to verify offline",
                "parameters": key_param, "responses": { "200": value, "400": error, "404": error } } }
        }
    });
    for paths in [
        loyalty::openapi_paths(&error),
        assets::openapi_paths(&error),
    ] {
        if let (Some(all), serde_json::Value::Object(more)) =
            (document["paths"].as_object_mut(), paths)
        {
            all.extend(more);
        }
    }
    document
}

/// Serves the API on the configured address until the future is dropped.
pub async fn serve(node: NodeHandle, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    serve_until(node, listener, std::future::pending()).await
}

/// Serves the API until `shutdown` resolves, then drains: stops accepting connections, ends
/// `/v1/watch` streams, lets every request in flight finish (a write may wait up to
/// [`MAX_WAIT`] for its commit, so a caller that cannot wait that long bounds this future), and
/// returns once every connection has closed.
pub async fn serve_until(
    node: NodeHandle,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let signal = async move {
        shutdown.await;
        let _ = stop.send(true);
    };
    axum::serve(conn::JsonErrorListener(listener), app(node, stopping))
        .with_graceful_shutdown(signal)
        .await
}

/// How long `/readyz` waits for the runtime's answer before calling the node not ready.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// Liveness: the process serves HTTP. No token, no call into the runtime, so a busy node is
/// not restarted for being busy.
async fn livez() -> Json<serde_json::Value> {
    Json(json!({ "live": true }))
}

/// Readiness: the runtime answers (so the store is open: the runtime stops when it fails) and
/// the member has at least one neighbour (without one, no write can commit and reads may be
/// stale). 503 with a reason code and an `error` text otherwise. No token: load balancers and
/// orchestrators probe it.
async fn readyz(State(node): State<NodeHandle>) -> Response {
    let not_ready = |reason: &str, error: String| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "ready": false, "reason": reason, "error": error })),
        )
            .into_response()
    };
    match tokio::time::timeout(READY_TIMEOUT, node.status()).await {
        Ok(Ok(status)) if !status.neighbours.is_empty() => Json(json!({
            "ready": true,
            "neighbours": status.neighbours.len(),
        }))
        .into_response(),
        Ok(Ok(_)) => not_ready(
            "no_neighbours",
            "not connected to any other member yet".into(),
        ),
        Ok(Err(e)) => not_ready("stopped", format!("the node's runtime is not running: {e}")),
        Err(_) => not_ready(
            "unresponsive",
            format!("the node's runtime did not answer within {READY_TIMEOUT:?}"),
        ),
    }
}

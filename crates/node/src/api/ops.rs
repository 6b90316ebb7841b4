//! Routes for operators and their tools: which member this is, the public network description,
//! status, metrics, health probes and the test-only isolation switch.

use super::{ApiError, ApiJson, ErrorBody};
use crate::NodeHandle;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use beaufort_core::types::MemberIndex;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::time::Duration;
use utoipa::ToSchema;

/// What `GET /v1/info` shows: which member this node is, for every page's header, and which
/// build and network, so an operator comparing members sees a mismatch at once.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Info {
    /// The node's version.
    pub version: String,
    /// This member's index (from 0).
    #[schema(value_type = u16)]
    pub member: MemberIndex,
    /// Number of members.
    pub members: usize,
    /// This member's display name.
    pub name: String,
    /// The consortium's name.
    pub network: String,
    /// The network id in hex.
    pub network_id: String,
    /// The oldest wire encoding version this build reads.
    pub wire_reads_from: u16,
    /// The newest wire encoding version this build reads.
    pub wire_reads_to: u16,
    /// The wire encoding version this member writes (`node.wire_version`, or the newest).
    pub wire_writes: u16,
}

/// Which member this node is: version, member index, display name, network and its id.
#[utoipa::path(get, path = "/v1/info", operation_id = "getInfo", tag = "meta",
    responses((status = 200, description = "This member", body = Info)))]
pub(super) async fn info(State(node): State<NodeHandle>) -> Json<Info> {
    let member = node.config().node.index;
    let entry = node.config().network.members.get(usize::from(member));
    Json(Info {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        member,
        members: node.membership().n(),
        name: entry
            .and_then(|e| e.name.clone())
            .unwrap_or_else(|| format!("member-{member}")),
        network: node.config().network.name.clone(),
        network_id: node.membership().network_id().to_hex(),
        wire_reads_from: beaufort_core::wire::MIN_WIRE_VERSION,
        wire_reads_to: beaufort_core::wire::WIRE_VERSION,
        wire_writes: node.config().node.writes_wire(),
    })
}

/// The public network description (member keys and addresses): what `beaufort verify
/// --network` checks receipts against.
#[utoipa::path(get, path = "/v1/network", operation_id = "getNetwork", tag = "meta",
    responses((status = 200, description = "network.json", body = crate::config::NetworkSection)))]
pub(super) async fn network(State(node): State<NodeHandle>) -> Response {
    (
        [(
            header::CONTENT_DISPOSITION,
            "attachment; filename=\"network.json\"",
        )],
        Json(node.config().network.clone()),
    )
        .into_response()
}

/// What this member holds, summarised for comparison with the other members: certified state
/// per key prefix (keys, decisions learnt, digest), its Merkle root, neighbours, the members it
/// holds proof against, and keys it sits out after a restore. No token: `beaufort doctor` reads
/// it from every member with nothing but the network file.
#[utoipa::path(get, path = "/v1/digest", operation_id = "getDigest", tag = "meta",
    responses(
        (status = 200, description = "This member's holdings, summarised", body = crate::digest::StoreDigest),
        (status = 503, description = "The runtime has stopped", body = ErrorBody)))]
pub(super) async fn digest(
    State(node): State<NodeHandle>,
) -> Result<Json<crate::digest::StoreDigest>, ApiError> {
    Ok(Json(node.digest().await?))
}

/// Members, neighbours, excluded members and the progress of pending writes.
#[utoipa::path(get, path = "/v1/status", operation_id = "getStatus", tag = "operator",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Status", body = crate::Status),
        (status = 401, description = "No or a wrong operator token", body = ErrorBody),
        (status = 503, description = "The runtime has stopped", body = ErrorBody)))]
pub(super) async fn status(
    State(node): State<NodeHandle>,
) -> Result<Json<crate::Status>, ApiError> {
    Ok(Json(node.status().await?))
}

/// Body of the test-only isolate route.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct IsolateBody {
    /// Members whose traffic is dropped (empty heals).
    #[schema(value_type = Vec<u16>)]
    members: BTreeSet<MemberIndex>,
}

/// The members isolated now.
#[derive(Serialize, ToSchema)]
pub(super) struct Isolated {
    /// Members whose traffic is dropped.
    #[schema(value_type = Vec<u16>)]
    isolated: BTreeSet<MemberIndex>,
}

/// Test-only (`node.test_controls`): drop all traffic to and from the given members; an empty
/// list heals.
#[utoipa::path(put, path = "/v1/test/isolate", operation_id = "isolateMembers", tag = "operator",
    security(("bearer" = [])),
    request_body = IsolateBody,
    responses(
        (status = 200, description = "Isolated", body = Isolated),
        (status = 400, description = "The body is not the documented JSON", body = ErrorBody),
        (status = 401, description = "No or a wrong operator token", body = ErrorBody),
        (status = 404, description = "Test controls are disabled in this node's configuration", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 415, description = "The body is not declared as application/json", body = ErrorBody),
        (status = 503, description = "The runtime has stopped", body = ErrorBody)))]
pub(super) async fn isolate(
    State(node): State<NodeHandle>,
    ApiJson(body): ApiJson<IsolateBody>,
) -> Result<Json<Isolated>, ApiError> {
    if !node.config().node.test_controls {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            "test controls are disabled in this node's configuration".into(),
        ));
    }
    node.isolate(body.members.clone()).await?;
    Ok(Json(Isolated {
        isolated: body.members,
    }))
}

/// Prometheus metrics (OpenMetrics text).
#[utoipa::path(get, path = "/metrics", operation_id = "getMetrics", tag = "meta",
    responses((status = 200, description = "OpenMetrics text",
        content_type = "application/openmetrics-text", body = String)))]
pub(super) async fn metrics(State(node): State<NodeHandle>) -> Response {
    node.sample_gauges().await;
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        node.metrics().render(),
    )
        .into_response()
}

/// How long `/readyz` waits for the runtime's answer before calling the node not ready.
const READY_TIMEOUT: Duration = Duration::from_secs(2);
/// Silence from every neighbour after which `/readyz` calls the member lagging: each neighbour
/// sends at least one message a second (anti-entropy), so five seconds is no hiccup.
const LAGGING_AFTER: Duration = Duration::from_secs(5);

/// The answer of `/livez`.
#[derive(Serialize, ToSchema)]
pub(super) struct Live {
    /// Always true: the process serves.
    live: bool,
}

/// Liveness: the process serves HTTP. No token, no call into the runtime, so a busy node is
/// not restarted for being busy.
#[utoipa::path(get, path = "/livez", operation_id = "livez", tag = "meta",
    responses((status = 200, description = "The process serves HTTP", body = Live)))]
pub(super) async fn livez() -> Json<Live> {
    Json(Live { live: true })
}

/// The answer of `/readyz` when ready.
#[derive(Serialize, ToSchema)]
pub(super) struct Ready {
    /// Always true.
    ready: bool,
    /// Connected neighbours.
    neighbours: usize,
}

/// The answer of `/readyz` when not ready: an error body with a reason code.
#[derive(Serialize, ToSchema)]
pub(super) struct NotReady {
    /// Always false.
    ready: bool,
    /// `no_neighbours`, `lagging`, `stopped` or `unresponsive`.
    reason: &'static str,
    /// The reason in words.
    error: String,
}

/// Readiness: the runtime answers (so the store is open: the runtime stops when it fails), the
/// member has at least one neighbour (without one, no write can commit and reads may be
/// stale), and it is not lagging: some neighbour sent something within the last five seconds
/// (each sends at least once a second). 503 with a reason code and an `error` text otherwise. No token: load balancers and
/// orchestrators probe it.
#[utoipa::path(get, path = "/readyz", operation_id = "readyz", tag = "meta",
    responses(
        (status = 200, description = "Ready", body = Ready),
        (status = 503, description = "Not ready", body = NotReady)))]
pub(super) async fn readyz(State(node): State<NodeHandle>) -> Response {
    let not_ready = |reason: &'static str, error: String| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(NotReady {
                ready: false,
                reason,
                error,
            }),
        )
            .into_response()
    };
    match tokio::time::timeout(READY_TIMEOUT, node.status()).await {
        Ok(Ok(status)) if status.neighbours.is_empty() => not_ready(
            "no_neighbours",
            "not connected to any other member yet".into(),
        ),
        Ok(Ok(status)) if status.silent_ms > LAGGING_AFTER.as_millis() as u64 => not_ready(
            "lagging",
            format!(
                "connected to {} members but none has sent anything for {} s: this member no \
                 longer hears the consortium",
                status.neighbours.len(),
                status.silent_ms / 1000
            ),
        ),
        Ok(Ok(status)) => Json(Ready {
            ready: true,
            neighbours: status.neighbours.len(),
        })
        .into_response(),
        Ok(Err(e)) => not_ready("stopped", format!("the node's runtime is not running: {e}")),
        Err(_) => not_ready(
            "unresponsive",
            format!("the node's runtime did not answer within {READY_TIMEOUT:?}"),
        ),
    }
}

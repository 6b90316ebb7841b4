//! Key-value routes: read, write and delete one key, list by prefix page by page, watch
//! committed changes as server-sent events, and receipts to verify offline.

use super::{ApiError, ErrorBody, Stopping, DEFAULT_WAIT, MAX_WAIT};
use crate::{Change, NodeError, NodeHandle, Watched};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use beaufort_core::state::Certified;
use beaufort_core::types::{Key, Value};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use std::convert::Infallible;
use std::time::Duration;
use utoipa::{IntoParams, ToSchema};

/// A committed value as the API returns it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
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
    /// The quorum certificate (signer multiset and aggregate BLS signature).
    #[schema(schema_with = super::schema::certificate)]
    pub certificate: beaufort_crypto::qc::QuorumCertificate,
}

impl ValueView {
    /// The API form of a certified value.
    pub fn new(key: &Key, certified: &Certified) -> ValueView {
        let data = certified.value.as_data();
        ValueView {
            key: crate::key_text(key),
            value: beaufort_receipt::value_text(data),
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
        beaufort_receipt::ValueFields {
            key: &self.key,
            value: self.value.as_deref(),
            value_hex: self.value_hex.as_deref(),
            deleted: self.deleted,
            view: self.view,
            round: self.round,
            certificate: &self.certificate,
        }
        .certified()
        .map_err(|e| e.to_string())
    }
}

/// A committed value with everything needed to check it offline: the network it belongs to and
/// its certificate.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Receipt {
    /// The network id (hex) the certificate's signers belong to.
    pub network_id: String,
    /// The value and its certificate.
    #[serde(flatten)]
    pub value: ValueView,
}

/// The answer of a write that did not commit within its wait: it may still commit.
#[derive(Serialize, ToSchema)]
pub(crate) struct PendingBody {
    /// Always `pending`.
    status: &'static str,
    /// The key written.
    key: String,
}

pub(super) fn parse_key(key: String) -> Result<Key, ApiError> {
    Key::new(key.into_bytes()).map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.to_string()))
}

/// Read a committed value with its certificate.
#[utoipa::path(get, path = "/v1/kv/{*key}", operation_id = "getValue", tag = "kv",
    params(("key" = String, Path, description = "The key (at most 256 bytes; may contain /)")),
    responses(
        (status = 200, description = "The committed value and its certificate", body = ValueView),
        (status = 400, description = "The key is too long", body = ErrorBody),
        (status = 404, description = "The key has no value", body = ErrorBody),
        (status = 503, description = "The runtime has stopped", body = ErrorBody)))]
pub(super) async fn get_value(
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
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct WaitQuery {
    /// How long to wait for the commit, e.g. `10s` or `500ms` (default 30s, at most 60s).
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
                Json(PendingBody {
                    status: "pending",
                    key: crate::key_text(&key),
                }),
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

/// Write a value (the raw request body, any content type) and wait for its commit.
#[utoipa::path(put, path = "/v1/kv/{*key}", operation_id = "putValue", tag = "kv",
    security(("bearer" = [])),
    params(("key" = String, Path, description = "The key (at most 256 bytes; may contain /)"), WaitQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream",
        description = "The value's bytes (at most 64 KiB)"),
    responses(
        (status = 200, description = "Committed: the value and its certificate", body = ValueView),
        (status = 202, description = "Not committed within the wait; it may still commit", body = PendingBody),
        (status = 400, description = "The key is too long or wait is not a duration", body = ErrorBody),
        (status = 401, description = "No or a wrong operator token", body = ErrorBody),
        (status = 409, description = "Another value was committed instead", body = ErrorBody),
        (status = 413, description = "The value is too large", body = ErrorBody),
        (status = 422, description = "The validation hook refuses the value (e.g. a write-once key)", body = ErrorBody),
        (status = 429, description = "Too many writes are waiting", body = ErrorBody),
        (status = 503, description = "The runtime has stopped", body = ErrorBody)))]
pub(super) async fn put_value(
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

/// Delete a key: a tombstone goes through consensus like any write.
#[utoipa::path(delete, path = "/v1/kv/{*key}", operation_id = "deleteValue", tag = "kv",
    security(("bearer" = [])),
    params(("key" = String, Path, description = "The key (at most 256 bytes; may contain /)"), WaitQuery),
    responses(
        (status = 200, description = "Committed: the tombstone and its certificate", body = ValueView),
        (status = 202, description = "Not committed within the wait; it may still commit", body = PendingBody),
        (status = 400, description = "The key is too long or wait is not a duration", body = ErrorBody),
        (status = 401, description = "No or a wrong operator token", body = ErrorBody),
        (status = 409, description = "Another value was committed instead", body = ErrorBody),
        (status = 422, description = "The validation hook refuses the delete", body = ErrorBody),
        (status = 429, description = "Too many writes are waiting", body = ErrorBody),
        (status = 503, description = "The runtime has stopped", body = ErrorBody)))]
pub(super) async fn delete_value(
    State(node): State<NodeHandle>,
    Path(key): Path<String>,
    Query(wait): Query<WaitQuery>,
) -> Response {
    match parse_key(key) {
        Ok(key) => write(node, key, Value::Tombstone, wait).await,
        Err(e) => e.into_response(),
    }
}

/// Query of the listing.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ListQuery {
    /// Only keys starting with this.
    #[serde(default)]
    prefix: String,
    /// At most this many values (default 100, at most 1000).
    #[param(minimum = 0, maximum = 1000)]
    limit: Option<usize>,
    /// Only keys after this one: pass the last key of a page to get the next page.
    after: Option<String>,
}

/// List committed (not deleted) keys by prefix, in key order, one page at a time.
#[utoipa::path(get, path = "/v1/kv", operation_id = "listValues", tag = "kv",
    params(ListQuery),
    responses(
        (status = 200, description = "Values in key order; fewer than limit means the listing is complete", body = Vec<ValueView>),
        (status = 400, description = "limit is not a number or after is too long", body = ErrorBody),
        (status = 503, description = "The runtime has stopped", body = ErrorBody)))]
pub(super) async fn list(
    State(node): State<NodeHandle>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<ValueView>>, ApiError> {
    let limit = q.limit.unwrap_or(100).min(crate::runtime::MAX_LIST);
    let after = q.after.map(parse_key).transpose()?;
    let items = node.list_after(q.prefix, after, limit).await?;
    Ok(Json(
        items.iter().map(|(k, c)| ValueView::new(k, c)).collect(),
    ))
}

/// Query of the watch route.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct WatchQuery {
    /// Only keys starting with this.
    #[serde(default)]
    prefix: String,
}

/// What a `lagged` event carries.
#[derive(Serialize)]
struct Lagged {
    /// How many changes (of any key) were missed, when known; null when unknown.
    missed: Option<u64>,
}

/// Committed changes as server-sent events. Each `change` event carries an `id:` and, as data,
/// the value as `getValue` shows it; a client that reconnects with `Last-Event-ID` (browsers'
/// EventSource do so by themselves) first gets the changes it missed. Where changes cannot be
/// replayed (the listener fell behind, or the id is no longer kept or from before a restart) a
/// `lagged` event says so: re-read what you follow.
#[utoipa::path(get, path = "/v1/watch", operation_id = "watchChanges", tag = "kv",
    params(WatchQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "The id of the last change seen, to resume after it")),
    responses(
        (status = 200, description = "A stream of `change` events (with an id; data: a ValueView) and `lagged` events (data: {\"missed\": number or null})",
            content_type = "text/event-stream", body = String),
        (status = 400, description = "The query does not parse", body = ErrorBody)))]
pub(super) async fn watch(
    State(node): State<NodeHandle>,
    axum::Extension(stopping): axum::Extension<Stopping>,
    headers: axum::http::HeaderMap,
    Query(q): Query<WatchQuery>,
) -> Sse<impl futures::Stream<Item = Result<Event, Infallible>>> {
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let stream = node
        .listen(q.prefix, resume.as_deref())
        .map(|watched| {
            Ok(match watched {
                Watched::Item {
                    id,
                    item: Change { key, certified },
                } => Event::default()
                    .id(id)
                    .event("change")
                    .json_data(ValueView::new(&key, &certified)),
                Watched::Lagged { missed } => Event::default()
                    .event("lagged")
                    .json_data(Lagged { missed }),
            }
            .unwrap_or_else(|_| Event::default().event("error")))
        })
        // A watch never ends by itself, so a drain would otherwise wait on it until its limit.
        .take_until(stopping.wait());
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// A committed value with its certificate and network id, to verify offline (`beaufort verify`).
#[utoipa::path(get, path = "/v1/receipts/{*key}", operation_id = "getReceipt", tag = "kv",
    params(("key" = String, Path, description = "The key (at most 256 bytes; may contain /)")),
    responses(
        (status = 200, description = "The receipt", body = Receipt),
        (status = 400, description = "The key is too long", body = ErrorBody),
        (status = 404, description = "The key has no value", body = ErrorBody),
        (status = 503, description = "The runtime has stopped", body = ErrorBody)))]
pub(super) async fn receipt(
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

//! Routes for backup and restore: `GET /v1/backup` streams a consistent backup of the member's
//! store while it runs (operator), and `GET /v1/views` lists the view each key has open here,
//! which `beaufort restore` gathers from every member to fence the restored one.
//!
//! Why an API route rather than copying the store file: redb locks its file for the process that
//! has it open and a copy taken during a write is torn; a read transaction inside the node sees
//! one committed version of the whole store while the runtime keeps writing, so the backup is
//! consistent without stopping the member, and it travels as a checked file
//! (`beaufort_store::backup`).

use super::{ApiError, ErrorBody};
use crate::NodeHandle;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use beaufort_core::types::Key;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use utoipa::{IntoParams, ToSchema};

/// Bytes gathered before a chunk of the backup is handed to the connection.
const CHUNK: usize = 64 * 1024;
/// Chunks in flight between the reading thread and the connection: the backup's memory bound.
const CHUNKS_IN_FLIGHT: usize = 4;

/// Hands what the store writes to the response body in chunks, waiting when the client reads
/// slower than the store (a blocking thread writes it).
struct ChunkWriter {
    buffer: Vec<u8>,
    chunks: mpsc::Sender<Result<Bytes, std::io::Error>>,
}

impl ChunkWriter {
    fn hand_over(&mut self) -> std::io::Result<()> {
        let chunk = Bytes::from(std::mem::take(&mut self.buffer));
        self.chunks
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))
    }
}

impl std::io::Write for ChunkWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        if self.buffer.len() >= CHUNK {
            self.hand_over()?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        self.hand_over()
    }
}

/// A consistent backup of this member's store, taken while it runs: a binary file
/// `beaufort restore` reads (it checks its own hash, so an interrupted download is refused). A
/// failure half-way cuts the connection, so a broken backup never looks complete.
#[utoipa::path(get, path = "/v1/backup", operation_id = "getBackup", tag = "operator",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The backup file", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 401, description = "No or a wrong operator token", body = ErrorBody)))]
pub(super) async fn backup(State(node): State<NodeHandle>) -> Response {
    let (chunks, body) = mpsc::channel(CHUNKS_IN_FLIGHT);
    tokio::task::spawn_blocking(move || {
        let mut out = ChunkWriter {
            buffer: Vec::with_capacity(CHUNK),
            chunks: chunks.clone(),
        };
        if let Err(error) = node.backup(&mut out) {
            tracing::error!(%error, "backup failed");
            let _ = chunks.blocking_send(Err(std::io::Error::other(error.to_string())));
        }
    });
    (
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"beaufort.backup\"",
            ),
        ],
        Body::from_stream(ReceiverStream::new(body)),
    )
        .into_response()
}

/// Query of the views listing.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ViewsQuery {
    /// At most this many keys (default 1000, at most 1000).
    #[param(minimum = 0, maximum = 1000)]
    limit: Option<usize>,
    /// Only keys after this one, in hex: the `key_hex` of the last entry of a page.
    after: Option<String>,
}

/// One key's open view at this member.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OpenView {
    /// The key's bytes in hex (exact, whatever the bytes).
    pub key_hex: String,
    /// The view this member has open for the key (the one being decided).
    pub view: u64,
}

/// Every key this member holds with the view it has open for it, in key order, one page at a
/// time (fewer than `limit` means the listing is complete). `beaufort restore` reads it from
/// every other member: a restored member sits out each key up to the highest view any of them
/// has open.
#[utoipa::path(get, path = "/v1/views", operation_id = "listViews", tag = "meta",
    params(ViewsQuery),
    responses(
        (status = 200, description = "Keys and their open views, in key order", body = Vec<OpenView>),
        (status = 400, description = "limit is not a number, or after is not a key in hex", body = ErrorBody),
        (status = 503, description = "The runtime has stopped", body = ErrorBody)))]
pub(super) async fn views(
    State(node): State<NodeHandle>,
    Query(q): Query<ViewsQuery>,
) -> Result<Json<Vec<OpenView>>, ApiError> {
    let limit = q.limit.unwrap_or(crate::runtime::MAX_LIST);
    let after = match q.after {
        None => None,
        Some(text) => {
            let refused = |why: String| ApiError(StatusCode::BAD_REQUEST, why);
            let bytes = hex::decode(&text).map_err(|e| refused(format!("after: {e}")))?;
            Some(Key::new(bytes).map_err(|e| refused(format!("after: {e}")))?)
        }
    };
    let views = node.open_views(after, limit).await?;
    Ok(Json(
        views
            .into_iter()
            .map(|(key, view)| OpenView {
                key_hex: hex::encode(key.as_bytes()),
                view,
            })
            .collect(),
    ))
}

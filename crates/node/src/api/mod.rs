//! The HTTP API (axum): key-value routes, a prefix listing, server-sent events of committed
//! changes, status, Prometheus metrics, the applications' routes and an OpenAPI description of
//! every route, generated from the handlers and their types (utoipa): each handler is registered
//! at the path its documentation names, so the router and the document cannot drift apart.
//!
//! Writes and the status page are operator routes: they need `Authorization: Bearer <token>` with
//! the token from the node's configuration (the scheme name in any case, RFC 9110). Every error is
//! a 4xx/5xx with a JSON body `{"error": "..."}`; request bodies are limited to the largest value,
//! keys to the core's bound.
//!
//! One rule separates 400 from 422: **400** when the request itself does not match the document
//! (unparsable JSON, a missing or unknown field, a wrong type, a parameter outside its documented
//! form or range, such as 0 points or an amount of 0), which no state of the store could make
//! valid; **422** when a well-formed request is refused by the rules of the application for the
//! current state (more points than the ticket holds, a contract's guard, a script that does not
//! compile, the validation hook).

mod assets;
mod backup;
pub(crate) mod conn;
mod kv;
mod loyalty;
mod openapi;
mod ops;
pub(crate) mod schema;
mod web;

pub use backup::OpenView;
pub use kv::{Receipt, ValueView};
pub use loyalty::TicketView;
pub use ops::Info;

use crate::{NodeError, NodeHandle};
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Request};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use beaufort_core::types::MAX_VALUE_LEN;
use serde::Serialize;
use std::time::Duration;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Longest a write request waits for its commit before answering 202 (pending).
pub const MAX_WAIT: Duration = Duration::from_secs(60);
/// Default wait of a write request.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(30);

/// The body of every error answer, so clients handle one shape.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong, in words.
    pub error: String,
}

/// An error answer.
pub(crate) struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(ErrorBody { error: self.1 })).into_response()
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

/// A JSON request body whose refusals follow the API's rule: 415 without a JSON content type,
/// 413 over the size limit, 400 for anything that does not parse as the documented type
/// (axum's own extractor answers 422 for a wrong type or a missing field, which the rule keeps
/// for refusals by the application).
pub(crate) struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => {
                let status = match &rejection {
                    JsonRejection::MissingJsonContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    JsonRejection::JsonDataError(_) | JsonRejection::JsonSyntaxError(_) => {
                        StatusCode::BAD_REQUEST
                    }
                    other => other.status(),
                };
                Err(ApiError(status, rejection.body_text()))
            }
        }
    }
}

/// The router for a node, serving until the process ends (see [`serve_until`] for a drain).
pub fn router(node: NodeHandle) -> Router {
    // The sender is dropped at once: watch streams then never end on their own.
    let (_, stopping) = tokio::sync::watch::channel(false);
    app(node, stopping)
}

/// The OpenAPI 3.1 description of every route, as `GET /openapi.json` serves it.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    openapi::finish(routes().split_for_parts().1)
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

/// Every route with its documentation; the only place a route is added.
fn routes() -> OpenApiRouter<NodeHandle> {
    let operator = OpenApiRouter::default()
        .routes(routes!(kv::put_value, kv::delete_value))
        .routes(routes!(ops::status))
        .routes(routes!(loyalty::issue))
        .routes(routes!(assets::propose_contract))
        .routes(routes!(assets::endorse_contract))
        .routes(routes!(ops::isolate))
        .routes(routes!(backup::backup))
        .route_layer(middleware::from_fn(require_token));
    OpenApiRouter::default()
        .routes(routes!(kv::get_value))
        .routes(routes!(kv::list))
        .routes(routes!(kv::watch))
        .routes(routes!(ops::info))
        .routes(routes!(ops::network))
        .routes(routes!(kv::receipt))
        .routes(routes!(loyalty::list))
        .routes(routes!(loyalty::get))
        .routes(routes!(loyalty::challenge))
        .routes(routes!(loyalty::redeem))
        .routes(routes!(loyalty::transfer))
        .routes(routes!(assets::list_contracts))
        .routes(routes!(assets::list_assets))
        .routes(routes!(assets::get_asset))
        .routes(routes!(assets::challenge))
        .routes(routes!(assets::transition))
        .routes(routes!(web::dashboard))
        .routes(routes!(web::wallet))
        .routes(routes!(web::eshare))
        .routes(routes!(web::eloan))
        .routes(routes!(web::verify))
        .routes(routes!(web::member))
        .routes(routes!(web::file))
        .routes(routes!(ops::metrics))
        .routes(routes!(openapi::serve))
        .routes(routes!(ops::livez))
        .routes(routes!(ops::readyz))
        .routes(routes!(backup::views))
        .routes(routes!(ops::digest))
        .merge(operator)
}

fn app(node: NodeHandle, stopping: tokio::sync::watch::Receiver<bool>) -> Router {
    let (router, document) = routes().split_for_parts();
    router
        .fallback(|| async { ApiError(StatusCode::NOT_FOUND, "no such route".into()) })
        .layer(axum::Extension(Stopping(stopping)))
        .layer(axum::Extension(OperatorToken(
            node.config().node.api_token.as_str().into(),
        )))
        .layer(axum::Extension(openapi::Document::new(openapi::finish(
            document,
        ))))
        .layer(DefaultBodyLimit::max(MAX_VALUE_LEN))
        .layer(middleware::from_fn(json_errors))
        .layer(middleware::from_fn(cors))
        .with_state(node)
}

/// The operator token a request carries, if any: `Authorization: <scheme> <token>` with the
/// scheme `Bearer` in any case (RFC 9110 §11.1: scheme names are case-insensitive).
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_start_matches(' '))
}

/// The operator token of this node, handed to [`require_token`] as a request extension so the
/// routes (and their document) can be built without a node.
#[derive(Clone)]
struct OperatorToken(std::sync::Arc<str>);

async fn require_token(
    axum::Extension(OperatorToken(token)): axum::Extension<OperatorToken>,
    headers: HeaderMap,
    request: Request,
    next: Next,
) -> Response {
    let expected = token.as_bytes();
    let given = bearer_token(&headers).unwrap_or("").as_bytes();
    if !constant_time_eq(given, expected) {
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
                (
                    header::ACCESS_CONTROL_ALLOW_HEADERS,
                    "content-type, last-event-id",
                ),
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

/// Gives every error the same shape, `{"error": "..."}`: axum's own rejections (a bad query
/// string, a method the route does not have, a body over the limit) answer in plain text, which
/// clients and the web app would otherwise have to special-case.
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
    serve_tls_until(node, listener, None, shutdown).await
}

/// As [`serve_until`], over HTTPS when `tls` is given (see [`crate::tls::server_config`]): only
/// connections whose TLS handshake completed reach the API, and the drain is the same.
pub async fn serve_tls_until(
    node: NodeHandle,
    listener: tokio::net::TcpListener,
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let signal = async move {
        shutdown.await;
        let _ = stop.send(true);
    };
    let app = app(node, stopping);
    match tls {
        None => {
            axum::serve(conn::JsonErrorListener(listener), app)
                .with_graceful_shutdown(signal)
                .await
        }
        Some(config) => {
            axum::serve(crate::tls::TlsListener::new(listener, config), app)
                .with_graceful_shutdown(signal)
                .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            axum::http::HeaderValue::from_str(value).expect("header"),
        );
        headers
    }

    #[test]
    fn the_bearer_scheme_name_is_case_insensitive() {
        for value in ["Bearer abc", "bearer abc", "BEARER abc", "bEaReR  abc"] {
            assert_eq!(bearer_token(&auth(value)), Some("abc"), "{value}");
        }
    }

    #[test]
    fn other_schemes_and_malformed_headers_carry_no_token() {
        for value in ["Basic abc", "Bearerabc", "abc", "Token abc"] {
            assert_eq!(bearer_token(&auth(value)), None, "{value}");
        }
        assert_eq!(bearer_token(&HeaderMap::new()), None);
    }
}

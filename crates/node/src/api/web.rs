//! The web app each node serves: a merchant dashboard, a customer wallet and the eShare page.
//! Plain HTML, CSS and JavaScript modules compiled into the binary, so there is no build step
//! and the pages always match the node's API version.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// Every file of the app: name, content type, content.
const FILES: &[(&str, &str, &str)] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("../../web/index.html"),
    ),
    (
        "wallet.html",
        "text/html; charset=utf-8",
        include_str!("../../web/wallet.html"),
    ),
    (
        "eshare.html",
        "text/html; charset=utf-8",
        include_str!("../../web/eshare.html"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../../web/app.css"),
    ),
    (
        "common.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/common.js"),
    ),
    (
        "merchant.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/merchant.js"),
    ),
    (
        "wallet.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/wallet.js"),
    ),
    (
        "eshare.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/eshare.js"),
    ),
];

/// Only this node's own scripts and styles: no inline script, no third-party code, so an injected
/// string can never run as code. The API calls may go to other members (a wallet redeems at
/// another merchant's node), so `connect-src` allows any http(s) origin.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self' http: https:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

fn serve(name: &str) -> Response {
    match FILES.iter().find(|(file, _, _)| *file == name) {
        Some((_, content_type, body)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such file").into_response(),
    }
}

/// The routes of the web app.
pub(super) fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { serve("index.html") }))
        .route("/wallet", get(|| async { serve("wallet.html") }))
        .route("/eshare", get(|| async { serve("eshare.html") }))
        .route(
            "/web/{file}",
            get(|Path(file): Path<String>| async move { serve(&file) }),
        )
}

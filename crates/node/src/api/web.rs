//! The web app each node serves: a merchant dashboard, a customer wallet and the eShare page.
//! Plain HTML, CSS and JavaScript modules compiled into the binary, so there is no build step
//! and the pages always match the node's API version.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

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
        None => super::ApiError(StatusCode::NOT_FOUND, format!("no file {name}")).into_response(),
    }
}

/// The merchant dashboard: issue points, the live feed of commits, the network's status.
#[utoipa::path(get, path = "/", operation_id = "dashboardPage", tag = "web",
    responses((status = 200, description = "The page", content_type = "text/html", body = String)))]
pub(super) async fn dashboard() -> Response {
    serve("index.html")
}

/// The customer wallet: a key pair in the browser, tickets, balance, redemption at any member.
#[utoipa::path(get, path = "/wallet", operation_id = "walletPage", tag = "web",
    responses((status = 200, description = "The page", content_type = "text/html", body = String)))]
pub(super) async fn wallet() -> Response {
    serve("wallet.html")
}

/// The eShare page: tools and their states.
#[utoipa::path(get, path = "/eshare", operation_id = "esharePage", tag = "web",
    responses((status = 200, description = "The page", content_type = "text/html", body = String)))]
pub(super) async fn eshare() -> Response {
    serve("eshare.html")
}

/// A file of the web app (scripts, styles).
#[utoipa::path(get, path = "/web/{file}", operation_id = "webFile", tag = "web",
    params(("file" = String, Path, description = "The file's name")),
    responses(
        (status = 200, description = "The file", content_type = "text/javascript", body = String),
        (status = 400, description = "The name is not UTF-8", body = super::ErrorBody),
        (status = 404, description = "No such file", body = super::ErrorBody)))]
pub(super) async fn file(Path(file): Path<String>) -> Response {
    serve(&file)
}

//! The web app each node serves: a merchant dashboard, a customer wallet, the eShare and eLoan
//! pages and the receipt verifier. Plain HTML, CSS and JavaScript modules compiled into the
//! binary, so the pages always match the node's API version. Their API client (client.js) is
//! compiled from TypeScript whose types come from the OpenAPI document (crates/node/web-ts); the
//! verifier's WebAssembly module is built from this workspace's sources by the crate's build
//! script (build.rs) and compiled in the same way.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

/// Every file of the app: name, content type, content.
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("../../web/index.html"),
    ),
    (
        "wallet.html",
        "text/html; charset=utf-8",
        include_bytes!("../../web/wallet.html"),
    ),
    (
        "eshare.html",
        "text/html; charset=utf-8",
        include_bytes!("../../web/eshare.html"),
    ),
    (
        "eloan.html",
        "text/html; charset=utf-8",
        include_bytes!("../../web/eloan.html"),
    ),
    (
        "verify.html",
        "text/html; charset=utf-8",
        include_bytes!("../../web/verify.html"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../../web/app.css"),
    ),
    // The typed API client, compiled from crates/node/web-ts/client.ts (its types come from this
    // node's OpenAPI document; scripts/check-web-client.sh checks that it is current).
    (
        "client.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../web/client.js"),
    ),
    (
        "common.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../web/common.js"),
    ),
    (
        "merchant.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../web/merchant.js"),
    ),
    (
        "wallet.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../web/wallet.js"),
    ),
    (
        "eshare.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../web/eshare.js"),
    ),
    (
        "eloan.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../web/eloan.js"),
    ),
    (
        "member.html",
        "text/html; charset=utf-8",
        include_bytes!("../../web/member.html"),
    ),
    (
        "member.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../web/member.js"),
    ),
    (
        "verify.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../web/verify.js"),
    ),
    // The receipt verifier compiled to WebAssembly and its wasm-bindgen glue, built by build.rs
    // (a module that throws with the reason when this node was built without the tools).
    (
        "beaufort_wasm.js",
        "text/javascript; charset=utf-8",
        include_bytes!(concat!(env!("OUT_DIR"), "/wasm/beaufort_wasm.js")),
    ),
    (
        "beaufort_wasm_bg.wasm",
        "application/wasm",
        include_bytes!(concat!(env!("OUT_DIR"), "/wasm/beaufort_wasm_bg.wasm")),
    ),
    // The browser member (crates/browser), for /member.
    (
        "beaufort_browser.js",
        "text/javascript; charset=utf-8",
        include_bytes!(concat!(env!("OUT_DIR"), "/wasm/beaufort_browser.js")),
    ),
    (
        "beaufort_browser_bg.wasm",
        "application/wasm",
        include_bytes!(concat!(env!("OUT_DIR"), "/wasm/beaufort_browser_bg.wasm")),
    ),
];

/// Only this node's own scripts and styles: no inline script, no third-party code, so an injected
/// string can never run as code. The API calls may go to other members (a wallet redeems at
/// another merchant's node), so `connect-src` allows any http(s) origin.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self' http: https:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/// The wallet's and the dashboard's policy: the same, plus `'wasm-unsafe-eval'`, without which the
/// browser refuses to compile the WebAssembly module that draws the wallet's QR code and reads it
/// back on the dashboard. Still no inline or foreign script.
const WASM_CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; img-src 'self' data:; connect-src 'self' http: https:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/// The `/verify` page's policy: the same, plus `'wasm-unsafe-eval'`, without which the browser
/// refuses to compile the verifier's WebAssembly. It still runs no inline or foreign script, and
/// it reaches only its own node (`connect-src 'self'`): it never needs another.
const VERIFY_CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/// The browser member's policy: its own scripts and WebAssembly, its node's API, and WebSocket
/// connections to any member (`ws:`/`wss:`), which is how it reaches the consortium.
const MEMBER_CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; img-src 'self' data:; connect-src 'self' ws: wss:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

fn serve(name: &str) -> Response {
    serve_with(name, CONTENT_SECURITY_POLICY)
}

fn serve_with(name: &str, policy: &'static str) -> Response {
    match FILES.iter().find(|(file, _, _)| *file == name) {
        Some((_, content_type, body)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CONTENT_SECURITY_POLICY, policy),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *body,
        )
            .into_response(),
        None => super::ApiError(StatusCode::NOT_FOUND, format!("no file {name}")).into_response(),
    }
}

/// The merchant dashboard: issue points (the customer's key scanned from a QR code), the live
/// feed of commits, the network's status.
#[utoipa::path(get, path = "/", operation_id = "dashboardPage", tag = "web",
    responses((status = 200, description = "The page", content_type = "text/html", body = String)))]
pub(super) async fn dashboard() -> Response {
    serve_with("index.html", WASM_CONTENT_SECURITY_POLICY)
}

/// The customer wallet: a key pair in the browser (shown as a QR code, exported and imported
/// under a passphrase), tickets, balance, redemption at any member.
#[utoipa::path(get, path = "/wallet", operation_id = "walletPage", tag = "web",
    responses((status = 200, description = "The page", content_type = "text/html", body = String)))]
pub(super) async fn wallet() -> Response {
    serve_with("wallet.html", WASM_CONTENT_SECURITY_POLICY)
}

/// The eShare page: tools and their states.
#[utoipa::path(get, path = "/eshare", operation_id = "esharePage", tag = "web",
    responses((status = 200, description = "The page", content_type = "text/html", body = String)))]
pub(super) async fn eshare() -> Response {
    serve("eshare.html")
}

/// The eLoan page: invoices registered once, pledged to one lender, released when repaid.
#[utoipa::path(get, path = "/eloan", operation_id = "eloanPage", tag = "web",
    responses((status = 200, description = "The page", content_type = "text/html", body = String)))]
pub(super) async fn eloan() -> Response {
    serve("eloan.html")
}

/// The receipt verifier: a receipt (pasted, from a file, or this node's for `?key=`) is checked in
/// the browser by the WebAssembly build of the code `beaufort verify` runs, against the network's
/// member keys, and its value is shown only when the check passed.
#[utoipa::path(get, path = "/verify", operation_id = "verifyPage", tag = "web",
    responses((status = 200, description = "The page", content_type = "text/html", body = String)))]
pub(super) async fn verify() -> Response {
    serve_with("verify.html", VERIFY_CONTENT_SECURITY_POLICY)
}

/// This browser as a member: the member's keys are imported once and kept in IndexedDB, and the
/// page runs the WebAssembly build of the member (core, crypto, validation, libp2p over
/// WebSocket to the members' `/ws` listeners), showing its votes, neighbours and sync state.
#[utoipa::path(get, path = "/member", operation_id = "memberPage", tag = "web",
    responses((status = 200, description = "The page", content_type = "text/html", body = String)))]
pub(super) async fn member() -> Response {
    serve_with("member.html", MEMBER_CONTENT_SECURITY_POLICY)
}

/// A file of the web app (scripts, styles, the receipt verifier's WebAssembly module).
#[utoipa::path(get, path = "/web/{file}", operation_id = "webFile", tag = "web",
    params(("file" = String, Path, description = "The file's name")),
    responses(
        (status = 200, description = "The file", content_type = "text/javascript", body = String),
        (status = 400, description = "The name is not UTF-8", body = super::ErrorBody),
        (status = 404, description = "No such file", body = super::ErrorBody)))]
pub(super) async fn file(Path(file): Path<String>) -> Response {
    serve(&file)
}

//! The OpenAPI document: generated from the handlers' `#[utoipa::path]` attributes and the
//! types they take and give, completed here with what no single handler says (the API's
//! description, the bearer scheme, path templates in OpenAPI's form).

use axum::Extension;
use axum::Json;
use std::sync::Arc;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{InfoBuilder, OpenApi, Paths};

/// What the API promises about errors and authentication, shown at the top of the document.
const DESCRIPTION: &str = "The HTTP API of a Beaufort member.\n\n\
Every error answers with a JSON body `{\"error\": \"...\"}`. **400** means the request does not \
match this document (unparsable JSON, a missing, unknown or mistyped field, a parameter outside \
its documented form or range); no state of the store could make it valid. **422** means a \
well-formed request that the application's rules refuse for the current state (more points than \
the ticket holds, a contract's guard, a script that does not compile). 413 is a body over the \
size limit, 415 a JSON route called without `Content-Type: application/json`, 429 too many \
writes waiting, 503 a member whose runtime has stopped.\n\n\
Operator routes need `Authorization: Bearer <token>` (the scheme name in any case).";

/// The document the server hands out, built once per router.
#[derive(Clone)]
pub(super) struct Document(Arc<OpenApi>);

impl Document {
    /// Wraps a finished document.
    pub(super) fn new(document: OpenApi) -> Document {
        Document(Arc::new(document))
    }
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", operation_id = "getOpenApi", tag = "meta",
    responses((status = 200, description = "This document (OpenAPI 3.1)", body = Object)))]
pub(super) async fn serve(Extension(Document(document)): Extension<Document>) -> Json<OpenApi> {
    Json(OpenApi::clone(&document))
}

/// Completes the generated document: title, version and description, the `bearer` security
/// scheme the operator routes name, and catch-all path segments (`{*key}` in axum) written as
/// OpenAPI templates (`{key}`).
pub(super) fn finish(mut document: OpenApi) -> OpenApi {
    document.info = InfoBuilder::new()
        .title("Beaufort node API")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(DESCRIPTION))
        .build();
    let components = document.components.get_or_insert_with(Default::default);
    components.security_schemes.insert(
        "bearer".into(),
        SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
    );
    let mut paths = Paths::new();
    for (path, item) in std::mem::take(&mut document.paths.paths) {
        paths.paths.insert(path.replace("{*", "{"), item);
    }
    document.paths = paths;
    document
}

//! `GET /api/openapi.json`: the OpenAPI document of the operations this
//! server implements. `server/openapi/extract.py` writes it from the
//! reference contract; it is embedded so the binary serves exactly the
//! committed file, and the `openapi` test checks it against the router.

use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use super::App;

/// The committed document, byte for byte.
const DOCUMENT: &str = include_str!("../../openapi/openapi.json");

/// Where the document is served; no token is needed to read it.
pub const PATH: &str = "/api/openapi.json";

pub fn routes() -> Router<App> {
    Router::new().route(PATH, get(document))
}

async fn document() -> impl IntoResponse {
    ([(CONTENT_TYPE, "application/json")], DOCUMENT)
}

//! The web dashboard at `/`: the files of `dashboard/dist`, embedded at
//! build time (see `build.rs`), with a strict Content-Security-Policy.
//! Paths without a file extension are the single-page app's own routes and
//! get `index.html`. A server built without the dashboard answers `/` with a
//! page saying how to build it, rather than failing.

use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

include!(concat!(env!("OUT_DIR"), "/dashboard_assets.rs"));

/// Scripts and wasm from this origin only; no inline scripts or styles,
/// no framing, API calls to this origin only.
pub const CSP: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; \
    frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// The page `/` shows when the binary holds no dashboard.
const NOT_BUILT: &str = "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<title>meshplane</title></head><body>\
<h1>meshplane-server</h1>\
<p>This server was built without the dashboard. The REST API is under <code>/api</code>.</p>\
<p>To include the dashboard, build it before the server: \
<code>(cd dashboard &amp;&amp; npm ci &amp;&amp; npm run build) &amp;&amp; cargo build -p meshplane-server</code>.</p>\
</body></html>\n";

/// The response to a GET of `path` (not under `/api`).
pub fn serve(path: &str) -> Response {
    let name = path.trim_start_matches('/');
    let last = name.rsplit('/').next().unwrap_or_default();
    let wanted = if last.contains('.') {
        name
    } else {
        "index.html"
    };
    let Some(bytes) = find(wanted) else {
        if wanted == "index.html" {
            return with_headers(StatusCode::OK, "text/html; charset=utf-8", NOT_BUILT.into());
        }
        return with_headers(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            format!("no such file: /{name}\n").into(),
        );
    };
    with_headers(StatusCode::OK, content_type(wanted), bytes.into())
}

fn find(name: &str) -> Option<&'static [u8]> {
    ASSETS
        .binary_search_by(|(path, _)| path.cmp(&name))
        .ok()
        .map(|i| ASSETS[i].1)
}

fn with_headers(
    status: StatusCode,
    content_type: &'static str,
    body: axum::body::Body,
) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    // The page's file names do not change between builds, so the browser
    // must ask again each time (a 200 of a few hundred KiB on loopback).
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        axum::http::header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// The content type of a dashboard file, by extension.
fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("wasm") => "application/wasm",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

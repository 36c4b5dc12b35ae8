//! The REST API under `/api`. Handlers parse, call the core, persist and
//! respond; each area is one module with its own `routes()`.

mod accounts;
pub mod auth;
mod crud;
mod dashboard;
#[cfg(test)]
mod decoding_props;
mod dns;
mod events;
pub mod failure;
mod groups;
mod ingress;
mod locations;
mod networks;
mod openapi;
pub mod peers;
mod permissions;
mod policies;
mod posture_checks;
mod reverse_proxies;
mod routes;
mod routing;
mod setup_keys;
mod temporary_access;
pub mod tokens;
mod traffic;
mod users;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::domain::audit::meta;
use crate::store::{Store, Stored, Tx};
use auth::Caller;
use failure::Failure;
use meshplane_core::model::Activity;

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct App {
    pub store: Store,
    /// The expose sessions (services, and the sessions a deleted peer ends).
    pub expose: crate::expose::Expose,
    /// Serve the web dashboard at `/` (off with `--no-dashboard`).
    pub dashboard: bool,
}

/// The whole API.
pub fn router(app: App) -> Router {
    Router::new()
        .merge(accounts::routes())
        .merge(users::routes())
        .merge(tokens::routes())
        .merge(groups::routes())
        .merge(setup_keys::routes())
        .merge(policies::routes())
        .merge(posture_checks::routes())
        .merge(routes::routes())
        .merge(networks::routes())
        .merge(peers::routes())
        .merge(temporary_access::routes())
        .merge(ingress::routes())
        .merge(locations::routes())
        .merge(dns::routes())
        .merge(events::routes())
        .merge(traffic::routes())
        .merge(openapi::routes())
        .merge(reverse_proxies::routes())
        .route_layer(axum::middleware::from_fn_with_state(
            app.clone(),
            permissions::authorize,
        ))
        .fallback(unrouted)
        .method_not_allowed_fallback(|| async {
            Failure::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        })
        .layer(DefaultBodyLimit::max(
            meshplane_core::limits::MAX_BODY_BYTES,
        ))
        .layer(axum::middleware::from_fn(refuse_oversized_bodies))
        .with_state(app)
}

/// A request no route takes: the dashboard for GETs outside `/api` when it
/// is on, otherwise 404.
async fn unrouted(
    axum::extract::State(app): axum::extract::State<App>,
    method: axum::http::Method,
    uri: axum::http::Uri,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let path = uri.path();
    let api = path == "/api" || path.starts_with("/api/");
    let read = method == axum::http::Method::GET || method == axum::http::Method::HEAD;
    if app.dashboard && read && !api {
        return dashboard::serve(path);
    }
    Failure::new(StatusCode::NOT_FOUND, "no such endpoint").into_response()
}

/// 413 before any of the body is read when its declared length is over
/// [`meshplane_core::limits::MAX_BODY_BYTES`]. The body limit alone reads
/// up to the limit first, and by the time it answers, a client still
/// sending is cut off mid-write and never sees the answer. Bodies without
/// a length (chunked) are held to the same limit as they are read.
async fn refuse_oversized_bodies(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let max = meshplane_core::limits::MAX_BODY_BYTES;
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(length) if length > max as u64 => Failure::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body is too large: at most {max} bytes"),
        )
        .into_response(),
        _ => next.run(request).await,
    }
}

/// How a required time that is not set appears (Go's zero time, as the
/// reference sends it).
pub const NEVER: &str = "0001-01-01T00:00:00Z";

/// The body of a successful delete.
pub fn deleted() -> Json<Value> {
    Json(json!({}))
}

/// A resource of the caller's account by id, or 404 naming its kind.
pub async fn load<T: Stored>(tx: &mut Tx, account: &str, id: &str) -> Result<T, Failure> {
    tx.get::<T>(account, id)
        .await?
        .ok_or_else(|| Failure::not_found(&T::KIND.replace('_', " "), id))
}

/// 422 unless every id in `wanted` names one of `known` (of `T`'s kind).
pub fn require_all<T: Stored, I: std::fmt::Display>(
    known: &[T],
    wanted: &[I],
) -> Result<(), Failure> {
    match wanted
        .iter()
        .map(ToString::to_string)
        .find(|id| !known.iter().any(|k| k.key() == id))
    {
        Some(missing) => Err(Failure::invalid(format!(
            "{} {missing} not found",
            T::KIND.replace('_', " ")
        ))),
        None => Ok(()),
    }
}

/// Stores `value` and records `activity` about it (meta: its label), in `tx`.
pub async fn save<T: Stored>(
    tx: &mut Tx,
    caller: &Caller,
    value: &T,
    activity: Activity,
) -> Result<(), Failure> {
    tx.put(caller.account_id(), value).await?;
    caller
        .audit(tx, activity, value.key(), meta([("name", value.label())]))
        .await
}

/// Deletes `value` and records `activity` about it (meta: its label), in `tx`.
pub async fn discard<T: Stored>(
    tx: &mut Tx,
    caller: &Caller,
    value: &T,
    activity: Activity,
) -> Result<(), Failure> {
    tx.delete::<T>(caller.account_id(), value.key()).await?;
    caller
        .audit(tx, activity, value.key(), meta([("name", value.label())]))
        .await
}

//! `GET /health`: whether this server can serve, for load balancers and
//! orchestrators. No token: it says nothing about any account. 200 when the
//! store answers a query within [`STORE_TIMEOUT`], 503 otherwise, so a
//! server whose database went away is taken out of rotation instead of
//! answering every API call with an error.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::store::Store;

/// How long the store may take to answer before the server is reported
/// unavailable (well under the usual load-balancer check timeout).
const STORE_TIMEOUT: Duration = Duration::from_secs(2);

/// The `/health` route.
pub fn routes(store: Store) -> Router {
    Router::new()
        .route("/health", get(health))
        .with_state(store)
}

async fn health(State(store): State<Store>) -> (StatusCode, Json<Value>) {
    let failure = match tokio::time::timeout(STORE_TIMEOUT, store.ping()).await {
        Ok(Ok(())) => return (StatusCode::OK, Json(json!({"status": "ok", "store": "ok"}))),
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no answer within {} s", STORE_TIMEOUT.as_secs()),
    };
    tracing::warn!(error = %failure, "health check: the store does not answer");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({"status": "unavailable", "store": "unavailable"})),
    )
}

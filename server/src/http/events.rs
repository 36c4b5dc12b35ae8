//! `/api/events/audit`: the audit log, newest first.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use meshplane_core::model::AuditEvent;

use super::auth::Caller;
use super::failure::Failure;
use super::App;

pub fn routes() -> Router<App> {
    Router::new().route("/api/events/audit", get(list))
}

async fn list(State(app): State<App>, caller: Caller) -> Result<Json<Vec<AuditEvent>>, Failure> {
    let mut tx = app.store.read().await?;
    let mut events = tx.events::<AuditEvent>(caller.account_id()).await?;
    events.reverse();
    Ok(Json(events))
}

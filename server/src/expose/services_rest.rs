//! `/api/reverse-proxies/services`: the account's active expose sessions
//! in the reference's `Service` shape. Every one is marked
//! `"source": "ephemeral"` with the exposing peer as `source_peer`: they
//! come from `meshplane expose`, live only as long as its session, and
//! cannot be edited here. The service id is its domain (the key renew and
//! stop use too).

use std::collections::BTreeMap;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use meshplane_core::expose::Session;
use meshplane_core::model::Peer;
use serde_json::{json, Value};

use crate::http::auth::Caller;
use crate::http::failure::{Failure, Ids};
use crate::http::App;

pub fn routes() -> Router<App> {
    Router::new()
        .route("/api/reverse-proxies/services", get(list))
        .route("/api/reverse-proxies/services/{service_id}", get(read))
}

/// The REST `Service` of `s`; `host` is its peer's mesh address.
fn view(s: &Session, host: &str, proxy_cluster: &str) -> Value {
    let auth = &s.auth;
    json!({
        "id": s.id,
        "name": s.name,
        "domain": s.domain,
        "mode": "http",
        "proxy_cluster": proxy_cluster,
        "targets": [{
            "target_id": s.peer_id,
            "target_type": "peer",
            "path": "/",
            "protocol": s.protocol.as_str(),
            "host": host,
            "port": s.port.get(),
            "enabled": true,
        }],
        "enabled": true,
        "terminated": false,
        "pass_host_header": false,
        "rewrite_redirects": false,
        "auth": {
            // Secrets are kept hashed and never shown.
            "password_auth": {"enabled": auth.password_hash.is_some(), "password": ""},
            "pin_auth": {"enabled": auth.pin_hash.is_some(), "pin": ""},
            "bearer_auth": {
                "enabled": !auth.user_group_ids.is_empty(),
                "distribution_groups": auth.user_group_ids,
            },
        },
        "meta": {"created_at": s.created_at, "status": "active"},
        "source": "ephemeral",
        "source_peer": s.peer_id,
    })
}

/// The account's sessions as REST services, sorted by domain.
async fn services(app: &App, account: &str) -> Result<Vec<(String, Value)>, Failure> {
    let (sessions, _) = app.expose.sessions(account).await;
    if sessions.is_empty() {
        return Ok(Vec::new());
    }
    let mut tx = app.store.read().await?;
    let peers: BTreeMap<String, Peer> = tx
        .list::<Peer>(account)
        .await?
        .into_iter()
        .map(|p| (p.id.to_string(), p))
        .collect();
    let cluster = app.expose.config().proxy_domain.as_str();
    Ok(sessions
        .iter()
        .filter_map(|s| {
            let peer = peers.get(s.peer_id.as_str())?;
            Some((s.id.clone(), view(s, &peer.ip.to_string(), cluster)))
        })
        .collect())
}

async fn list(State(app): State<App>, caller: Caller) -> Result<Json<Value>, Failure> {
    let all = services(&app, caller.account_id()).await?;
    Ok(Json(Value::Array(
        all.into_iter().map(|(_, v)| v).collect(),
    )))
}

async fn read(
    State(app): State<App>,
    caller: Caller,
    Ids(id): Ids<String>,
) -> Result<Json<Value>, Failure> {
    services(&app, caller.account_id())
        .await?
        .into_iter()
        .find(|(sid, _)| sid == &id)
        .map(|(_, v)| Json(v))
        .ok_or_else(|| Failure::not_found("service", &id))
}

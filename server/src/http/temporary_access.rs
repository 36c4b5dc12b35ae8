//! `POST /api/peers/{peer_id}/temporary-access`: a temporary peer that may
//! reach the given peer only. The core builds the peer and its policies
//! ([`meshplane_core::temporary_access`]); this stores them in one
//! transaction and records the peer and each policy in the audit log.

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use meshplane_core::limits;
use meshplane_core::model::{Activity, Peer, PeerId};
use meshplane_core::temporary_access::{self, Request};
use rand_core::OsRng;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::Caller;
use super::failure::{Body, Failure, Ids};
use super::{load, save, App};
use crate::domain::account_view::aggregate;
use crate::domain::audit::meta;
use crate::ids;
use crate::records::AccountRecord;

pub fn routes() -> Router<App> {
    Router::new().route("/api/peers/{peer_id}/temporary-access", post(create))
}

/// The REST `PeerTemporaryAccessRequest`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct AccessRequest {
    name: String,
    wg_pub_key: String,
    rules: Vec<String>,
}

async fn create(
    State(app): State<App>,
    caller: Caller,
    Ids(id): Ids<String>,
    Body(req): Body<AccessRequest>,
) -> Result<Json<Value>, Failure> {
    limits::name("peer name", &req.name)?;
    limits::items("rules", &req.rules)?;
    let account_id = caller.account_id();
    let mut tx = app.store.write().await?;
    let target = load::<Peer>(&mut tx, account_id, &id).await?;
    let record = load::<AccountRecord>(&mut tx, account_id, account_id).await?;
    let account = aggregate(&mut tx, &record).await?;
    let access = temporary_access::create(
        &account,
        &target,
        Request {
            name: &req.name,
            wg_pub_key: &req.wg_pub_key,
            rules: &req.rules,
        },
        PeerId::new(ids::new_id()),
        ids::new_id,
        ids::now(),
        &mut OsRng,
    )?;
    let peer = &access.peer;
    tx.put(account_id, peer).await?;
    let details = meta([("name", &peer.name), ("ip", &peer.ip.to_string())]);
    caller
        .audit(
            &mut tx,
            Activity::PEER_ADDED_BY_USER,
            peer.id.as_str(),
            details,
        )
        .await?;
    for policy in &access.policies {
        save(&mut tx, &caller, policy, Activity::POLICY_ADDED).await?;
    }
    tx.commit().await?;
    Ok(Json(json!({
        "name": peer.name,
        "id": peer.id,
        "rules": req.rules,
    })))
}

//! `/api/setup-keys`. The plain key is in the creation response only;
//! afterwards the key is shown masked. Only `auto_groups` and `revoked`
//! change after creation, and a revoked key stays revoked.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use meshplane_core::keys;
use meshplane_core::limits;
use meshplane_core::model::{
    Activity, Group, GroupId, SetupKey, SetupKeyId, SetupKeyState, SetupKeyType,
};
use meshplane_core::Duration;
use rand_core::OsRng;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::Caller;
use super::failure::{Body, Failure, Ids};
use super::groups::dedup;
use super::{deleted, discard, load, require_all, save, App, NEVER};
use crate::domain::audit::meta;
use crate::ids;
use crate::store::Tx;

/// Longest setup key lifetime, in seconds (365 days).
const MAX_EXPIRES_IN: i64 = 365 * 86_400;

pub fn routes() -> Router<App> {
    Router::new()
        .route("/api/setup-keys", get(list).post(create))
        .route(
            "/api/setup-keys/{key_id}",
            get(read).put(update).delete(remove),
        )
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CreateSetupKeyRequest {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    expires_in: i64,
    auto_groups: Vec<GroupId>,
    usage_limit: i64,
    ephemeral: bool,
    allow_extra_dns_labels: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SetupKeyRequest {
    revoked: bool,
    auto_groups: Vec<GroupId>,
}

/// The REST `SetupKey`, with `key` as given (masked, or plain once).
fn view(k: &SetupKey, key: &str) -> Value {
    let state = k.state(ids::now());
    json!({
        "id": k.id,
        "name": k.name,
        "key": key,
        "expires": k.expires_at.map_or(json!(NEVER), |t| json!(t)),
        "type": k.kind,
        "valid": state == SetupKeyState::Valid,
        "revoked": k.revoked,
        "used_times": k.used_times,
        "last_used": k.last_used.map_or(json!(NEVER), |t| json!(t)),
        "state": state.as_str(),
        "auto_groups": k.auto_groups,
        "updated_at": k.updated_at,
        "usage_limit": k.usage_limit,
        "ephemeral": k.ephemeral,
        "allow_extra_dns_labels": k.allow_extra_dns_labels,
    })
}

/// Auto groups must exist and may not include `All`.
async fn auto_groups(
    tx: &mut Tx,
    account: &str,
    wanted: Vec<GroupId>,
) -> Result<Vec<GroupId>, Failure> {
    limits::items("auto groups", &wanted)?;
    let groups = tx.get_many::<Group>(account, &wanted).await?;
    require_all(&groups, &wanted)?;
    if groups.iter().any(|g| g.is_all() && wanted.contains(&g.id)) {
        return Err(Failure::invalid("auto_groups can't contain the All group"));
    }
    Ok(dedup(wanted))
}

async fn list(State(app): State<App>, caller: Caller) -> Result<Json<Value>, Failure> {
    let mut tx = app.store.read().await?;
    let keys = tx.list::<SetupKey>(caller.account_id()).await?;
    Ok(Json(keys.iter().map(|k| view(k, &k.masked_key)).collect()))
}

async fn read(
    State(app): State<App>,
    caller: Caller,
    Ids(id): Ids<String>,
) -> Result<Json<Value>, Failure> {
    let mut tx = app.store.read().await?;
    let key = load::<SetupKey>(&mut tx, caller.account_id(), &id).await?;
    Ok(Json(view(&key, &key.masked_key)))
}

async fn create(
    State(app): State<App>,
    caller: Caller,
    Body(req): Body<CreateSetupKeyRequest>,
) -> Result<Json<Value>, Failure> {
    let account = caller.account_id();
    let name = req.name.trim();
    if name.is_empty() {
        return Err(Failure::invalid("setup key name shouldn't be empty"));
    }
    limits::name("setup key name", name)?;
    let kind = match req.kind.as_str() {
        "reusable" => SetupKeyType::Reusable,
        "one-off" => SetupKeyType::OneOff,
        other => {
            return Err(Failure::invalid(format!(
                "invalid setup key type \"{other}\": must be reusable or one-off"
            )))
        }
    };
    if req.expires_in < 0 {
        return Err(Failure::invalid("expires_in can't be negative"));
    }
    if req.expires_in > MAX_EXPIRES_IN {
        return Err(Failure::invalid("expires_in can't be more than 365 days"));
    }
    if req.usage_limit < 0 {
        return Err(Failure::invalid("usage_limit can't be negative"));
    }
    let usage_limit = match kind {
        SetupKeyType::OneOff => 1,
        SetupKeyType::Reusable => u32::try_from(req.usage_limit).unwrap_or(u32::MAX),
    };
    let mut tx = app.store.write().await?;
    let auto_groups = auto_groups(&mut tx, account, req.auto_groups).await?;
    let plain = keys::generate_setup_key(&mut OsRng);
    let now = ids::now();
    let key = SetupKey {
        id: SetupKeyId::new(ids::new_id()),
        name: name.to_string(),
        hashed_key: keys::hash_secret(&plain),
        masked_key: keys::mask_setup_key(&plain),
        kind,
        expires_at: (req.expires_in > 0)
            .then(|| now.saturating_add(Duration::from_secs(req.expires_in))),
        revoked: false,
        used_times: 0,
        last_used: None,
        auto_groups,
        usage_limit,
        ephemeral: req.ephemeral,
        allow_extra_dns_labels: req.allow_extra_dns_labels,
        created_at: now,
        updated_at: now,
    };
    tx.put_secret(account, &key.hashed_key, &key).await?;
    save(&mut tx, &caller, &key, Activity::SETUP_KEY_CREATED).await?;
    tx.commit().await?;
    Ok(Json(view(&key, &plain)))
}

async fn update(
    State(app): State<App>,
    caller: Caller,
    Ids(id): Ids<String>,
    Body(req): Body<SetupKeyRequest>,
) -> Result<Json<Value>, Failure> {
    let account = caller.account_id();
    let mut tx = app.store.write().await?;
    let mut key = load::<SetupKey>(&mut tx, account, &id).await?;
    if key.revoked && !req.revoked {
        return Err(Failure::invalid("a revoked setup key can't be un-revoked"));
    }
    let groups = auto_groups(&mut tx, account, req.auto_groups).await?;
    let target = key.id.to_string();
    let name = key.name.clone();
    caller
        .audit_group_changes(
            &mut tx,
            &target,
            &key.auto_groups,
            &groups,
            (
                Activity::GROUP_ADDED_TO_SETUP_KEY,
                Activity::GROUP_REMOVED_FROM_SETUP_KEY,
            ),
        )
        .await?;
    if req.revoked && !key.revoked {
        caller
            .audit(
                &mut tx,
                Activity::SETUP_KEY_REVOKED,
                &target,
                meta([("name", &name)]),
            )
            .await?;
    }
    key.revoked = req.revoked;
    key.auto_groups = groups;
    key.updated_at = ids::now();
    save(&mut tx, &caller, &key, Activity::SETUP_KEY_UPDATED).await?;
    tx.commit().await?;
    Ok(Json(view(&key, &key.masked_key)))
}

async fn remove(
    State(app): State<App>,
    caller: Caller,
    Ids(id): Ids<String>,
) -> Result<Json<Value>, Failure> {
    let account = caller.account_id();
    let mut tx = app.store.write().await?;
    let key = load::<SetupKey>(&mut tx, account, &id).await?;
    discard(&mut tx, &caller, &key, Activity::SETUP_KEY_DELETED).await?;
    tx.commit().await?;
    Ok(deleted())
}

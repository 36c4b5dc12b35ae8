//! `/api/accounts`: the caller's account and its settings.

use axum::extract::State;
use axum::routing::{get, put};
use axum::{Json, Router};
use meshplane_core::ipam;
use meshplane_core::model::{AccountSettings, AccountSettingsUpdate, Activity, Group, Peer, Role};
use meshplane_core::validate;
use rand_core::OsRng;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::Caller;
use super::failure::{Body, Failure, Ids};
use super::{deleted, require_all, App};
use crate::domain::audit::meta;
use crate::records::{AccountRecord, Onboarding};
use crate::store::Tx;

pub fn routes() -> Router<App> {
    Router::new()
        .route("/api/accounts", get(list))
        .route("/api/accounts/{account_id}", put(update).delete(remove))
}

/// The REST `AccountRequest`. Settings are decoded as the reference
/// decodes them (see [`AccountSettingsUpdate`]): optional settings left out
/// keep their stored values.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct AccountRequest {
    settings: AccountSettingsUpdate,
    onboarding: Option<Onboarding>,
}

/// Checks a changed network range against the account's peers and gives
/// every peer a new address in it, as the reference does; the range is
/// stored with its host bits cleared. The network maps follow on commit.
async fn move_peers(
    tx: &mut Tx,
    account: &str,
    old: &AccountSettings,
    new: &mut AccountSettings,
) -> Result<(), Failure> {
    let mut peers = tx.list::<Peer>(account).await?;
    let count = u64::try_from(peers.len()).unwrap_or(u64::MAX);
    let range = validate::network_range(&new.network_range, count)?;
    new.network_range = range.to_string();
    if new.network_range == old.network_range {
        return Ok(());
    }
    let ips = ipam::reallocate(range, peers.len(), &mut OsRng)?;
    for (peer, ip) in peers.iter_mut().zip(ips) {
        peer.ip = ip;
        tx.put(account, &*peer).await?;
    }
    Ok(())
}

/// The REST `Account`.
pub fn view(a: &AccountRecord) -> Value {
    json!({
        "id": a.id,
        "settings": a.settings,
        "domain": a.domain,
        "domain_category": a.domain_category,
        "created_at": a.created_at,
        "created_by": a.created_by,
        "onboarding": a.onboarding,
    })
}

async fn list(caller: Caller) -> Json<Value> {
    Json(json!([view(&caller.account)]))
}

/// The caller's own account, or 404 for any other id.
fn own<'a>(caller: &'a Caller, id: &str) -> Result<&'a AccountRecord, Failure> {
    if caller.account.id == id {
        Ok(&caller.account)
    } else {
        Err(Failure::not_found("account", id))
    }
}

/// Checks new settings against the old ones; the activities the change
/// makes. A new network range moves every peer into it, in `tx`.
async fn check(
    tx: &mut Tx,
    account: &AccountRecord,
    new: &mut AccountSettings,
) -> Result<Vec<Activity>, Failure> {
    let old = &account.settings;
    validate::account_settings(new)?;
    if new.network_range != old.network_range {
        move_peers(tx, &account.id, old, new).await?;
    }
    // Peer expose enabled with an empty group list allows every peer (the
    // seed's "leave the group list empty to allow all peers"); the rule
    // itself lives in meshplane_core::expose.
    let groups = tx.list::<Group>(&account.id).await?;
    require_all(&groups, &new.peer_expose_groups)?;
    require_all(&groups, &new.extra.network_traffic_logs_groups)?;

    let mut activities = Vec::new();
    let mut flag = |was: bool, is: bool, on: Activity, off: Activity| {
        if was != is {
            activities.push(if is { on } else { off });
        }
    };
    flag(
        old.peer_login_expiration_enabled,
        new.peer_login_expiration_enabled,
        Activity::ACCOUNT_PEER_LOGIN_EXPIRATION_ENABLED,
        Activity::ACCOUNT_PEER_LOGIN_EXPIRATION_DISABLED,
    );
    flag(
        old.peer_expose_enabled,
        new.peer_expose_enabled,
        Activity::ACCOUNT_PEER_EXPOSE_ENABLED,
        Activity::ACCOUNT_PEER_EXPOSE_DISABLED,
    );
    flag(
        old.extra.peer_approval_enabled,
        new.extra.peer_approval_enabled,
        Activity::ACCOUNT_PEER_APPROVAL_ENABLED,
        Activity::ACCOUNT_PEER_APPROVAL_DISABLED,
    );
    if old.peer_login_expiration != new.peer_login_expiration {
        activities.push(Activity::ACCOUNT_PEER_LOGIN_EXPIRATION_DURATION_UPDATED);
    }
    if old.dns_domain != new.dns_domain {
        activities.push(Activity::ACCOUNT_DNS_DOMAIN_UPDATED);
    }
    if old.network_range != new.network_range {
        activities.push(Activity::ACCOUNT_NETWORK_RANGE_UPDATED);
    }
    Ok(activities)
}

async fn update(
    State(app): State<App>,
    caller: Caller,
    Ids(id): Ids<String>,
    Body(req): Body<AccountRequest>,
) -> Result<Json<Value>, Failure> {
    own(&caller, &id)?;
    let mut tx = app.store.write().await?;
    let mut account = tx
        .get::<AccountRecord>(&id, &id)
        .await?
        .ok_or_else(|| Failure::not_found("account", &id))?;
    let mut settings = req.settings.apply(&account.settings);
    let activities = check(&mut tx, &account, &mut settings).await?;
    account.settings = settings;
    if let Some(onboarding) = req.onboarding {
        account.onboarding = onboarding;
    }
    tx.put(&account.id, &account).await?;
    // Peer expose on/off records the groups allowed to expose.
    let expose_groups = account
        .settings
        .peer_expose_groups
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",");
    for activity in activities {
        let details = if activity == Activity::ACCOUNT_PEER_EXPOSE_ENABLED
            || activity == Activity::ACCOUNT_PEER_EXPOSE_DISABLED
        {
            meta([("groups", expose_groups.as_str())])
        } else {
            meta([])
        };
        caller
            .audit(&mut tx, activity, &account.id, details)
            .await?;
    }
    tx.commit().await?;
    Ok(Json(view(&account)))
}

async fn remove(
    State(app): State<App>,
    caller: Caller,
    Ids(id): Ids<String>,
) -> Result<Json<Value>, Failure> {
    let account = own(&caller, &id)?;
    if caller.user.role != Role::Owner {
        return Err(Failure::forbidden(
            "only the account owner can delete the account",
        ));
    }
    let mut tx = app.store.write().await?;
    tx.delete_account(&account.id).await?;
    tx.commit().await?;
    tracing::info!(account = %account.id, "account deleted");
    Ok(deleted())
}

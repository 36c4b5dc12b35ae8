//! `/api/accounts`: the caller's account and its settings.

use axum::extract::State;
use axum::routing::{get, put};
use axum::{Json, Router};
use meshplane_core::model::account::{MAX_LOGIN_EXPIRATION_SECS, MIN_LOGIN_EXPIRATION_SECS};
use meshplane_core::model::{AccountSettings, Activity, Group, Peer, Role};
use meshplane_core::validate::{Cidr, Domain};
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::{meta, Caller};
use super::failure::{Body, Failure, Ids};
use super::{deleted, require_all, App};
use crate::records::{AccountRecord, Onboarding};
use crate::store::Tx;

pub fn routes() -> Router<App> {
    Router::new()
        .route("/api/accounts", get(list))
        .route("/api/accounts/{account_id}", put(update).delete(remove))
}

#[derive(Debug, Deserialize)]
struct AccountRequest {
    settings: AccountSettings,
    #[serde(default)]
    onboarding: Option<Onboarding>,
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

/// Checks new settings against the old ones; the activities the change makes.
async fn check(
    tx: &mut Tx,
    account: &AccountRecord,
    new: &AccountSettings,
) -> Result<Vec<Activity>, Failure> {
    let old = &account.settings;
    if new.peer_login_expiration < MIN_LOGIN_EXPIRATION_SECS {
        return Err(Failure::invalid(
            "peer login expiration can't be smaller than one hour",
        ));
    }
    if new.peer_login_expiration > MAX_LOGIN_EXPIRATION_SECS {
        return Err(Failure::invalid(
            "peer login expiration can't be larger than 180 days",
        ));
    }
    if !(0..=MAX_LOGIN_EXPIRATION_SECS).contains(&new.peer_inactivity_expiration) {
        return Err(Failure::invalid(
            "peer inactivity expiration must be between 0 and 180 days",
        ));
    }
    if !new.dns_domain.is_empty() {
        new.dns_domain.parse::<Domain>()?;
    }
    if new.network_range != old.network_range {
        new.network_range.parse::<Cidr>()?;
        if !tx.list::<Peer>(&account.id).await?.is_empty() {
            return Err(Failure::invalid(
                "the network range can only be changed while the account has no peers",
            ));
        }
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
    let activities = check(&mut tx, &account, &req.settings).await?;
    account.settings = req.settings;
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

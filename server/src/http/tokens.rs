//! `/api/users/{userId}/tokens`: personal access tokens. The plain token is
//! in the creation response only; the store keeps its hash.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use meshplane_core::keys;
use meshplane_core::limits;
use meshplane_core::model::{Activity, PersonalAccessToken, TokenId, User};
use meshplane_core::permissions::Access;
use meshplane_core::{Duration, Timestamp};
use rand_core::OsRng;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::Caller;
use super::failure::{Body, Failure, Ids};
use super::{deleted, load, App};
use crate::domain::audit::meta;
use crate::ids;
use crate::store::Tx;

/// Allowed token lifetimes, in days.
const EXPIRY_DAYS: std::ops::RangeInclusive<i64> = 1..=365;

pub fn routes() -> Router<App> {
    Router::new()
        .route("/api/users/{user_id}/tokens", get(list).post(create))
        .route(
            "/api/users/{user_id}/tokens/{token_id}",
            get(read).delete(remove),
        )
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TokenRequest {
    name: String,
    expires_in: i64,
}

/// The REST `PersonalAccessToken` (never the hash).
fn view(t: &PersonalAccessToken) -> Value {
    let mut v = json!({
        "id": t.id,
        "name": t.name,
        "expiration_date": t.expiration_date,
        "created_by": t.created_by,
        "created_at": t.created_at,
    });
    if let Some(used) = t.last_used {
        v["last_used"] = json!(used);
    }
    v
}

/// Creates and stores a token for `user`; returns it with the plain secret.
pub async fn issue(
    tx: &mut Tx,
    account: &str,
    user: &User,
    created_by: &User,
    name: &str,
    expires_in_days: i64,
) -> Result<(PersonalAccessToken, String), Failure> {
    if name.trim().is_empty() {
        return Err(Failure::invalid("name should not be empty"));
    }
    limits::name("token name", name)?;
    if !EXPIRY_DAYS.contains(&expires_in_days) {
        return Err(Failure::invalid("expiration has to be between 1 and 365"));
    }
    let plain = keys::generate_pat(&mut OsRng);
    let now = ids::now();
    let token = PersonalAccessToken {
        id: TokenId::new(ids::new_id()),
        user_id: user.id.clone(),
        name: name.to_string(),
        hashed_token: keys::hash_secret(&plain),
        expiration_date: now.saturating_add(Duration::from_secs(expires_in_days * 86_400)),
        created_by: created_by.id.clone(),
        created_at: now,
        last_used: None::<Timestamp>,
    };
    tx.put(account, &token).await?;
    tx.put_secret(account, &token.hashed_token, &token).await?;
    crate::domain::audit::record(
        tx,
        account,
        created_by,
        Activity::PERSONAL_ACCESS_TOKEN_CREATED,
        token.id.as_str(),
        meta([("name", name), ("user_id", user.id.as_str())]),
    )
    .await?;
    Ok((token, plain))
}

/// The user whose tokens the caller manages: themselves, or a service user
/// when the caller's role reaches every token of the account. Another
/// person's tokens are theirs alone, whatever the role.
async fn owner(tx: &mut Tx, caller: &Caller, user_id: &str) -> Result<User, Failure> {
    let user = load::<User>(tx, caller.account_id(), user_id).await?;
    let own = user.id == caller.user.id;
    if own || (caller.access == Access::All && user.is_service_user) {
        Ok(user)
    } else {
        Err(Failure::forbidden(
            "only the user or an admin managing a service user can manage tokens",
        ))
    }
}

async fn token_of(
    tx: &mut Tx,
    account: &str,
    user: &User,
    id: &str,
) -> Result<PersonalAccessToken, Failure> {
    tx.get::<PersonalAccessToken>(account, id)
        .await?
        .filter(|t| t.user_id == user.id)
        .ok_or_else(|| Failure::not_found("token", id))
}

async fn list(
    State(app): State<App>,
    caller: Caller,
    Ids(user_id): Ids<String>,
) -> Result<Json<Value>, Failure> {
    let mut tx = app.store.read().await?;
    let user = owner(&mut tx, &caller, &user_id).await?;
    let tokens = tx.list::<PersonalAccessToken>(caller.account_id()).await?;
    Ok(Json(Value::Array(
        tokens
            .iter()
            .filter(|t| t.user_id == user.id)
            .map(view)
            .collect(),
    )))
}

async fn create(
    State(app): State<App>,
    caller: Caller,
    Ids(user_id): Ids<String>,
    Body(req): Body<TokenRequest>,
) -> Result<Json<Value>, Failure> {
    let mut tx = app.store.write().await?;
    let user = owner(&mut tx, &caller, &user_id).await?;
    let (token, plain) = issue(
        &mut tx,
        caller.account_id(),
        &user,
        &caller.user,
        &req.name,
        req.expires_in,
    )
    .await?;
    tx.commit().await?;
    Ok(Json(
        json!({"plain_token": plain, "personal_access_token": view(&token)}),
    ))
}

async fn read(
    State(app): State<App>,
    caller: Caller,
    Ids((user_id, token_id)): Ids<(String, String)>,
) -> Result<Json<Value>, Failure> {
    let mut tx = app.store.read().await?;
    let user = owner(&mut tx, &caller, &user_id).await?;
    let token = token_of(&mut tx, caller.account_id(), &user, &token_id).await?;
    Ok(Json(view(&token)))
}

async fn remove(
    State(app): State<App>,
    caller: Caller,
    Ids((user_id, token_id)): Ids<(String, String)>,
) -> Result<Json<Value>, Failure> {
    let mut tx = app.store.write().await?;
    let user = owner(&mut tx, &caller, &user_id).await?;
    let token = token_of(&mut tx, caller.account_id(), &user, &token_id).await?;
    tx.delete::<PersonalAccessToken>(caller.account_id(), token.id.as_str())
        .await?;
    caller
        .audit(
            &mut tx,
            Activity::PERSONAL_ACCESS_TOKEN_DELETED,
            token.id.as_str(),
            meta([("name", &token.name), ("user_id", user.id.as_str())]),
        )
        .await?;
    tx.commit().await?;
    Ok(deleted())
}

//! `/api/users`: people and service users of the account.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use meshplane_core::limits;
use meshplane_core::model::{
    Activity, Group, GroupId, PersonalAccessToken, Role, User, UserId, UserStatus,
};
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::Caller;
use super::failure::{Body, Failure, Filter, Ids};
use super::groups::dedup;
use super::{deleted, load, require_all, App};
use crate::domain::audit::meta;
use crate::ids;
use crate::store::Tx;

pub fn routes() -> Router<App> {
    Router::new()
        .route("/api/users", get(list).post(create))
        .route("/api/users/current", get(current))
        .route("/api/users/{user_id}", put(update).delete(remove))
        .route("/api/users/{user_id}/approve", post(approve))
        .route("/api/users/{user_id}/invite", post(invite))
        .route("/api/users/{user_id}/reject", delete(reject))
}

#[derive(Debug, Deserialize)]
struct UserFilter {
    service_user: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct UserCreateRequest {
    email: Option<String>,
    name: Option<String>,
    role: String,
    auto_groups: Vec<GroupId>,
    is_service_user: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct UserRequest {
    role: String,
    auto_groups: Vec<GroupId>,
    is_blocked: bool,
}

/// The REST `User`.
fn view(u: &User, caller: &User) -> Value {
    let mut v = json!({
        "id": u.id,
        "email": u.email,
        "name": u.name,
        "role": u.role,
        "status": if u.is_blocked { UserStatus::Blocked } else { u.status },
        "auto_groups": u.auto_groups,
        "is_current": u.id == caller.id,
        "is_service_user": u.is_service_user,
        "is_blocked": u.is_blocked,
        "pending_approval": u.pending_approval,
        "issued": u.issued,
    });
    if let Some(t) = u.last_login {
        v["last_login"] = json!(t);
    }
    v
}

/// A role named in a request; the owner role is never given through the API.
fn assignable_role(name: &str) -> Result<Role, Failure> {
    let role: Role = serde_json::from_value(json!(name))
        .map_err(|_| Failure::invalid(format!("invalid user role \"{name}\"")))?;
    if role == Role::Owner {
        return Err(Failure::invalid("the owner role can't be assigned"));
    }
    Ok(role)
}

async fn auto_groups(
    tx: &mut Tx,
    account: &str,
    wanted: Vec<GroupId>,
) -> Result<Vec<GroupId>, Failure> {
    limits::items("auto groups", &wanted)?;
    let groups = tx.get_many::<Group>(account, &wanted).await?;
    require_all(&groups, &wanted)?;
    Ok(dedup(wanted))
}

async fn list(
    State(app): State<App>,
    caller: Caller,
    Filter(filter): Filter<UserFilter>,
) -> Result<Json<Value>, Failure> {
    let mut tx = app.store.read().await?;
    let users = tx.list::<User>(caller.account_id()).await?;
    Ok(Json(
        users
            .iter()
            .filter(|u| filter.service_user.is_none_or(|s| u.is_service_user == s))
            .map(|u| view(u, &caller.user))
            .collect(),
    ))
}

async fn current(caller: Caller) -> Json<Value> {
    Json(view(&caller.user, &caller.user))
}

async fn create(
    State(app): State<App>,
    caller: Caller,
    Body(req): Body<UserCreateRequest>,
) -> Result<Json<Value>, Failure> {
    let account = caller.account_id();
    let role = assignable_role(&req.role)?;
    let email = req.email.unwrap_or_default().trim().to_string();
    let name = req.name.unwrap_or_default().trim().to_string();
    limits::name("email", &email)?;
    limits::name("user name", &name)?;
    let mut tx = app.store.write().await?;
    let existing = tx.list::<User>(account).await?;
    let (status, activity) = if req.is_service_user {
        if name.is_empty() {
            return Err(Failure::invalid("service user name should not be empty"));
        }
        (UserStatus::Active, Activity::SERVICE_USER_CREATED)
    } else {
        if !email.contains('@') {
            return Err(Failure::invalid(
                "a valid email is required to invite a user",
            ));
        }
        if existing
            .iter()
            .any(|u| u.email.eq_ignore_ascii_case(&email))
        {
            return Err(Failure::conflict(format!(
                "user with email {email} already exists"
            )));
        }
        (UserStatus::Invited, Activity::USER_INVITED)
    };
    let user = User {
        id: UserId::new(ids::new_id()),
        email,
        name,
        role,
        status,
        auto_groups: auto_groups(&mut tx, account, req.auto_groups).await?,
        is_service_user: req.is_service_user,
        is_blocked: false,
        pending_approval: false,
        last_login: None,
        issued: "api".to_string(),
    };
    tx.put(account, &user).await?;
    audit_user(&mut tx, &caller, &user, activity).await?;
    tx.commit().await?;
    Ok(Json(view(&user, &caller.user)))
}

async fn update(
    State(app): State<App>,
    caller: Caller,
    Ids(id): Ids<String>,
    Body(req): Body<UserRequest>,
) -> Result<Json<Value>, Failure> {
    let account = caller.account_id();
    let mut tx = app.store.write().await?;
    let mut user = load::<User>(&mut tx, account, &id).await?;
    let role = if user.role == Role::Owner && req.role == "owner" {
        Role::Owner
    } else {
        assignable_role(&req.role)?
    };
    if user.role == Role::Owner && role != Role::Owner {
        return Err(Failure::invalid("the owner role can't be changed"));
    }
    if user.id == caller.user.id && role != user.role {
        return Err(Failure::invalid("admins can't change their own role"));
    }
    if req.is_blocked && (user.id == caller.user.id || user.role == Role::Owner) {
        return Err(Failure::invalid(
            "the owner and the caller can't be blocked",
        ));
    }
    let groups = auto_groups(&mut tx, account, req.auto_groups).await?;
    let mut activities = Vec::new();
    if role != user.role {
        activities.push(Activity::USER_ROLE_UPDATED);
    }
    if req.is_blocked != user.is_blocked {
        activities.push(if req.is_blocked {
            Activity::USER_BLOCKED
        } else {
            Activity::USER_UNBLOCKED
        });
    }
    caller
        .audit_group_changes(
            &mut tx,
            user.id.as_str(),
            &user.auto_groups,
            &groups,
            (
                Activity::GROUP_ADDED_TO_USER,
                Activity::GROUP_REMOVED_FROM_USER,
            ),
        )
        .await?;
    for activity in activities {
        caller
            .audit(
                &mut tx,
                activity,
                user.id.as_str(),
                meta([("role", &req.role)]),
            )
            .await?;
    }
    user.role = role;
    user.is_blocked = req.is_blocked;
    user.auto_groups = groups;
    tx.put(account, &user).await?;
    tx.commit().await?;
    Ok(Json(view(&user, &caller.user)))
}

async fn remove(
    State(app): State<App>,
    caller: Caller,
    Ids(id): Ids<String>,
) -> Result<Json<Value>, Failure> {
    let account = caller.account_id();
    let mut tx = app.store.write().await?;
    let user = load::<User>(&mut tx, account, &id).await?;
    if user.id == caller.user.id {
        return Err(Failure::invalid("a user can't delete themselves"));
    }
    if user.role == Role::Owner {
        return Err(Failure::invalid("the account owner can't be deleted"));
    }
    let activity = if user.is_service_user {
        Activity::SERVICE_USER_DELETED
    } else {
        Activity::USER_DELETED
    };
    drop_user(&mut tx, &caller, &user, activity).await?;
    tx.commit().await?;
    Ok(deleted())
}

/// Deletes a user and its tokens, and records `activity`.
async fn drop_user(
    tx: &mut Tx,
    caller: &Caller,
    user: &User,
    activity: Activity,
) -> Result<(), Failure> {
    let account = caller.account_id();
    for token in tx.list::<PersonalAccessToken>(account).await? {
        if token.user_id == user.id {
            tx.delete::<PersonalAccessToken>(account, token.id.as_str())
                .await?;
        }
    }
    tx.delete::<User>(account, user.id.as_str()).await?;
    audit_user(tx, caller, user, activity).await
}

/// Records `activity` on `user` in the audit log, with its name and email.
async fn audit_user(
    tx: &mut Tx,
    caller: &Caller,
    user: &User,
    activity: Activity,
) -> Result<(), Failure> {
    let details = meta([("name", &user.name), ("email", &user.email)]);
    caller.audit(tx, activity, user.id.as_str(), details).await
}

/// A user waiting for an administrator's approval, or 422.
async fn pending(tx: &mut Tx, account: &str, id: &str) -> Result<User, Failure> {
    let user = load::<User>(tx, account, id).await?;
    if user.pending_approval {
        Ok(user)
    } else {
        Err(Failure::invalid(format!(
            "user {id} is not pending approval"
        )))
    }
}

async fn approve(
    State(app): State<App>,
    caller: Caller,
    Ids(id): Ids<String>,
) -> Result<Json<Value>, Failure> {
    let account = caller.account_id();
    let mut tx = app.store.write().await?;
    let mut user = pending(&mut tx, account, &id).await?;
    user.pending_approval = false;
    user.status = UserStatus::Active;
    tx.put(account, &user).await?;
    audit_user(&mut tx, &caller, &user, Activity::USER_APPROVED).await?;
    tx.commit().await?;
    Ok(Json(view(&user, &caller.user)))
}

async fn reject(
    State(app): State<App>,
    caller: Caller,
    Ids(id): Ids<String>,
) -> Result<Json<Value>, Failure> {
    let mut tx = app.store.write().await?;
    let user = pending(&mut tx, caller.account_id(), &id).await?;
    drop_user(&mut tx, &caller, &user, Activity::USER_REJECTED).await?;
    tx.commit().await?;
    Ok(deleted())
}

/// Sends an invited user's invitation again. This server sends no mail: the
/// resend is checked and recorded in the audit log (`user.invite`), and the
/// user signs in through the identity provider as before.
async fn invite(
    State(app): State<App>,
    caller: Caller,
    Ids(id): Ids<String>,
) -> Result<Json<Value>, Failure> {
    let mut tx = app.store.write().await?;
    let user = load::<User>(&mut tx, caller.account_id(), &id).await?;
    if user.is_service_user {
        return Err(Failure::invalid("service users can't be invited"));
    }
    if user.status != UserStatus::Invited {
        return Err(Failure::new(
            StatusCode::PRECONDITION_FAILED,
            "can't invite a user with an activated account",
        ));
    }
    audit_user(&mut tx, &caller, &user, Activity::USER_INVITED).await?;
    tx.commit().await?;
    Ok(deleted())
}

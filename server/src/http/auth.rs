//! Who is calling: `Authorization: Token <pat>` (or `Bearer <pat>`).
//!
//! The token's length, prefix and checksum are checked by the core before
//! any lookup, so garbage never costs a query. Only hashes are stored; the
//! hash found through the index is compared again in constant time. Each
//! accepted call records the token's `last_used` (to the minute).
//!
//! [`authenticate`] runs once per request, in the permission layer
//! ([`super::permissions`]), which hands the handlers a [`Caller`] that is
//! already allowed to do what the route does.

use std::collections::BTreeMap;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::StatusCode;
use meshplane_core::keys;
use meshplane_core::model::{Activity, GroupId, Peer, PersonalAccessToken, User};
use meshplane_core::permissions::Access;
use meshplane_core::{Duration, Timestamp};

use super::failure::Failure;
use super::App;
use crate::domain::audit::{meta, record};
use crate::ids;
use crate::records::AccountRecord;
use crate::store::Tx;

/// An authenticated caller, allowed by its role to do what the route does.
#[derive(Debug, Clone)]
pub struct Caller {
    pub account: AccountRecord,
    pub user: User,
    /// How far the route's operation reaches for this caller's role: the
    /// handlers of "own only" families filter by it.
    pub access: Access,
}

/// How stale a token's `last_used` may get before a request rewrites it:
/// reads then need no write, and the time is still right to the minute.
const LAST_USED_GRANULARITY: Duration = Duration::from_secs(60);

const NO_CREDENTIALS: &str = "no valid authentication provided";
const UNKNOWN_TOKEN: &str = "invalid token";

/// The token in an `Authorization` header value.
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("token") || scheme.eq_ignore_ascii_case("bearer"))
        .then(|| token.trim())
}

/// The user (and its account) whose token the request carries.
pub async fn authenticate(parts: &Parts, app: &App) -> Result<(AccountRecord, User), Failure> {
    let token = parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer)
        .ok_or_else(|| Failure::unauthorized(NO_CREDENTIALS))?;
    keys::check_pat(token).map_err(|e| Failure::unauthorized(e.to_string()))?;
    let hash = keys::hash_secret(token);
    let mut tx = app.store.read().await?;
    let (account_id, pat) = tx
        .find_secret::<PersonalAccessToken>(&hash)
        .await?
        .filter(|(_, pat)| keys::verify_secret_hash(token, &pat.hashed_token))
        .ok_or_else(|| Failure::unauthorized(UNKNOWN_TOKEN))?;
    let now = ids::now();
    if pat.expiration_date <= now {
        return Err(Failure::unauthorized("token expired"));
    }
    let user = tx
        .get::<User>(&account_id, pat.user_id.as_str())
        .await?
        .ok_or_else(|| Failure::unauthorized(UNKNOWN_TOKEN))?;
    if user.is_blocked {
        return Err(Failure::forbidden("user is blocked"));
    }
    let account = tx
        .get::<AccountRecord>(&account_id, &account_id)
        .await?
        .ok_or_else(|| Failure::unauthorized(UNKNOWN_TOKEN))?;
    drop(tx);
    if pat
        .last_used
        .is_none_or(|t| now - t >= LAST_USED_GRANULARITY)
    {
        mark_used(app, &account_id, &pat, now).await?;
    }
    tracing::debug!(user = %user.id, "authenticated");
    Ok((account, user))
}

/// Records that a token was used at `now`, unless it was deleted meanwhile.
async fn mark_used(
    app: &App,
    account: &str,
    pat: &PersonalAccessToken,
    now: Timestamp,
) -> Result<(), Failure> {
    let mut tx = app.store.write().await?;
    if let Some(mut current) = tx
        .get::<PersonalAccessToken>(account, pat.id.as_str())
        .await?
    {
        current.last_used = Some(now);
        tx.put(account, &current).await?;
        tx.commit().await?;
    }
    Ok(())
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Failure;

    /// The caller the permission layer admitted; a route outside that layer
    /// has none and fails closed.
    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Failure> {
        parts.extensions.get::<Caller>().cloned().ok_or_else(|| {
            tracing::error!(path = %parts.uri.path(), "route outside the permission layer");
            Failure::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        })
    }
}

impl Caller {
    pub fn account_id(&self) -> &str {
        &self.account.id
    }

    /// Whether the caller may see `peer`: every peer with [`Access::All`];
    /// with [`Access::Own`] only those registered under its own user, and
    /// none while the account hides peers from regular users.
    pub fn sees(&self, peer: &Peer) -> bool {
        match self.access {
            Access::All => true,
            Access::Own => {
                !self.account.settings.regular_users_view_blocked
                    && peer.user_id.as_ref() == Some(&self.user.id)
            }
        }
    }

    /// Records an audit event initiated by this caller, in `tx`.
    pub async fn audit(
        &self,
        tx: &mut Tx,
        activity: Activity,
        target: &str,
        meta: BTreeMap<String, String>,
    ) -> Result<(), Failure> {
        Ok(record(tx, &self.account.id, &self.user, activity, target, meta).await?)
    }
}

impl Caller {
    /// Records `added` for each group in `new` but not `old`, and `removed`
    /// for each group in `old` but not `new`, about `target`.
    pub async fn audit_group_changes(
        &self,
        tx: &mut Tx,
        target: &str,
        old: &[GroupId],
        new: &[GroupId],
        (added, removed): (Activity, Activity),
    ) -> Result<(), Failure> {
        let changes = new
            .iter()
            .filter(|g| !old.contains(g))
            .map(|g| (added, g))
            .chain(
                old.iter()
                    .filter(|g| !new.contains(g))
                    .map(|g| (removed, g)),
            );
        for (activity, group) in changes {
            self.audit(tx, activity, target, meta([("group", group.as_str())]))
                .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::bearer;

    #[test]
    fn both_schemes_are_accepted() {
        assert_eq!(bearer("Token abc"), Some("abc"));
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("abc"), None);
    }
}

//! The five operations every plain collection has (list, create, read,
//! update, delete), written once. A resource says how a request becomes a
//! value ([`Crud::build`]), how it looks on the wire ([`Crud::view`]) and
//! what must hold before it goes ([`Crud::before_delete`]); the handlers here
//! do the transaction, the audit events and the 404s.
//!
//! A collection may live under a parent (`/api/networks/{network_id}/…`):
//! [`Crud::Scope`] is what the parent id resolves to, and items outside the
//! scope are not found.

use std::collections::BTreeMap;
use std::future::Future;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use meshplane_core::model::Activity;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::auth::Caller;
use super::failure::{Body, Failure, Filter, Ids};
use super::{deleted, discard, load, save, App};
use crate::ids;
use crate::store::{StoreError, Stored, Tx};

/// What the parent segment of a path resolves to (`()` at the top level).
pub trait Scope: Sized + Send + Sync {
    /// Resolves the parent id (`None` at the top level), or 404.
    fn resolve(
        tx: &mut Tx,
        account: &str,
        parent: Option<&str>,
    ) -> impl Future<Output = Result<Self, Failure>> + Send;
}

impl Scope for () {
    async fn resolve(_tx: &mut Tx, _account: &str, _parent: Option<&str>) -> Result<(), Failure> {
        Ok(())
    }
}

/// What the views of the items `T` of one response share, loaded once for
/// them. It is given the items so that it can load only what they name: a
/// write answering with one item must not read the whole account.
pub trait Context<T>: Sized + Send + Sync {
    fn load(
        tx: &mut Tx,
        account: &str,
        items: &[&T],
    ) -> impl Future<Output = Result<Self, Failure>> + Send;
}

impl<T: Sync> Context<T> for () {
    async fn load(_tx: &mut Tx, _account: &str, _items: &[&T]) -> Result<(), Failure> {
        Ok(())
    }
}

/// A resource served as a REST collection.
pub trait Crud: Stored + Send + Sync + Sized + 'static {
    /// The body of create and update.
    type Request: DeserializeOwned + Send + 'static;
    /// What the parent path segment resolves to.
    type Scope: Scope;
    /// What views need that is shared by every item of a list.
    type Context: Context<Self>;

    const CREATED: Activity;
    const UPDATED: Activity;
    const DELETED: Activity;

    /// Whether an item belongs to the scope.
    fn in_scope(&self, _scope: &Self::Scope) -> bool {
        true
    }

    /// The value a request describes, checked against the account; `old` is
    /// the stored value on update. May write related rows in `tx`.
    fn build(
        tx: &mut Tx,
        caller: &Caller,
        scope: &Self::Scope,
        id: String,
        old: Option<&Self>,
        req: Self::Request,
    ) -> impl Future<Output = Result<Self, Failure>> + Send;

    /// The REST shape; by default the stored JSON.
    fn view(&self, _ctx: &Self::Context) -> Result<Value, Failure> {
        Ok(serde_json::to_value(self).map_err(StoreError::from)?)
    }

    /// Whether a list query keeps this item.
    fn matches(&self, _query: &BTreeMap<String, String>) -> bool {
        true
    }

    /// Refuses the delete while something still uses the item, or removes
    /// what goes with it.
    fn before_delete(
        &self,
        _tx: &mut Tx,
        _caller: &Caller,
    ) -> impl Future<Output = Result<(), Failure>> + Send {
        async { Ok(()) }
    }
}

/// The collection at `path` (with the parent's parameter in it when
/// scoped) and its items at `path/{item}`. Parameters are read by position,
/// so their names only need to agree with sibling routes.
pub fn routes<T: Crud>(path: &str, item: &str) -> Router<App> {
    Router::new()
        .route(path, get(list::<T>).post(create::<T>))
        .route(
            &format!("{path}/{{{item}}}"),
            get(read::<T>).put(update::<T>).delete(remove::<T>),
        )
}

/// Splits path parameters into (parent, item id).
fn split(mut params: Vec<String>, item: bool) -> (Option<String>, Option<String>) {
    let id = if item { params.pop() } else { None };
    (params.pop(), id)
}

async fn item<T: Crud>(
    tx: &mut Tx,
    caller: &Caller,
    params: Vec<String>,
) -> Result<(T::Scope, T), Failure> {
    let (parent, id) = split(params, true);
    let scope = T::Scope::resolve(tx, caller.account_id(), parent.as_deref()).await?;
    let id = id.unwrap_or_default();
    let value = load::<T>(tx, caller.account_id(), &id).await?;
    if value.in_scope(&scope) {
        Ok((scope, value))
    } else {
        Err(Failure::not_found(&T::KIND.replace('_', " "), &id))
    }
}

async fn respond<T: Crud>(tx: &mut Tx, account: &str, value: &T) -> Result<Json<Value>, Failure> {
    let ctx = T::Context::load(tx, account, &[value]).await?;
    Ok(Json(value.view(&ctx)?))
}

async fn list<T: Crud>(
    State(app): State<App>,
    caller: Caller,
    Ids(params): Ids<Vec<String>>,
    Filter(query): Filter<BTreeMap<String, String>>,
) -> Result<Json<Value>, Failure> {
    let account = caller.account_id();
    let mut tx = app.store.read().await?;
    let (parent, _) = split(params, false);
    let scope = T::Scope::resolve(&mut tx, account, parent.as_deref()).await?;
    let items = tx.list::<T>(account).await?;
    let kept: Vec<&T> = items
        .iter()
        .filter(|i| i.in_scope(&scope) && i.matches(&query))
        .collect();
    let ctx = T::Context::load(&mut tx, account, &kept).await?;
    let out: Result<Vec<Value>, Failure> = kept.iter().map(|i| i.view(&ctx)).collect();
    Ok(Json(Value::Array(out?)))
}

async fn read<T: Crud>(
    State(app): State<App>,
    caller: Caller,
    Ids(params): Ids<Vec<String>>,
) -> Result<Json<Value>, Failure> {
    let mut tx = app.store.read().await?;
    let (_, value) = item::<T>(&mut tx, &caller, params).await?;
    respond(&mut tx, caller.account_id(), &value).await
}

async fn create<T: Crud>(
    State(app): State<App>,
    caller: Caller,
    Ids(params): Ids<Vec<String>>,
    Body(req): Body<T::Request>,
) -> Result<Json<Value>, Failure> {
    let account = caller.account_id();
    let mut tx = app.store.write().await?;
    let (parent, _) = split(params, false);
    let scope = T::Scope::resolve(&mut tx, account, parent.as_deref()).await?;
    let value = T::build(&mut tx, &caller, &scope, ids::new_id(), None, req).await?;
    save(&mut tx, &caller, &value, T::CREATED).await?;
    let out = respond(&mut tx, account, &value).await?;
    tx.commit().await?;
    Ok(out)
}

async fn update<T: Crud>(
    State(app): State<App>,
    caller: Caller,
    Ids(params): Ids<Vec<String>>,
    Body(req): Body<T::Request>,
) -> Result<Json<Value>, Failure> {
    let account = caller.account_id();
    let mut tx = app.store.write().await?;
    let (scope, old) = item::<T>(&mut tx, &caller, params).await?;
    let id = old.key().to_string();
    let value = T::build(&mut tx, &caller, &scope, id, Some(&old), req).await?;
    save(&mut tx, &caller, &value, T::UPDATED).await?;
    let out = respond(&mut tx, account, &value).await?;
    tx.commit().await?;
    Ok(out)
}

async fn remove<T: Crud>(
    State(app): State<App>,
    caller: Caller,
    Ids(params): Ids<Vec<String>>,
) -> Result<Json<Value>, Failure> {
    let mut tx = app.store.write().await?;
    let (_, value) = item::<T>(&mut tx, &caller, params).await?;
    value.before_delete(&mut tx, &caller).await?;
    discard(&mut tx, &caller, &value, T::DELETED).await?;
    tx.commit().await?;
    Ok(deleted())
}

/// 409 when another item of the account has the same label (name).
pub async fn unique_label<T: Stored>(tx: &mut Tx, account: &str, value: &T) -> Result<(), Failure> {
    let others = tx.labelled::<T>(account, value.label()).await?;
    if others
        .iter()
        .any(|o| o.label() == value.label() && o.key() != value.key())
    {
        return Err(Failure::conflict(format!(
            "{} with name \"{}\" already exists",
            T::KIND.replace('_', " "),
            value.label()
        )));
    }
    Ok(())
}

//! The account as the core sees it: every record it is made of, loaded in
//! one transaction and decoded once per account version (the snapshot
//! cache), and as the network maps see it, with the expose grants of its
//! active sessions.

use std::sync::Arc;

use meshplane_core::model::{
    Account, AccountId, DnsSettings, Group, NameserverGroup, Network, NetworkResource,
    NetworkRouter, Peer, Policy, PostureCheck, Route, User,
};
use thiserror::Error;

use crate::expose::Expose;
use crate::records::AccountRecord;
use crate::store::{Store, StoreError, Tx};

/// Why an account could not be seen.
#[derive(Debug, Error)]
pub enum ViewError {
    /// No account has this id (it was deleted, or never was).
    #[error("account {0} not found")]
    Missing(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The whole account as the core sees it.
pub async fn aggregate(tx: &mut Tx, record: &AccountRecord) -> Result<Account, StoreError> {
    let id = record.id.as_str();
    Ok(Account {
        id: AccountId::new(id),
        domain: record.domain.clone(),
        settings: record.settings.clone(),
        serial: 0,
        users: tx.list::<User>(id).await?,
        peers: tx.list::<Peer>(id).await?,
        groups: tx.list::<Group>(id).await?,
        policies: tx.list::<Policy>(id).await?,
        posture_checks: tx.list::<PostureCheck>(id).await?,
        routes: tx.list::<Route>(id).await?,
        networks: tx.list::<Network>(id).await?,
        network_resources: tx.list::<NetworkResource>(id).await?,
        network_routers: tx.list::<NetworkRouter>(id).await?,
        nameserver_groups: tx.list::<NameserverGroup>(id).await?,
        dns_settings: DnsSettings {
            disabled_management_groups: record.dns_settings.disabled_management_groups.clone(),
        },
    })
}

/// The account as `tx` sees it, decoded once per account version and shared
/// by the transactions that see that version (those asking at once wait for
/// one decode). A write transaction that already wrote to the account sees
/// changes no version holds yet: for it the account is decoded afresh.
pub async fn snapshot(store: &Store, tx: &mut Tx, id: &str) -> Result<Arc<Account>, ViewError> {
    if tx.wrote(id) {
        return Ok(Arc::new(decode(tx, id).await?));
    }
    let version = tx.version(id).await?;
    store
        .accounts()
        .get_or_load(id, version, || decode(tx, id))
        .await
}

/// The account as the network maps see it, for the views of who reaches
/// whom: a reverse-proxy peer reaches only the services exposed to it.
pub async fn mapped(
    store: &Store,
    expose: &Expose,
    tx: &mut Tx,
    id: &str,
) -> Result<Arc<Account>, ViewError> {
    let account = snapshot(store, tx, id).await?;
    Ok(expose.as_mapped(account).await)
}

/// The account `id` as `tx` sees it.
async fn decode(tx: &mut Tx, id: &str) -> Result<Account, ViewError> {
    let record = tx
        .get::<AccountRecord>(id, id)
        .await?
        .ok_or_else(|| ViewError::Missing(id.to_string()))?;
    Ok(aggregate(tx, &record).await?)
}

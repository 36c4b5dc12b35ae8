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

/// Stores `peer` in `tx`, replacing the one with its id. The commit keeps
/// the account with the peer in place for the next reader, so a peer
/// logging in or coming online costs no decode of its account.
pub async fn put_peer(tx: &mut Tx, account: &str, peer: &Peer) -> Result<(), StoreError> {
    tx.put_carried(account, peer, |a, peer| {
        put_in(&mut a.peers, peer, |p| p.id.as_str());
    })
    .await
}

/// Stores `group` in `tx` like [`put_peer`].
pub async fn put_group(tx: &mut Tx, account: &str, group: &Group) -> Result<(), StoreError> {
    tx.put_carried(account, group, |a, group| {
        put_in(&mut a.groups, group, |g| g.id.as_str());
    })
    .await
}

/// Replaces the item with `value`'s id in `list`, or adds it where the
/// store's id order puts it.
fn put_in<T: Clone>(list: &mut Vec<T>, value: &T, id: impl Fn(&T) -> &str) {
    match list.iter().position(|item| id(item) == id(value)) {
        Some(at) => list[at] = value.clone(),
        None => {
            let at = list.partition_point(|item| id(item) < id(value));
            list.insert(at, value.clone());
        }
    }
}

/// The account `id` as `tx` sees it.
async fn decode(tx: &mut Tx, id: &str) -> Result<Account, ViewError> {
    let record = tx
        .get::<AccountRecord>(id, id)
        .await?
        .ok_or_else(|| ViewError::Missing(id.to_string()))?;
    Ok(aggregate(tx, &record).await?)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use meshplane_core::model::PeerId;

    use super::*;

    /// The account as the snapshots hold it at the current version, if
    /// they do without decoding (carried or read before), and as its rows
    /// decode.
    async fn held_and_stored(store: &Store, id: &str) -> (Option<Arc<Account>>, Account) {
        let mut tx = store.read().await.unwrap();
        let version = tx.version(id).await.unwrap();
        let held = store
            .accounts()
            .get_or_load(id, version, || async { Err("not held") })
            .await
            .ok();
        (held, decode(&mut tx, id).await.unwrap())
    }

    #[tokio::test]
    async fn carried_accounts_equal_their_stored_rows() {
        let dir = std::env::temp_dir().join(format!("meshplane-carried-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.join("test.db").display());
        let store = Store::open(&url).await.unwrap();
        crate::bootstrap::admin_token(&store, "carried")
            .await
            .unwrap();
        let id = store
            .read()
            .await
            .unwrap()
            .accounts_with::<User>()
            .await
            .unwrap()[0]
            .clone();
        let peer = |id: &str, last: u8| Peer::new(id, id, Ipv4Addr::new(100, 64, 0, last));

        let mut tx = store.write().await.unwrap();
        tx.put(&id, &peer("p2", 2)).await.unwrap();
        tx.put(&id, &peer("p4", 4)).await.unwrap();
        tx.commit().await.unwrap();
        let mut tx = store.read().await.unwrap();
        snapshot(&store, &mut tx, &id).await.unwrap();
        drop(tx);

        // A peer added between the others, one renamed, a group: carried.
        let mut tx = store.write().await.unwrap();
        put_peer(&mut tx, &id, &peer("p3", 3)).await.unwrap();
        let mut renamed = peer("p2", 2);
        renamed.name = "renamed".into();
        put_peer(&mut tx, &id, &renamed).await.unwrap();
        let group = Group::new("g", "g", vec![PeerId::new("p3")]);
        put_group(&mut tx, &id, &group).await.unwrap();
        tx.commit().await.unwrap();
        let (held, stored) = held_and_stored(&store, &id).await;
        let held = held.expect("carried forward");
        assert_eq!(*held, stored);
        let names: Vec<&str> = held.peers.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["renamed", "p3", "p4"]);

        // Read, then carried again from what was read.
        let mut tx = store.write().await.unwrap();
        put_peer(&mut tx, &id, &peer("p1", 1)).await.unwrap();
        tx.commit().await.unwrap();
        let (held, stored) = held_and_stored(&store, &id).await;
        assert_eq!(*held.expect("carried forward"), stored);

        // A write that says nothing of the account ends the carrying.
        let mut tx = store.write().await.unwrap();
        put_peer(&mut tx, &id, &peer("p5", 5)).await.unwrap();
        tx.put(&id, &Group::new("h", "h", Vec::new()))
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let (held, _) = held_and_stored(&store, &id).await;
        assert!(held.is_none(), "decoded by the next reader");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

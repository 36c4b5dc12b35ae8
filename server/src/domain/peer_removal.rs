//! Deleting a peer: the REST delete and the server's removal of ephemeral
//! peers take the same steps and record the same audit details.

use std::collections::BTreeMap;

use meshplane_core::model::{
    Group, IngressPeer, IngressPortAllocation, NetworkRouter, Peer, PeerId, Policy, Route,
};
use meshplane_core::temporary_access;
use thiserror::Error;

use super::audit::meta;
use crate::store::{StoreError, Tx};

/// Why a peer was not deleted.
#[derive(Debug, Error)]
pub enum RemovalError {
    /// It serves a route, a network router or as an ingress peer; `kind`
    /// names which and `name` the one.
    #[error("peer has been linked to {kind}: {name}")]
    Linked { kind: &'static str, name: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Deletes `peer` of `account` in `tx`: its group memberships, the policy
/// rules naming it as a resource (and policies left without rules), its
/// ingress port allocations, the peer and its secret-index entry. Refused
/// while the peer serves a route, a network router or as an ingress peer.
/// The caller records the audit event (with [`removal_meta`]), may record
/// the policy changes it returns, and commits, which updates the other
/// peers' maps.
pub async fn delete_peer(
    tx: &mut Tx,
    account: &str,
    peer: &Peer,
) -> Result<temporary_access::Forgotten, RemovalError> {
    let routes = tx.list::<Route>(account).await?;
    let routers = tx.list::<NetworkRouter>(account).await?;
    let ingress_peers = tx.list::<IngressPeer>(account).await?;
    let serves = |p: &Option<PeerId>| p.as_ref() == Some(&peer.id);
    let link = routes
        .iter()
        .find(|r| serves(&r.peer))
        .map(|r| ("route", r.network_id.as_str()))
        .or_else(|| {
            routers
                .iter()
                .find(|r| serves(&r.peer))
                .map(|r| ("network router", r.id.as_str()))
        })
        .or_else(|| {
            ingress_peers
                .iter()
                .find(|i| i.peer_id == peer.id)
                .map(|i| ("ingress peer", i.id.as_str()))
        });
    if let Some((kind, name)) = link {
        return Err(RemovalError::Linked {
            kind,
            name: name.to_string(),
        });
    }
    for mut g in tx.list::<Group>(account).await? {
        if g.peers.contains(&peer.id) {
            g.peers.retain(|p| p != &peer.id);
            tx.put(account, &g).await?;
        }
    }
    let policies = tx.list::<Policy>(account).await?;
    let forgotten = temporary_access::forget_peer(&policies, &peer.id);
    for p in &forgotten.changed {
        tx.put(account, p).await?;
    }
    for p in &forgotten.removed {
        tx.delete::<Policy>(account, p.id.as_str()).await?;
    }
    for a in tx.list::<IngressPortAllocation>(account).await? {
        if a.peer_id == peer.id {
            tx.delete::<IngressPortAllocation>(account, a.id.as_str())
                .await?;
        }
    }
    tx.delete::<Peer>(account, peer.id.as_str()).await?;
    Ok(forgotten)
}

/// The audit details of a peer's removal.
pub fn removal_meta(peer: &Peer) -> BTreeMap<String, String> {
    meta([("name", &peer.name), ("ip", &peer.ip.to_string())])
}

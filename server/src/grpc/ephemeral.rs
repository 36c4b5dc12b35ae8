//! Removes ephemeral peers that stay offline too long (10 minutes unless
//! `--ephemeral-offline-secs` says otherwise). The core decides which are
//! due ([`ephemeral_sweep`]); this task wakes when the next one is, deletes
//! them the way the REST delete does ([`delete_peer`]), records the
//! removal with the system as initiator and, once committed, ends their
//! expose sessions. The commit reaches the other peers' Sync streams like
//! any other change.
//!
//! A peer that goes offline after a sweep becomes due no sooner than one
//! period later, so sleeping at most one period between sweeps never
//! misses one.

use std::time::Duration as StdDuration;

use meshplane_core::model::{Activity, AuditEvent, Peer, PeerId};
use meshplane_core::registration::ephemeral_sweep;
use meshplane_core::{Duration, Timestamp};

use crate::domain::peer_removal::{delete_peer, removal_meta};
use crate::expose::Expose;
use crate::ids;
use crate::store::{Store, StoreError};

/// The audit initiator of what the server does by itself.
const SYSTEM_INITIATOR: &str = "sys";
/// The wait before another attempt after the store failed.
const RETRY: StdDuration = StdDuration::from_secs(5);

/// Sweeps forever: at start, then whenever the next ephemeral peer is due.
pub async fn remove_offline(store: Store, expose: Expose, offline: Duration) {
    loop {
        let now = ids::now();
        let wait = match sweep(&store, now, offline).await {
            Ok((removed, next)) => {
                for peer in &removed {
                    expose.remove_peer(peer).await;
                }
                let until = next.map_or(offline.as_millis(), |t| {
                    t.as_millis().saturating_sub(now.as_millis())
                });
                let ms = until.clamp(1, offline.as_millis().max(1));
                StdDuration::from_millis(u64::try_from(ms).unwrap_or(1))
            }
            Err(e) => {
                tracing::warn!(error = %e, "ephemeral peers not swept");
                RETRY
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// Deletes every ephemeral peer due at `now`, in one transaction; the
/// peers removed and the time the next one will be due.
async fn sweep(
    store: &Store,
    now: Timestamp,
    offline: Duration,
) -> Result<(Vec<PeerId>, Option<Timestamp>), StoreError> {
    let mut tx = store.write().await?;
    let mut removed = Vec::new();
    let mut next: Option<Timestamp> = None;
    for account in tx.accounts_with::<Peer>().await? {
        let peers = tx.list::<Peer>(&account).await?;
        let sweep = ephemeral_sweep(&peers, now, offline);
        next = match (next, sweep.next) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        for peer in peers.iter().filter(|p| sweep.due.contains(&p.id)) {
            if let Err(e) = delete_peer(&mut tx, &account, peer).await {
                tracing::warn!(peer = %peer.id, reason = %e, "ephemeral peer kept");
                continue;
            }
            let details = removal_meta(peer);
            tx.append_event(&account, |seq| {
                AuditEvent::new(
                    seq.to_string(),
                    now,
                    Activity::PEER_REMOVED_BY_USER,
                    SYSTEM_INITIATOR,
                    peer.id.as_str(),
                    details,
                )
            })
            .await?;
            tracing::info!(peer = %peer.id, name = peer.name, "ephemeral peer removed after being offline");
            removed.push(peer.id.clone());
        }
    }
    tx.commit().await?;
    Ok((removed, next))
}

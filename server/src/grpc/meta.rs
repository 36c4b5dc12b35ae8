//! What a peer reports about its machine (`PeerSystemMeta`): checked
//! against bounds wherever it arrives (Login, Sync, SyncMeta), and the
//! SyncMeta call that brings changes made after login.
//!
//! Posture checks decide on this meta, so it is stored on the peer and a
//! change reaches the account's maps: the store's commit notice makes the
//! account's hub recompute ([`super::updates`]), and a stream sends a map
//! only when it differs. Every value is bounded, and a peer's meta changes
//! at most once per [`MIN_INTERVAL`], so a peer can make the server neither
//! store much nor recompute maps often.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use meshplane_core::limits;
use meshplane_core::model::{Peer, PeerMeta};
use meshplane_core::registration::RegistrationError;
use meshplane_core::validate::ValidationError;
use meshplane_proto::status::from_core;
use meshplane_proto::v1::{PeerSystemMeta, SyncMetaRequest, SyncMetaResponse};
use tonic::Status;

use super::internal;
use super::login::{checked_peer, key_entry};
use super::service::Shared;
use crate::domain::account_view::put_peer;
use crate::ids;

/// Most interface addresses a peer may report: hosts with many interfaces
/// (containers, VPNs) have dozens, none has this many.
pub const MAX_NETWORK_ADDRESSES: usize = 256;
/// Most running processes a peer may report; it reports only paths the
/// account's posture checks name.
pub const MAX_PROCESSES: usize = limits::MAX_ITEMS;
/// Least time between two changes of one peer's meta by SyncMeta.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// Most peer keys remembered by the rate limit at once (only registered
/// peers get there): past this the entries older than [`MIN_INTERVAL`],
/// which no longer limit anything, are dropped; if none is that old, the
/// call is refused.
const MAX_TRACKED: usize = 100_000;

/// A peer's report, checked: its hostname and its meta in the core's terms.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reported {
    pub hostname: String,
    pub meta: PeerMeta,
}

/// Checks `m` against the bounds; INVALID_ARGUMENT naming the first field
/// over its bound, or the first address that is not in CIDR form.
pub fn checked(m: PeerSystemMeta) -> Result<Reported, Status> {
    bounds(&m).map_err(|e| from_core(&e))?;
    if let Some(bad) = m.network_addresses.iter().find(|a| !is_cidr(a)) {
        return Err(Status::invalid_argument(format!(
            "network address {bad:?} is not in CIDR form"
        )));
    }
    Ok(Reported {
        hostname: m.hostname,
        meta: PeerMeta {
            os: m.os,
            os_version: m.os_version,
            kernel_version: m.kernel_version,
            version: m.client_version,
            ui_version: m.ui_version,
            serial_number: m.serial_number,
            network_addresses: m.network_addresses,
            processes: m.processes,
        },
    })
}

fn bounds(m: &PeerSystemMeta) -> Result<(), ValidationError> {
    limits::name("hostname", &m.hostname)?;
    for (field, value) in [
        ("os", &m.os),
        ("os version", &m.os_version),
        ("kernel version", &m.kernel_version),
        ("client version", &m.client_version),
        ("ui version", &m.ui_version),
        ("serial number", &m.serial_number),
    ] {
        limits::text(field, value, limits::MAX_TEXT_CHARS)?;
    }
    limits::count(
        "network addresses",
        m.network_addresses.len(),
        MAX_NETWORK_ADDRESSES,
    )?;
    limits::count("processes", m.processes.len(), MAX_PROCESSES)?;
    for p in &m.processes {
        limits::text("process path", p, limits::MAX_TEXT_CHARS)?;
    }
    Ok(())
}

/// `address/length` with an IPv4 or IPv6 address and a length that fits it.
fn is_cidr(text: &str) -> bool {
    let Some((ip, len)) = text.split_once('/') else {
        return false;
    };
    let (Ok(ip), Ok(len)) = (ip.parse::<IpAddr>(), len.parse::<u8>()) else {
        return false;
    };
    len <= if ip.is_ipv4() { 32 } else { 128 }
}

/// Stores `reported` on `peer`; whether anything changed.
pub fn store(peer: &mut Peer, reported: Reported) -> bool {
    if peer.hostname == reported.hostname && peer.meta == reported.meta {
        return false;
    }
    peer.hostname = reported.hostname;
    peer.meta = reported.meta;
    true
}

/// The per-key rate limit of SyncMeta.
#[derive(Debug, Default)]
pub struct Limiter {
    last: Mutex<HashMap<String, Instant>>,
}

impl Limiter {
    /// Admits a call of `key` at `now`, or refuses it with
    /// RESOURCE_EXHAUSTED when the key's last admitted call is too recent
    /// (or too many keys are being limited at once).
    fn admit(&self, key: &str, now: Instant) -> Result<(), Status> {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(at) = last.get(key) {
            let since = now.saturating_duration_since(*at);
            if since < MIN_INTERVAL {
                return Err(too_often());
            }
        }
        if last.len() >= MAX_TRACKED && !last.contains_key(key) {
            last.retain(|_, at| now.saturating_duration_since(*at) < MIN_INTERVAL);
            if last.len() >= MAX_TRACKED {
                return Err(too_often());
            }
        }
        last.insert(key.to_string(), now);
        Ok(())
    }
}

fn too_often() -> Status {
    Status::resource_exhausted(format!(
        "meta updates are limited to one per {} ms per peer",
        MIN_INTERVAL.as_millis()
    ))
}

/// SyncMeta: stores the meta of the peer holding `key` if it changed.
///
/// The meta must be within its bounds and the key registered (NOT_FOUND
/// otherwise). A report equal to what is stored changes nothing and is
/// answered at once; a changed one counts against the peer's rate limit
/// (so only registered peers are tracked, and a refused report does not use
/// up the peer's turn) and is stored if the peer may still log in.
pub async fn sync_meta(
    shared: &Shared,
    key: &str,
    request: SyncMetaRequest,
) -> Result<SyncMetaResponse, Status> {
    let reported = checked(request.meta.unwrap_or_default())?;
    let mut tx = shared.store.read().await.map_err(internal)?;
    let stored = tx
        .find_secret::<Peer>(&key_entry(key))
        .await
        .map_err(internal)?;
    drop(tx);
    let Some((_, stored)) = stored else {
        return Err(from_core(&RegistrationError::NotRegistered));
    };
    if stored.hostname == reported.hostname && stored.meta == reported.meta {
        return Ok(SyncMetaResponse {});
    }
    shared.meta_limiter.admit(key, Instant::now())?;
    let mut tx = shared.store.write().await.map_err(internal)?;
    let (record, mut peer) = checked_peer(&mut tx, key, ids::now()).await?;
    if store(&mut peer, reported) {
        put_peer(&mut tx, &record.id, &peer)
            .await
            .map_err(internal)?;
        tx.commit().await.map_err(internal)?;
    }
    Ok(SyncMetaResponse {})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_forms() {
        for ok in ["10.0.0.1/24", "192.168.1.7/32", "fd00::1/64", "::/0"] {
            assert!(is_cidr(ok), "{ok}");
        }
        for bad in ["10.0.0.1", "10.0.0.1/33", "fd00::1/129", "x/8", "10.0.0.1/"] {
            assert!(!is_cidr(bad), "{bad}");
        }
    }

    #[test]
    fn one_call_per_interval_per_key() {
        let limiter = Limiter::default();
        let t0 = Instant::now();
        assert!(limiter.admit("a", t0).is_ok());
        assert!(limiter.admit("b", t0).is_ok());
        let refused = limiter
            .admit("a", t0 + MIN_INTERVAL / 2)
            .expect_err("too soon");
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert!(limiter.admit("a", t0 + MIN_INTERVAL).is_ok());
    }
}

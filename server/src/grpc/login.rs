//! Login: a registered peer (found by its WireGuard key) logs in again; a
//! new one registers with a setup key. Registration persists everything in
//! one write transaction: the peer, the key-to-peer lookup, its group
//! memberships, the setup key's usage and the audit event.
//!
//! A peer is found by its key through the store's secret index (row
//! `wg:<key>`, kind `peer`), so a login costs one indexed lookup whatever
//! the number of accounts, and deleting the peer removes the entry too.

use std::net::IpAddr;

use meshplane_core::index::AccountIndex;
use meshplane_core::keys::hash_secret;
use meshplane_core::model::{
    AccountSettings, Activity, AuditEvent, Peer, PeerId, PostureCheck, SetupKey, User,
};
use meshplane_core::posture;
use meshplane_core::registration::{
    check_peer_login, register_with_setup_key, RegistrationError, RegistrationRequest,
};
use meshplane_core::validate::Cidr;
use meshplane_core::Timestamp;
use meshplane_proto::status::from_core;
use meshplane_proto::v1::{LoginRequest, LoginResponse};
use rand_core::OsRng;
use tonic::Status;

use super::internal;
use super::meta::{self as system_meta, Reported};
use super::service::Shared;
use crate::domain::account_view::{put_group, put_peer, snapshot, ViewError};
use crate::domain::audit::meta;
use crate::ids;
use crate::records::AccountRecord;
use crate::store::{Store, Tx};

/// The secret-index entry that leads from a WireGuard key to its peer.
pub(crate) fn key_entry(key: &str) -> String {
    format!("wg:{key}")
}

/// The registered peer holding `key` and its account's record, if it may
/// log in (or sync, or report) at `now`: `None` when no peer holds the key,
/// PERMISSION_DENIED when it may not. Reads the peer, its account's record
/// and the user that added it, not the whole account: every login and
/// every stream a peer opens starts here.
async fn registered_peer(
    tx: &mut Tx,
    key: &str,
    now: Timestamp,
) -> Result<Option<(AccountRecord, Peer)>, Status> {
    let Some((account_id, peer)) = tx
        .find_secret::<Peer>(&key_entry(key))
        .await
        .map_err(internal)?
    else {
        return Ok(None);
    };
    let Some(record) = tx
        .get::<AccountRecord>(&account_id, &account_id)
        .await
        .map_err(internal)?
    else {
        return Ok(None);
    };
    let owner = match &peer.user_id {
        Some(user) => tx
            .get::<User>(&account_id, user.as_str())
            .await
            .map_err(internal)?,
        None => None,
    };
    check_peer_login(&peer, owner.as_ref(), &record.settings, now).map_err(|e| from_core(&e))?;
    Ok(Some((record, peer)))
}

/// [`registered_peer`], NOT_FOUND when no peer holds `key`.
pub async fn checked_peer(
    tx: &mut Tx,
    key: &str,
    now: Timestamp,
) -> Result<(AccountRecord, Peer), Status> {
    registered_peer(tx, key, now)
        .await?
        .ok_or_else(|| from_core(&RegistrationError::NotRegistered))
}

/// Records that the peer is online now, with what it reports (if it did).
pub fn mark_seen(peer: &mut Peer, reported: Option<Reported>, now: Timestamp) {
    if let Some(r) = reported {
        system_meta::store(peer, r);
    }
    peer.connected = true;
    peer.last_seen = now;
}

/// Logs in (or registers) the peer holding WireGuard key `key`, which
/// connected from `from` (recorded as its `connection_ip`) when known.
pub async fn login(
    shared: &Shared,
    key: &str,
    mut req: LoginRequest,
    from: Option<IpAddr>,
) -> Result<LoginResponse, Status> {
    let connection_ip = from.map(|ip| ip.to_string());
    let now = ids::now();
    let reported = req.meta.take().map(system_meta::checked).transpose()?;
    let mut tx = shared.store.write().await.map_err(internal)?;
    let (account_id, settings, peer) = match registered_peer(&mut tx, key, now).await? {
        Some((record, mut peer)) => {
            peer.last_login = now;
            if connection_ip.is_some() {
                peer.connection_ip = connection_ip;
            }
            mark_seen(&mut peer, reported, now);
            put_peer(&mut tx, &record.id, &peer)
                .await
                .map_err(internal)?;
            (record.id, record.settings, peer)
        }
        None => {
            let joining = Joining {
                key,
                req,
                reported: reported.unwrap_or_default(),
                connection_ip,
            };
            register(&shared.store, &mut tx, joining, now).await?
        }
    };
    tx.commit().await.map_err(internal)?;
    let mut answer = answer(&settings, &peer)?;
    answer.process_check_paths = process_check_paths(shared, &account_id, peer).await?;
    Ok(answer)
}

/// The process paths the peer must report on ([`posture::process_paths`]).
/// Indexing the account costs as much as a map, so it is done only when the
/// account has a process check at all, and off the async threads.
async fn process_check_paths(
    shared: &Shared,
    account_id: &str,
    peer: Peer,
) -> Result<Vec<String>, Status> {
    let mut tx = shared.store.read().await.map_err(internal)?;
    let checks = tx
        .list::<PostureCheck>(account_id)
        .await
        .map_err(internal)?;
    if !checks.iter().any(|c| c.checks.process_check.is_some()) {
        return Ok(Vec::new());
    }
    let account = snapshot(&shared.store, &mut tx, account_id)
        .await
        .map_err(internal)?;
    crate::cpu::run(move || {
        let index = AccountIndex::new(&account);
        index
            .rank(peer.id.as_str())
            .map(|rank| posture::process_paths(&index, rank))
            .unwrap_or_default()
    })
    .await
    .map_err(internal)
}

/// A peer asking to join with a setup key.
struct Joining<'a> {
    /// Its WireGuard key.
    key: &'a str,
    req: LoginRequest,
    reported: Reported,
    connection_ip: Option<String>,
}

/// Registers a new peer with the request's setup key, in `tx`; its
/// account's id and settings, and the peer. The account is the one this
/// server already holds when it is current (a registration reads no peer
/// rows), and the commit carries it forward with the peer in it.
async fn register(
    store: &Store,
    tx: &mut Tx,
    joining: Joining<'_>,
    now: Timestamp,
) -> Result<(String, AccountSettings, Peer), Status> {
    let Joining {
        key,
        req,
        reported,
        connection_ip,
    } = joining;
    let setup_key = req.setup_key.trim();
    if setup_key.is_empty() {
        return Err(Status::not_found(format!(
            "{}: a setup key is required to register it",
            RegistrationError::NotRegistered
        )));
    }
    // Keys are upper-case UUIDs; daemons may send them in lower case.
    let (account_id, setup_key) = tx
        .find_secret::<SetupKey>(&hash_secret(&setup_key.to_uppercase()))
        .await
        .map_err(internal)?
        .ok_or_else(|| from_core(&RegistrationError::UnknownSetupKey))?;
    let account = snapshot(store, tx, &account_id)
        .await
        .map_err(|e| match e {
            ViewError::Missing(_) => from_core(&RegistrationError::UnknownSetupKey),
            ViewError::Store(e) => internal(e),
        })?;
    let request = RegistrationRequest {
        wg_key: key.to_string(),
        hostname: reported.hostname,
        meta: reported.meta,
        extra_dns_labels: req.extra_dns_labels,
        connection_ip,
    };
    let peer_id = PeerId::new(ids::new_id());
    let mut done =
        register_with_setup_key(&account, &setup_key, &request, peer_id, now, &mut OsRng)
            .map_err(|e| from_core(&e))?;
    done.peer.connected = true;
    let peer = done.peer.clone();
    let account_id = account_id.as_str();
    put_peer(tx, account_id, &peer).await.map_err(internal)?;
    tx.put_secret(account_id, &key_entry(key), &peer)
        .await
        .map_err(internal)?;
    for group in account
        .groups
        .iter()
        .filter(|g| done.groups.contains(&g.id))
    {
        let mut group = group.clone();
        group.peers.push(peer.id.clone());
        put_group(tx, account_id, &group).await.map_err(internal)?;
    }
    tx.put(account_id, &done.setup_key)
        .await
        .map_err(internal)?;
    let details = meta([
        ("name", peer.name.as_str()),
        ("ip", &peer.ip.to_string()),
        ("fqdn", &fqdn(&account.settings, &peer)),
        ("setup_key_name", &setup_key.name),
    ]);
    tx.append_event(account_id, |seq| {
        AuditEvent::new(
            seq.to_string(),
            now,
            Activity::PEER_ADDED_WITH_SETUP_KEY,
            setup_key.id.as_str(),
            peer.id.as_str(),
            details,
        )
    })
    .await
    .map_err(internal)?;
    Ok((account_id.to_string(), account.settings.clone(), peer))
}

/// `<label>.<dns domain>`.
fn fqdn(settings: &AccountSettings, peer: &Peer) -> String {
    format!("{}.{}", peer.dns_label, settings.dns_domain)
}

/// The login answer: who the peer is in the mesh.
fn answer(settings: &AccountSettings, peer: &Peer) -> Result<LoginResponse, Status> {
    let range = &settings.network_range;
    let network: Cidr = range
        .parse()
        .map_err(|_| from_core(&RegistrationError::BadNetwork(range.clone())))?;
    Ok(LoginResponse {
        peer_id: peer.id.to_string(),
        address: format!("{}/{}", peer.ip, network.0.prefix_len()),
        fqdn: fqdn(settings, peer),
        dns_domain: settings.dns_domain.clone(),
        // Filled in by the service, which knows the address dialled.
        relay: None,
        // Filled in by `login`, off the async threads.
        process_check_paths: Vec::new(),
    })
}

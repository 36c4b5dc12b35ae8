//! `/api/peers`: the machines of the mesh. Peers join over gRPC (later
//! work); here they are listed, renamed, re-addressed and removed. Who a peer
//! can reach is computed by the core from the whole account.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use meshplane_core::index::AccountIndex;
use meshplane_core::model::{
    Account, Activity, DnsSettings, Group, NameserverGroup, Network, NetworkResource,
    NetworkRouter, Peer, PeerId, Policy, PostureCheck, Route, User,
};
use meshplane_core::validate::Cidr;
use meshplane_core::{dns_label, netmap, policy, Timestamp};
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::{meta, Admin};
use super::failure::{Body, Failure, Filter, Ids};
use super::groups::minimum;
use super::{deleted, load, App, NEVER};
use crate::ids;
use crate::records::AccountRecord;
use crate::store::Tx;

pub fn routes() -> Router<App> {
    Router::new()
        .route("/api/peers", get(list))
        .route("/api/peers/{peer_id}", get(read).put(update).delete(remove))
        .route("/api/peers/{peer_id}/accessible-peers", get(accessible))
}

#[derive(Debug, Deserialize)]
struct PeerFilter {
    name: Option<String>,
    ip: Option<String>,
}

#[derive(Debug, Deserialize)]
struct PeerRequest {
    name: String,
    ssh_enabled: bool,
    login_expiration_enabled: bool,
    inactivity_expiration_enabled: bool,
    #[serde(default)]
    approval_required: Option<bool>,
    #[serde(default)]
    ip: Option<String>,
}

/// The whole account as the core sees it.
pub async fn aggregate(tx: &mut Tx, record: &AccountRecord) -> Result<Account, Failure> {
    let id = record.id.as_str();
    Ok(Account {
        id: meshplane_core::model::AccountId::new(id),
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

fn time_or_never(t: Timestamp) -> Value {
    if t == Timestamp::EPOCH {
        json!(NEVER)
    } else {
        json!(t)
    }
}

/// `<label>.<dns domain>`.
fn fqdn(p: &Peer, account: &Account) -> String {
    format!("{}.{}", p.dns_label, account.settings.dns_domain)
}

/// The `GroupMinimum` of every group each peer is in, computed once for
/// the whole account.
fn memberships(account: &Account) -> BTreeMap<&PeerId, Vec<Value>> {
    let mut out: BTreeMap<&PeerId, Vec<Value>> = BTreeMap::new();
    for g in &account.groups {
        let min = minimum(g);
        for p in &g.peers {
            out.entry(p).or_default().push(min.clone());
        }
    }
    out
}

/// The REST `Peer`; `groups` are its groups' `GroupMinimum`s.
fn view(p: &Peer, groups: &[Value], account: &Account, now: Timestamp) -> Value {
    let os = format!("{} {}", p.meta.os, p.meta.os_version)
        .trim()
        .to_string();
    json!({
        "id": p.id,
        "name": p.name,
        "created_at": time_or_never(p.created_at),
        "ip": p.ip,
        "connection_ip": p.connection_ip.clone().unwrap_or_default(),
        "connected": p.connected,
        "last_seen": time_or_never(p.last_seen),
        "os": os,
        "kernel_version": p.meta.kernel_version,
        "geoname_id": p.location.geoname_id,
        "version": p.meta.version,
        "groups": groups,
        "ssh_enabled": p.ssh_enabled,
        "user_id": p.user_id.as_ref().map(ToString::to_string).unwrap_or_default(),
        "hostname": p.hostname,
        "ui_version": p.meta.ui_version,
        "dns_label": fqdn(p, account),
        "login_expiration_enabled": p.login_expiration_enabled,
        "login_expired": p.login_expired(&account.settings, now),
        "last_login": time_or_never(p.last_login),
        "inactivity_expiration_enabled": p.inactivity_expiration_enabled,
        "approval_required": p.approval_required,
        "country_code": p.location.country_code,
        "city_name": p.location.city_name,
        "serial_number": p.meta.serial_number,
        "extra_dns_labels": p.extra_dns_labels,
        "ephemeral": p.ephemeral,
    })
}

/// The REST `Peer` of one peer of `account`.
fn single(peer: &Peer, account: &Account) -> Value {
    let member = memberships(account);
    let groups = member.get(&peer.id).map_or(&[][..], Vec::as_slice);
    view(peer, groups, account, ids::now())
}

/// The `PeerBatch` list: the peers `filter` keeps, each with how many
/// peers its network map lists. CPU-bound; runs off the async workers.
fn batch(account: &Account, filter: &PeerFilter, now: Timestamp) -> Vec<Value> {
    let started = std::time::Instant::now();
    let index = AccountIndex::new(account);
    let mut maps = netmap::MapBuilder::new(&index, now);
    let member = memberships(account);
    let out: Vec<Value> = account
        .peers
        .iter()
        .filter(|p| filter.name.as_ref().is_none_or(|n| &p.name == n))
        .filter(|p| filter.ip.as_ref().is_none_or(|ip| &p.ip.to_string() == ip))
        .map(|p| {
            let groups = member.get(&p.id).map_or(&[][..], Vec::as_slice);
            let reachable = index
                .rank(p.id.as_str())
                .map_or(0, |rank| maps.map(rank).peers().count());
            let mut v = view(p, groups, account, now);
            v["accessible_peers_count"] = json!(reachable);
            v
        })
        .collect();
    tracing::debug!(
        peers = out.len(),
        elapsed_ms = started.elapsed().as_millis(),
        "peer list computed"
    );
    out
}

async fn list(
    State(app): State<App>,
    Admin(caller): Admin,
    Filter(filter): Filter<PeerFilter>,
) -> Result<Json<Value>, Failure> {
    let mut tx = app.store.read().await?;
    let account = aggregate(&mut tx, &caller.account).await?;
    drop(tx);
    let now = ids::now();
    let out = tokio::task::spawn_blocking(move || batch(&account, &filter, now))
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "peer list failed");
            Failure::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        })?;
    Ok(Json(Value::Array(out)))
}

async fn read(
    State(app): State<App>,
    Admin(caller): Admin,
    Ids(id): Ids<String>,
) -> Result<Json<Value>, Failure> {
    let mut tx = app.store.read().await?;
    let peer = load::<Peer>(&mut tx, caller.account_id(), &id).await?;
    let account = aggregate(&mut tx, &caller.account).await?;
    Ok(Json(single(&peer, &account)))
}

async fn accessible(
    State(app): State<App>,
    Admin(caller): Admin,
    Ids(id): Ids<String>,
) -> Result<Json<Value>, Failure> {
    let mut tx = app.store.read().await?;
    let peer = load::<Peer>(&mut tx, caller.account_id(), &id).await?;
    let account = aggregate(&mut tx, &caller.account).await?;
    drop(tx);
    let index = AccountIndex::new(&account);
    let reachable = policy::accessible_peers(&index, peer.id.as_str(), ids::now())?;
    let out = reachable
        .iter()
        .filter_map(|id| account.peers.iter().find(|p| &p.id == id))
        .map(|p| {
            json!({
                "id": p.id,
                "name": p.name,
                "ip": p.ip,
                "dns_label": fqdn(p, &account),
                "user_id": p.user_id.as_ref().map(ToString::to_string).unwrap_or_default(),
                "os": p.meta.os,
                "country_code": p.location.country_code,
                "city_name": p.location.city_name,
                "geoname_id": p.location.geoname_id,
                "connected": p.connected,
                "last_seen": time_or_never(p.last_seen),
            })
        })
        .collect();
    Ok(Json(out))
}

/// A new address for `peer`: inside the account network, not its network or
/// broadcast address, not another peer's.
fn new_ip(text: &str, peer: &Peer, account: &Account) -> Result<Ipv4Addr, Failure> {
    let ip: Ipv4Addr = text
        .parse()
        .map_err(|_| Failure::invalid(format!("invalid IP address \"{text}\"")))?;
    let network = account.settings.network_range.parse::<Cidr>()?;
    let net = network.0;
    if !net.contains(&ip) || ip == net.network() || ip == net.broadcast() {
        return Err(Failure::invalid(format!(
            "IP {ip} is not a host address of the account network {net}"
        )));
    }
    if account.peers.iter().any(|p| p.ip == ip && p.id != peer.id) {
        return Err(Failure::conflict(format!(
            "IP {ip} is already used by another peer"
        )));
    }
    Ok(ip)
}

async fn update(
    State(app): State<App>,
    Admin(caller): Admin,
    Ids(id): Ids<String>,
    Body(req): Body<PeerRequest>,
) -> Result<Json<Value>, Failure> {
    let account_id = caller.account_id();
    let mut tx = app.store.write().await?;
    let mut peer = load::<Peer>(&mut tx, account_id, &id).await?;
    let record = load::<AccountRecord>(&mut tx, account_id, account_id).await?;
    let mut account = aggregate(&mut tx, &record).await?;
    let name = req.name.trim();
    if name.is_empty() {
        return Err(Failure::invalid("peer name shouldn't be empty"));
    }
    let mut changes = Vec::new();
    if name != peer.name {
        peer.name = name.to_string();
        let others = &account.peers;
        peer.dns_label = dns_label::label_for(name, peer.ip, peer.ephemeral, |l| {
            others.iter().any(|p| p.id != peer.id && p.dns_label == l)
        });
        changes.push(Activity::PEER_RENAMED);
    }
    if let Some(text) = req.ip.as_deref().filter(|t| !t.is_empty()) {
        let ip = new_ip(text, &peer, &account)?;
        if ip != peer.ip {
            peer.ip = ip;
            changes.push(Activity::PEER_IP_UPDATED);
        }
    }
    let mut toggle = |was: &mut bool, is: bool, on: Activity, off: Activity| {
        if *was != is {
            *was = is;
            changes.push(if is { on } else { off });
        }
    };
    toggle(
        &mut peer.ssh_enabled,
        req.ssh_enabled,
        Activity::PEER_SSH_ENABLED,
        Activity::PEER_SSH_DISABLED,
    );
    toggle(
        &mut peer.login_expiration_enabled,
        req.login_expiration_enabled,
        Activity::PEER_LOGIN_EXPIRATION_ENABLED,
        Activity::PEER_LOGIN_EXPIRATION_DISABLED,
    );
    if let Some(required) = req.approval_required {
        toggle(
            &mut peer.approval_required,
            required,
            Activity::PEER_APPROVAL_REVOKED,
            Activity::PEER_APPROVED,
        );
    }
    peer.inactivity_expiration_enabled = req.inactivity_expiration_enabled;
    tx.put(account_id, &peer).await?;
    for activity in changes {
        caller
            .audit(
                &mut tx,
                activity,
                peer.id.as_str(),
                meta([("name", &peer.name), ("ip", &peer.ip.to_string())]),
            )
            .await?;
    }
    tx.commit().await?;
    if let Some(slot) = account.peers.iter_mut().find(|p| p.id == peer.id) {
        *slot = peer.clone();
    }
    Ok(Json(single(&peer, &account)))
}

async fn remove(
    State(app): State<App>,
    Admin(caller): Admin,
    Ids(id): Ids<String>,
) -> Result<Json<Value>, Failure> {
    let account = caller.account_id();
    let mut tx = app.store.write().await?;
    let peer = load::<Peer>(&mut tx, account, &id).await?;
    delete_peer(&mut tx, account, &peer).await?;
    caller
        .audit(
            &mut tx,
            Activity::PEER_REMOVED_BY_USER,
            peer.id.as_str(),
            removal_meta(&peer),
        )
        .await?;
    tx.commit().await?;
    Ok(deleted())
}

/// Deletes `peer` of `account` in `tx`: its group memberships, the peer and
/// its secret-index entry. Refused while the peer serves a route or a
/// network router. Used by the REST delete and by the server's removal of
/// ephemeral peers; the caller records the audit event (with
/// [`removal_meta`]) and commits, which updates the other peers' maps.
pub async fn delete_peer(tx: &mut Tx, account: &str, peer: &Peer) -> Result<(), Failure> {
    let routes = tx.list::<Route>(account).await?;
    let routers = tx.list::<NetworkRouter>(account).await?;
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
        });
    if let Some((kind, name)) = link {
        return Err(Failure::bad_request(format!(
            "peer has been linked to {kind}: {name}"
        )));
    }
    for mut g in tx.list::<Group>(account).await? {
        if g.peers.contains(&peer.id) {
            g.peers.retain(|p| p != &peer.id);
            tx.put(account, &g).await?;
        }
    }
    tx.delete::<Peer>(account, peer.id.as_str()).await?;
    Ok(())
}

/// The audit details of a peer's removal.
pub fn removal_meta(peer: &Peer) -> BTreeMap<String, String> {
    meta([("name", &peer.name), ("ip", &peer.ip.to_string())])
}

//! `/api/peers`: the machines of the mesh. Peers join over gRPC (later
//! work); here they are listed, renamed, re-addressed and removed. Who a peer
//! can reach is computed by the core from the whole account.

use std::net::Ipv4Addr;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use meshplane_core::index::AccountIndex;
use meshplane_core::limits;
use meshplane_core::model::{Account, Activity, Peer, PeerId};
use meshplane_core::validate::Cidr;
use meshplane_core::{dns_label, netmap, policy, Timestamp};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{json, Value};

use super::auth::Caller;
use super::failure::{Body, Failure, Filter, Ids};
use super::groups::minimum;
use super::{deleted, load, App, NEVER};
use crate::domain::account_view::{mapped, snapshot};
use crate::domain::audit::meta;
use crate::domain::peer_removal::{delete_peer, removal_meta};
use crate::ids;
use crate::store::{StoreError, Tx};

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

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PeerRequest {
    name: String,
    ssh_enabled: bool,
    login_expiration_enabled: bool,
    inactivity_expiration_enabled: bool,
    approval_required: Option<bool>,
    ip: Option<String>,
}

/// A time as the REST API shows it: Go's zero time when never set.
#[derive(Debug, Clone, Copy)]
struct Time(Timestamp);

impl Serialize for Time {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 == Timestamp::EPOCH {
            s.serialize_str(NEVER)
        } else {
            self.0.serialize(s)
        }
    }
}

/// `<label>.<dns domain>`.
fn fqdn(p: &Peer, account: &Account) -> String {
    format!("{}.{}", p.dns_label, account.settings.dns_domain)
}

/// The REST `Peer` (`PeerBatch` with `accessible_peers_count`), serialised
/// straight from the stored peer: the list answers thousands of these, and
/// building a JSON tree per peer cost more than everything else together.
#[derive(Debug, Serialize)]
struct PeerView<'a> {
    id: &'a PeerId,
    name: &'a str,
    created_at: Time,
    ip: Ipv4Addr,
    connection_ip: &'a str,
    connected: bool,
    last_seen: Time,
    os: String,
    kernel_version: &'a str,
    geoname_id: u32,
    version: &'a str,
    /// The `GroupMinimum` of each group the peer is in.
    groups: Vec<&'a Value>,
    ssh_enabled: bool,
    user_id: &'a str,
    hostname: &'a str,
    ui_version: &'a str,
    dns_label: String,
    login_expiration_enabled: bool,
    login_expired: bool,
    last_login: Time,
    inactivity_expiration_enabled: bool,
    approval_required: bool,
    country_code: &'a str,
    city_name: &'a str,
    serial_number: &'a str,
    extra_dns_labels: &'a [String],
    ephemeral: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    accessible_peers_count: Option<usize>,
}

impl<'a> PeerView<'a> {
    fn new(p: &'a Peer, groups: Vec<&'a Value>, account: &Account, now: Timestamp) -> Self {
        PeerView {
            id: &p.id,
            name: &p.name,
            created_at: Time(p.created_at),
            ip: p.ip,
            connection_ip: p.connection_ip.as_deref().unwrap_or_default(),
            connected: p.connected,
            last_seen: Time(p.last_seen),
            os: format!("{} {}", p.meta.os, p.meta.os_version)
                .trim()
                .to_string(),
            kernel_version: &p.meta.kernel_version,
            geoname_id: p.location.geoname_id,
            version: &p.meta.version,
            groups,
            ssh_enabled: p.ssh_enabled,
            user_id: p.user_id.as_ref().map_or("", |u| u.as_str()),
            hostname: &p.hostname,
            ui_version: &p.meta.ui_version,
            dns_label: fqdn(p, account),
            login_expiration_enabled: p.login_expiration_enabled,
            login_expired: p.login_expired(&account.settings, now),
            last_login: Time(p.last_login),
            inactivity_expiration_enabled: p.inactivity_expiration_enabled,
            approval_required: p.approval_required,
            country_code: &p.location.country_code,
            city_name: &p.location.city_name,
            serial_number: &p.meta.serial_number,
            extra_dns_labels: &p.extra_dns_labels,
            ephemeral: p.ephemeral,
            accessible_peers_count: None,
        }
    }
}

/// The REST `Peer` of one peer of `account`.
fn single(peer: &Peer, account: &Account) -> Result<Value, Failure> {
    let groups: Vec<Value> = account
        .groups
        .iter()
        .filter(|g| g.peers.contains(&peer.id))
        .map(minimum)
        .collect();
    let view = PeerView::new(peer, groups.iter().collect(), account, ids::now());
    Ok(serde_json::to_value(view).map_err(StoreError::from)?)
}

/// The `PeerBatch` list as JSON text: the peers `filter` keeps, each with
/// how many peers its network map lists. Group memberships come from the
/// account index (one `GroupMinimum` per group, shared). CPU-bound; runs off
/// the async workers.
fn batch(
    account: &Account,
    filter: &PeerFilter,
    visible: impl Fn(&Peer) -> bool,
    now: Timestamp,
) -> Result<Vec<u8>, StoreError> {
    let started = std::time::Instant::now();
    let index = AccountIndex::new(account);
    let mut maps = netmap::MapBuilder::new(&index, now);
    let minimums: Vec<Value> = account.groups.iter().map(minimum).collect();
    let views: Vec<PeerView> = account
        .peers
        .iter()
        .filter(|p| visible(p))
        .filter(|p| filter.name.as_ref().is_none_or(|n| &p.name == n))
        .filter(|p| filter.ip.as_ref().is_none_or(|ip| &p.ip.to_string() == ip))
        .map(|p| {
            let rank = index.rank(p.id.as_str());
            let groups = rank.map_or(&[][..], |r| index.groups_of(r));
            let groups = groups.iter().map(|&g| &minimums[g as usize]).collect();
            let mut view = PeerView::new(p, groups, account, now);
            view.accessible_peers_count =
                Some(rank.map_or(0, |rank| maps.map(rank).peers().count()));
            view
        })
        .collect();
    let out = serde_json::to_vec(&views)?;
    tracing::debug!(
        peers = views.len(),
        elapsed_ms = started.elapsed().as_millis(),
        "peer list computed"
    );
    Ok(out)
}

/// A peer of the caller's account it may see; one it may not is not found,
/// as if it were not there (the list leaves it out too).
async fn visible(tx: &mut Tx, caller: &Caller, id: &str) -> Result<Peer, Failure> {
    let peer = load::<Peer>(tx, caller.account_id(), id).await?;
    if caller.sees(&peer) {
        Ok(peer)
    } else {
        Err(Failure::not_found("peer", id))
    }
}

async fn list(
    State(app): State<App>,
    caller: Caller,
    Filter(filter): Filter<PeerFilter>,
) -> Result<Response, Failure> {
    let mut tx = app.store.read().await?;
    let account = mapped(&app.store, &app.expose, &mut tx, caller.account_id()).await?;
    drop(tx);
    let now = ids::now();
    let visible = move |p: &Peer| caller.sees(p);
    let out = crate::cpu::run(move || batch(&account, &filter, visible, now))
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "peer list failed");
            Failure::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        })??;
    Ok(([(CONTENT_TYPE, "application/json")], out).into_response())
}

async fn read(
    State(app): State<App>,
    caller: Caller,
    Ids(id): Ids<String>,
) -> Result<Json<Value>, Failure> {
    let mut tx = app.store.read().await?;
    let peer = visible(&mut tx, &caller, &id).await?;
    let account = snapshot(&app.store, &mut tx, caller.account_id()).await?;
    Ok(Json(single(&peer, &account)?))
}

async fn accessible(
    State(app): State<App>,
    caller: Caller,
    Ids(id): Ids<String>,
) -> Result<Json<Value>, Failure> {
    let mut tx = app.store.read().await?;
    let peer = visible(&mut tx, &caller, &id).await?;
    let account = mapped(&app.store, &app.expose, &mut tx, caller.account_id()).await?;
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
                "last_seen": Time(p.last_seen),
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
    caller: Caller,
    Ids(id): Ids<String>,
    Body(req): Body<PeerRequest>,
) -> Result<Json<Value>, Failure> {
    let account_id = caller.account_id();
    let mut tx = app.store.write().await?;
    let mut peer = load::<Peer>(&mut tx, account_id, &id).await?;
    let account = snapshot(&app.store, &mut tx, account_id).await?;
    let name = req.name.trim();
    if name.is_empty() {
        return Err(Failure::invalid("peer name shouldn't be empty"));
    }
    limits::name("peer name", name)?;
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
    Ok(Json(single(&peer, &account)?))
}

async fn remove(
    State(app): State<App>,
    caller: Caller,
    Ids(id): Ids<String>,
) -> Result<Json<Value>, Failure> {
    let account = caller.account_id();
    let mut tx = app.store.write().await?;
    let peer = load::<Peer>(&mut tx, account, &id).await?;
    let forgotten = delete_peer(&mut tx, account, &peer).await?;
    caller
        .audit(
            &mut tx,
            Activity::PEER_REMOVED_BY_USER,
            peer.id.as_str(),
            removal_meta(&peer),
        )
        .await?;
    let policies = (forgotten
        .changed
        .iter()
        .map(|p| (p, Activity::POLICY_UPDATED)))
    .chain(
        forgotten
            .removed
            .iter()
            .map(|p| (p, Activity::POLICY_REMOVED)),
    );
    for (policy, activity) in policies {
        let details = meta([("name", policy.name.as_str())]);
        caller
            .audit(&mut tx, activity, policy.id.as_str(), details)
            .await?;
    }
    tx.commit().await?;
    // Its expose sessions end with it (audited as unexposed).
    app.expose.remove_peer(&peer.id).await;
    Ok(deleted())
}

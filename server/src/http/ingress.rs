//! `/api/ingress/peers` (peers that forward public ports into the mesh) and
//! `/api/peers/{peer_id}/ingress/ports` (a peer's forwarded ports). The
//! core picks the ingress peer and the ingress ports
//! ([`meshplane_core::ingress`]); these handlers load, store and show them.

use std::collections::BTreeMap;

use axum::Router;
use meshplane_core::ingress::{self, Wanted};
use meshplane_core::limits;
use meshplane_core::model::{
    Activity, AllocationId, IngressPeer, IngressPeerId, IngressPortAllocation, Peer, PeerId,
    PortProtocol,
};
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::Caller;
use super::crud::{self, Context, Crud, Scope};
use super::failure::Failure;
use super::{load, App};
use crate::store::Tx;

pub fn routes() -> Router<App> {
    Router::new()
        .merge(crud::routes::<IngressPeer>(
            "/api/ingress/peers",
            "ingress_peer_id",
        ))
        .merge(crud::routes::<IngressPortAllocation>(
            "/api/peers/{peer_id}/ingress/ports",
            "allocation_id",
        ))
}

/// The REST `IngressPeerCreateRequest` / `IngressPeerUpdateRequest` (the
/// update has no `peer_id`, and the peer never changes).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct IngressPeerRequest {
    peer_id: Option<String>,
    enabled: bool,
    fallback: bool,
}

/// What ingress views show beyond the stored rows: every allocation (for
/// the free ports) and the peers (connection state, address, region).
#[derive(Debug)]
pub struct IngressContext {
    allocations: Vec<IngressPortAllocation>,
    ingress_peers: BTreeMap<IngressPeerId, IngressPeer>,
    peers: BTreeMap<PeerId, Peer>,
}

impl IngressContext {
    /// Where traffic for `ingress` arrives now: its peer's current public
    /// address, or the one recorded when it became an ingress peer.
    fn ingress_ip(&self, ingress: &IngressPeer) -> String {
        self.peers
            .get(&ingress.peer_id)
            .map(public_ip)
            .filter(|ip| !ip.is_empty())
            .unwrap_or_else(|| ingress.ingress_ip.clone())
    }
}

impl<T: Sync> Context<T> for IngressContext {
    async fn load(tx: &mut Tx, account: &str, _items: &[&T]) -> Result<IngressContext, Failure> {
        Ok(IngressContext {
            allocations: tx.list(account).await?,
            ingress_peers: tx
                .list::<IngressPeer>(account)
                .await?
                .into_iter()
                .map(|i| (i.id.clone(), i))
                .collect(),
            peers: tx
                .list::<Peer>(account)
                .await?
                .into_iter()
                .map(|p| (p.id.clone(), p))
                .collect(),
        })
    }
}

/// The region of a peer: its country, lower case (empty when unknown).
fn region(peer: &Peer) -> String {
    peer.location.country_code.to_ascii_lowercase()
}

/// Where traffic for the ingress peer arrives: the address its connection
/// comes from, without a port.
fn public_ip(peer: &Peer) -> String {
    let Some(addr) = peer.connection_ip.as_deref() else {
        return String::new();
    };
    addr.parse::<std::net::SocketAddr>()
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|_| addr.to_string())
}

impl Crud for IngressPeer {
    type Request = IngressPeerRequest;
    type Scope = ();
    type Context = IngressContext;

    const CREATED: Activity = Activity::INGRESS_PEER_CREATED;
    const UPDATED: Activity = Activity::INGRESS_PEER_UPDATED;
    const DELETED: Activity = Activity::INGRESS_PEER_DELETED;

    async fn build(
        tx: &mut Tx,
        caller: &Caller,
        _scope: &(),
        id: String,
        old: Option<&IngressPeer>,
        req: IngressPeerRequest,
    ) -> Result<IngressPeer, Failure> {
        let account = caller.account_id();
        if let Some(old) = old {
            return Ok(IngressPeer {
                enabled: req.enabled,
                fallback: req.fallback,
                ..old.clone()
            });
        }
        let peer_id = req
            .peer_id
            .filter(|p| !p.is_empty())
            .ok_or_else(|| Failure::invalid("peer_id should be provided"))?;
        let peer = tx
            .get::<Peer>(account, &peer_id)
            .await?
            .ok_or_else(|| Failure::invalid(format!("peer {peer_id} not found")))?;
        let existing = tx.list::<IngressPeer>(account).await?;
        if existing.iter().any(|i| i.peer_id == peer.id) {
            return Err(Failure::conflict(format!(
                "peer {peer_id} is already an ingress peer"
            )));
        }
        Ok(IngressPeer {
            id: IngressPeerId::new(id),
            peer_id: peer.id.clone(),
            ingress_ip: public_ip(&peer),
            enabled: req.enabled,
            fallback: req.fallback,
            region: region(&peer),
        })
    }

    fn view(&self, ctx: &IngressContext) -> Result<Value, Failure> {
        let mappings: Vec<_> = ingress::mappings_through(&ctx.allocations, &self.id, None)
            .cloned()
            .collect();
        let peer = ctx.peers.get(&self.peer_id);
        Ok(json!({
            "id": self.id,
            "peer_id": self.peer_id,
            "ingress_ip": ctx.ingress_ip(self),
            "available_ports": {
                "tcp": ingress::available(&mappings, PortProtocol::Tcp),
                "udp": ingress::available(&mappings, PortProtocol::Udp),
            },
            "enabled": self.enabled,
            "connected": peer.is_some_and(|p| p.connected),
            "fallback": self.fallback,
            "region": self.region,
        }))
    }

    async fn before_delete(&self, tx: &mut Tx, caller: &Caller) -> Result<(), Failure> {
        let allocations = tx
            .list::<IngressPortAllocation>(caller.account_id())
            .await?;
        let mut users: Vec<&str> = allocations
            .iter()
            .filter(|a| a.ingress_peer_id == self.id)
            .map(|a| a.name.as_str())
            .collect();
        if users.is_empty() {
            return Ok(());
        }
        users.sort_unstable();
        Err(Failure::conflict(format!(
            "ingress peer is used by port allocations: {}",
            users.join(", ")
        )))
    }
}

/// The REST `IngressPortAllocationRequestPortRange`.
#[derive(Debug, Deserialize)]
pub struct RangeRequest {
    #[serde(default)]
    start: i64,
    #[serde(default)]
    end: i64,
    protocol: PortProtocol,
}

/// The REST `IngressPortAllocationRequestDirectPort`.
#[derive(Debug, Deserialize)]
pub struct DirectRequest {
    #[serde(default)]
    count: i64,
    protocol: PortProtocol,
}

/// The REST `IngressPortAllocationRequest`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct AllocationRequest {
    name: String,
    enabled: bool,
    port_ranges: Option<Vec<RangeRequest>>,
    direct_port: Option<DirectRequest>,
}

impl Scope for Peer {
    /// The peer a nested path names.
    async fn resolve(tx: &mut Tx, account: &str, parent: Option<&str>) -> Result<Peer, Failure> {
        load::<Peer>(tx, account, parent.unwrap_or_default()).await
    }
}

impl Crud for IngressPortAllocation {
    type Request = AllocationRequest;
    type Scope = Peer;
    type Context = IngressContext;

    const CREATED: Activity = Activity::INGRESS_PORTS_ALLOCATED;
    const UPDATED: Activity = Activity::INGRESS_PORTS_UPDATED;
    const DELETED: Activity = Activity::INGRESS_PORTS_RELEASED;

    fn in_scope(&self, peer: &Peer) -> bool {
        self.peer_id == peer.id
    }

    async fn build(
        tx: &mut Tx,
        caller: &Caller,
        peer: &Peer,
        id: String,
        old: Option<&IngressPortAllocation>,
        req: AllocationRequest,
    ) -> Result<IngressPortAllocation, Failure> {
        let account = caller.account_id();
        let name = req.name.trim();
        if name.is_empty() {
            return Err(ingress::IngressError::EmptyName.into());
        }
        limits::name("allocation name", name)?;
        let port_ranges = req.port_ranges.unwrap_or_default();
        limits::items("port ranges", &port_ranges)?;
        let ranges: Vec<_> = port_ranges
            .iter()
            .map(|r| (r.start, r.end, r.protocol))
            .collect();
        let wanted = Wanted::new(&ranges, req.direct_port.map(|d| (d.count, d.protocol)))?;
        let ingress_peers = tx.list::<IngressPeer>(account).await?;
        let allocations = tx.list::<IngressPortAllocation>(account).await?;
        let (ingress_peer_id, mappings) = ingress::place(
            &ingress_peers,
            &allocations,
            peer.id.as_str(),
            &region(peer),
            old,
            &wanted,
        )?;
        Ok(IngressPortAllocation {
            id: AllocationId::new(id),
            name: name.to_string(),
            peer_id: peer.id.clone(),
            ingress_peer_id,
            enabled: req.enabled,
            port_range_mappings: mappings,
        })
    }

    fn view(&self, ctx: &IngressContext) -> Result<Value, Failure> {
        let ingress = ctx.ingress_peers.get(&self.ingress_peer_id);
        Ok(json!({
            "id": self.id,
            "name": self.name,
            "ingress_peer_id": self.ingress_peer_id,
            "region": ingress.map(|i| i.region.as_str()).unwrap_or_default(),
            "enabled": self.enabled,
            "ingress_ip": ingress.map(|i| ctx.ingress_ip(i)).unwrap_or_default(),
            "port_range_mappings": self.port_range_mappings,
        }))
    }

    fn matches(&self, query: &BTreeMap<String, String>) -> bool {
        query.get("name").is_none_or(|n| &self.name == n)
    }
}

//! A peer's map owning its data.
//!
//! [`NetworkMap`] borrows the account it was computed from and shares its
//! class's part with other maps: right for the server, which computes many
//! maps from one account and writes them straight out. Whatever holds a map
//! on its own (the wire protocol, a daemon applying it) uses [`PeerMap`],
//! built from a `NetworkMap` in one place (`PeerMap::from`).
//!
//! A `PeerMap` holds exactly what the JSON form holds and serialises to the
//! same JSON, byte for byte. Values the core computes are typed (addresses,
//! prefixes, directions, actions, protocols, ports); text it copies from the
//! account (ids, names, keys, the network range, route networks and
//! domains, nameservers) stays text as the account holds it, so that the
//! JSON form is the same for any account the bindings accept, even one
//! whose text would not parse.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::Serialize;

use super::firewall::Direction;
use super::NetworkMap;
use crate::model::{
    AccountId, Action, Nameserver, NameserverGroupId, PeerId, PolicyId, PortRange, Protocol, RuleId,
};

/// One peer's network map, owned. See the [module](self) documentation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct PeerMap {
    /// The account's serial when the map was computed.
    pub serial: u64,
    pub network: Network,
    pub peer_config: OwnConfig,
    /// Remote peers this peer may reach or be reached by, in IP order.
    pub peers: Vec<RemotePeer>,
    /// Peers it would see whose login has expired, in IP order.
    pub offline_peers: Vec<RemotePeer>,
    pub firewall_rules: Vec<FirewallRule>,
    pub routes: Vec<Route>,
    /// Rules for the routes and resources this peer serves.
    pub route_firewall_rules: Vec<RouteFirewallRule>,
    pub dns: Dns,
}

/// The account network.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Network {
    pub id: AccountId,
    /// The account's network range, as the account holds it.
    pub net: String,
    pub dns_domain: String,
}

/// The peer's own configuration.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct OwnConfig {
    /// Its mesh address with the network's prefix length.
    pub address: Ipv4Net,
    pub fqdn: String,
    pub ssh_enabled: bool,
}

/// A remote peer as the map lists it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct RemotePeer {
    pub id: PeerId,
    pub name: String,
    /// Its WireGuard public key, as it registered it.
    pub key: String,
    pub ip: Ipv4Addr,
    pub fqdn: String,
    pub ssh_enabled: bool,
}

/// A firewall rule; see [`super::firewall`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct FirewallRule {
    pub policy_id: PolicyId,
    pub rule_id: RuleId,
    /// The remote peer, or `0.0.0.0` for every other peer.
    pub peer_ip: Ipv4Addr,
    pub direction: Direction,
    pub action: Action,
    pub protocol: Protocol,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port_range: Option<PortRange>,
}

/// A route through one routing peer; see [`super::routes`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Route {
    /// The route's id, or the network resource's.
    pub id: String,
    pub network_id: String,
    /// The routed prefix; absent for a domain route.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub domains: Vec<String>,
    /// The routing peer.
    pub peer: PeerId,
    pub peer_ip: Ipv4Addr,
    pub metric: u32,
    pub masquerade: bool,
    pub keep_route: bool,
}

/// A firewall rule of a route or resource this peer serves.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct RouteFirewallRule {
    pub route_id: String,
    /// `0.0.0.0/0`, or one /32 per permitted peer in IP order.
    pub source_ranges: Vec<Ipv4Net>,
    pub action: Action,
    /// The routed prefix; `0.0.0.0/0` for domain routes.
    pub destination: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub domains: Vec<String>,
    pub protocol: Protocol,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port_range: Option<PortRange>,
}

/// The DNS part of a map; see [`super::dns`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Dns {
    /// DNS management is on; when off there are no zones and no groups.
    pub service_enable: bool,
    pub custom_zones: Vec<CustomZone>,
    pub nameserver_groups: Vec<NameserverGroup>,
}

/// A zone the peer answers for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct CustomZone {
    pub domain: String,
    pub records: Vec<Record>,
}

/// A resource record in its text form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Record {
    pub name: String,
    /// The record type (`A`).
    #[serde(rename = "type")]
    pub kind: String,
    /// The record class (`IN`).
    pub class: String,
    pub ttl: u32,
    /// The record data (for `A`, the address).
    pub rdata: String,
}

/// A nameserver group that applies to the peer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct NameserverGroup {
    pub id: NameserverGroupId,
    pub name: String,
    pub nameservers: Vec<Nameserver>,
    pub primary: bool,
    pub domains: Vec<String>,
    pub search_domains_enabled: bool,
}

impl PeerMap {
    /// The remote peer with WireGuard key `key`.
    pub fn peer_by_key(&self, key: &str) -> Option<&RemotePeer> {
        self.peers.iter().find(|p| p.key == key)
    }
}

impl From<&NetworkMap<'_>> for PeerMap {
    fn from(map: &NetworkMap<'_>) -> Self {
        let index = map.index;
        let account = index.account;
        let settings = &account.settings;
        let remote = |p: super::PeerView<'_>| RemotePeer {
            id: p.id.clone(),
            name: p.name.to_string(),
            key: p.key.to_string(),
            ip: p.ip,
            fqdn: p.fqdn.to_string(),
            ssh_enabled: p.ssh_enabled,
        };
        let records: Vec<Record> = map
            .records()
            .map(|r| Record {
                name: r.name.to_string(),
                kind: r.kind.to_string(),
                class: r.class.to_string(),
                ttl: r.ttl,
                rdata: r.rdata.to_string(),
            })
            .collect();
        let on = map.dns_enabled();
        PeerMap {
            serial: account.serial,
            network: Network {
                id: account.id.clone(),
                net: settings.network_range.clone(),
                dns_domain: settings.dns_domain.clone(),
            },
            peer_config: OwnConfig {
                address: map.address(),
                fqdn: index.fqdn(map.rank).to_string(),
                ssh_enabled: map.peer().ssh_enabled,
            },
            peers: map.peer_views().map(remote).collect(),
            offline_peers: map.offline_peer_views().map(remote).collect(),
            firewall_rules: map
                .firewall_rules()
                .map(|r| FirewallRule {
                    policy_id: r.policy_id.clone(),
                    rule_id: r.rule_id.clone(),
                    peer_ip: r.peer_ip,
                    direction: r.direction,
                    action: r.action,
                    protocol: r.protocol,
                    port: r.port,
                    port_range: r.port_range,
                })
                .collect(),
            routes: map
                .routes()
                .into_iter()
                .map(|r| Route {
                    id: r.id.to_string(),
                    network_id: r.network_id.to_string(),
                    network: r.network.map(|n| n.into_owned()),
                    domains: r.domains.to_vec(),
                    peer: r.peer.clone(),
                    peer_ip: r.peer_ip,
                    metric: r.metric,
                    masquerade: r.masquerade,
                    keep_route: r.keep_route,
                })
                .collect(),
            route_firewall_rules: map
                .route_firewall_rules()
                .map(|r| RouteFirewallRule {
                    route_id: r.route_id.to_string(),
                    source_ranges: r.source_ranges.prefixes().collect(),
                    action: r.action,
                    destination: r.destination.into_owned(),
                    domains: r.domains.to_vec(),
                    protocol: r.protocol,
                    port: r.port,
                    port_range: r.port_range,
                })
                .collect(),
            dns: Dns {
                service_enable: on,
                custom_zones: on
                    .then(|| CustomZone {
                        domain: settings.dns_domain.clone(),
                        records,
                    })
                    .into_iter()
                    .collect(),
                nameserver_groups: map
                    .nameserver_groups()
                    .map(|g| NameserverGroup {
                        id: g.id.clone(),
                        name: g.name.to_string(),
                        nameservers: g.nameservers.to_vec(),
                        primary: g.primary,
                        domains: g.domains.to_vec(),
                        search_domains_enabled: g.search_domains_enabled,
                    })
                    .collect(),
            },
        }
    }
}

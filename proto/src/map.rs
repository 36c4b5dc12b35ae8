//! The network map on the wire: the core's [`PeerMap`] and its protobuf
//! form [`v1::NetworkMap`], converted here and nowhere else.
//!
//! Every field of the map travels; lists keep the core's order, so
//! decoding an encoded map gives back the same map. Addresses computed by
//! the core travel as 4 bytes and prefixes as address and length, enums as
//! protobuf enums; text the core copies from the account travels as text.
//!
//! Encoding cannot fail. Decoding checks what the core's types promise and
//! reports the first field that breaks it ([`MapError`]): a missing part, an
//! address that is not 4 bytes, a prefix longer than 32, an enum value
//! this side does not know (or left unspecified), a port above 65535.

use std::net::Ipv4Addr;
use std::sync::Arc;

use ipnet::Ipv4Net;
use meshplane_core::model::{
    AccountId, Action, Nameserver, NameserverGroupId, PeerId, PolicyId, PortRange, Protocol, RuleId,
};
use meshplane_core::netmap::firewall::Direction;
use meshplane_core::netmap::owned;
use meshplane_core::netmap::PeerMap;
use thiserror::Error;

use crate::v1;

/// Why a received map does not decode.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MapError {
    #[error("network map: {field} is missing")]
    Missing { field: &'static str },
    #[error("network map: {field} is not an IPv4 address ({len} bytes)")]
    BadAddress { field: &'static str, len: usize },
    #[error("network map: {field} has prefix length {length}, more than 32")]
    BadPrefix { field: &'static str, length: u32 },
    #[error("network map: {field} has unknown value {value}")]
    UnknownEnum { field: &'static str, value: i32 },
    #[error("network map: {field} {value} is not a port")]
    BadPort { field: &'static str, value: u32 },
    #[error("network map: {field} has {positions} positions for {entries} entries")]
    Positions {
        field: &'static str,
        positions: usize,
        entries: usize,
    },
    #[error("network map: {field} is not a 32-byte digest ({len} bytes)")]
    BadDigest { field: &'static str, len: usize },
}

impl From<PeerMap> for v1::NetworkMap {
    fn from(map: PeerMap) -> Self {
        v1::NetworkMap {
            serial: map.serial,
            network: Some(v1::Network {
                id: map.network.id.0,
                net: map.network.net,
                dns_domain: map.network.dns_domain,
            }),
            peer_config: Some(v1::PeerConfig {
                address: Some(prefix(map.peer_config.address)),
                fqdn: map.peer_config.fqdn,
                ssh_enabled: map.peer_config.ssh_enabled,
            }),
            peers: map.peers.into_iter().map(remote_peer).collect(),
            offline_peers: map.offline_peers.into_iter().map(remote_peer).collect(),
            firewall_rules: map.firewall_rules.into_iter().map(firewall_rule).collect(),
            routes: map.routes.into_iter().map(route).collect(),
            route_firewall_rules: map
                .route_firewall_rules
                .into_iter()
                .map(route_firewall_rule)
                .collect(),
            dns: Some(dns(map.dns)),
        }
    }
}

impl TryFrom<v1::NetworkMap> for PeerMap {
    type Error = MapError;

    fn try_from(map: v1::NetworkMap) -> Result<Self, MapError> {
        let network = map.network.ok_or(missing("network"))?;
        let own = map.peer_config.ok_or(missing("peer_config"))?;
        let dns = map.dns.ok_or(missing("dns"))?;
        Ok(PeerMap {
            serial: map.serial,
            network: owned::Network {
                id: AccountId(network.id),
                net: network.net,
                dns_domain: network.dns_domain,
            },
            peer_config: owned::OwnConfig {
                address: from_prefix(
                    "peer_config.address",
                    own.address.ok_or(missing("peer_config.address"))?,
                )?,
                fqdn: own.fqdn,
                ssh_enabled: own.ssh_enabled,
            },
            peers: collect(map.peers, |p| from_remote_peer("peers.ip", p))?,
            offline_peers: collect(map.offline_peers, |p| {
                from_remote_peer("offline_peers.ip", p)
            })?,
            firewall_rules: collect(map.firewall_rules, from_firewall_rule)?,
            routes: collect(map.routes, from_route)?,
            route_firewall_rules: collect(map.route_firewall_rules, from_route_firewall_rule)?,
            dns: from_dns(dns)?,
        })
    }
}

pub(crate) fn missing(field: &'static str) -> MapError {
    MapError::Missing { field }
}

/// `items` converted by `f`, into a new allocation of their number.
///
/// Collecting `items.into_iter().map(f)` would reuse the allocation of
/// `items` when a converted item is no larger than a decoded one, and keep
/// all of it: a decoded peer entry is about 150 bytes and the entry it
/// becomes a pointer of 8, so each map held kept 19 times the room its
/// peer list needs (15 GB for the load harness's 10,000 maps of 10,000
/// peers).
pub(crate) fn collect<T, U>(
    items: Vec<T>,
    mut f: impl FnMut(T) -> Result<U, MapError>,
) -> Result<Vec<U>, MapError> {
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        out.push(f(item)?);
    }
    Ok(out)
}

/// [`collect`] for a conversion that cannot fail.
pub(crate) fn converted<T, U>(items: Vec<T>, f: impl FnMut(T) -> U) -> Vec<U> {
    let mut out = Vec::with_capacity(items.len());
    out.extend(items.into_iter().map(f));
    out
}

fn address(ip: Ipv4Addr) -> Vec<u8> {
    ip.octets().to_vec()
}

fn from_address(field: &'static str, bytes: &[u8]) -> Result<Ipv4Addr, MapError> {
    <[u8; 4]>::try_from(bytes)
        .map(Ipv4Addr::from)
        .map_err(|_| MapError::BadAddress {
            field,
            len: bytes.len(),
        })
}

pub(crate) fn prefix(net: Ipv4Net) -> v1::Ipv4Prefix {
    v1::Ipv4Prefix {
        address: address(net.addr()),
        length: net.prefix_len().into(),
    }
}

pub(crate) fn from_prefix(field: &'static str, p: v1::Ipv4Prefix) -> Result<Ipv4Net, MapError> {
    let ip = from_address(field, &p.address)?;
    let bad = MapError::BadPrefix {
        field,
        length: p.length,
    };
    let length = u8::try_from(p.length).map_err(|_| bad.clone())?;
    Ipv4Net::new(ip, length).map_err(|_| bad)
}

fn port(field: &'static str, value: u32) -> Result<u16, MapError> {
    u16::try_from(value).map_err(|_| MapError::BadPort { field, value })
}

fn optional_port(field: &'static str, value: Option<u32>) -> Result<Option<u16>, MapError> {
    value.map(|v| port(field, v)).transpose()
}

fn port_range(r: PortRange) -> v1::PortRange {
    v1::PortRange {
        start: r.start,
        end: r.end,
    }
}

fn from_port_range(r: v1::PortRange) -> PortRange {
    PortRange {
        start: r.start,
        end: r.end,
    }
}

fn direction(d: Direction) -> i32 {
    match d {
        Direction::In => v1::Direction::In,
        Direction::Out => v1::Direction::Out,
    }
    .into()
}

fn from_direction(field: &'static str, value: i32) -> Result<Direction, MapError> {
    match v1::Direction::try_from(value) {
        Ok(v1::Direction::In) => Ok(Direction::In),
        Ok(v1::Direction::Out) => Ok(Direction::Out),
        Ok(v1::Direction::Unspecified) | Err(_) => Err(MapError::UnknownEnum { field, value }),
    }
}

fn action(a: Action) -> i32 {
    match a {
        Action::Accept => v1::Action::Accept,
        Action::Drop => v1::Action::Drop,
    }
    .into()
}

fn from_action(field: &'static str, value: i32) -> Result<Action, MapError> {
    match v1::Action::try_from(value) {
        Ok(v1::Action::Accept) => Ok(Action::Accept),
        Ok(v1::Action::Drop) => Ok(Action::Drop),
        Ok(v1::Action::Unspecified) | Err(_) => Err(MapError::UnknownEnum { field, value }),
    }
}

fn protocol(p: Protocol) -> i32 {
    match p {
        Protocol::All => v1::Protocol::All,
        Protocol::Tcp => v1::Protocol::Tcp,
        Protocol::Udp => v1::Protocol::Udp,
        Protocol::Icmp => v1::Protocol::Icmp,
        Protocol::NetbirdSsh => v1::Protocol::NetbirdSsh,
    }
    .into()
}

fn from_protocol(field: &'static str, value: i32) -> Result<Protocol, MapError> {
    match v1::Protocol::try_from(value) {
        Ok(v1::Protocol::All) => Ok(Protocol::All),
        Ok(v1::Protocol::Tcp) => Ok(Protocol::Tcp),
        Ok(v1::Protocol::Udp) => Ok(Protocol::Udp),
        Ok(v1::Protocol::Icmp) => Ok(Protocol::Icmp),
        Ok(v1::Protocol::NetbirdSsh) => Ok(Protocol::NetbirdSsh),
        Ok(v1::Protocol::Unspecified) | Err(_) => Err(MapError::UnknownEnum { field, value }),
    }
}

/// Takes the entry's text without copying it when no other map shares it.
pub(crate) fn remote_peer(p: Arc<owned::RemotePeer>) -> v1::RemotePeer {
    let p = Arc::unwrap_or_clone(p);
    v1::RemotePeer {
        id: p.id.0,
        name: p.name,
        key: p.key,
        ip: address(p.ip),
        fqdn: p.fqdn,
        ssh_enabled: p.ssh_enabled,
    }
}

/// `field` names the list the peer is in, for errors.
pub(crate) fn from_remote_peer(
    field: &'static str,
    p: v1::RemotePeer,
) -> Result<Arc<owned::RemotePeer>, MapError> {
    Ok(Arc::new(owned::RemotePeer {
        id: PeerId(p.id),
        name: p.name,
        key: p.key,
        ip: from_address(field, &p.ip)?,
        fqdn: p.fqdn,
        ssh_enabled: p.ssh_enabled,
    }))
}

pub(crate) fn firewall_rule(r: owned::FirewallRule) -> v1::FirewallRule {
    v1::FirewallRule {
        policy_id: r.policy_id.0,
        rule_id: r.rule_id.0,
        peer_ip: address(r.peer_ip),
        direction: direction(r.direction),
        action: action(r.action),
        protocol: protocol(r.protocol),
        port: r.port.map(u32::from),
        port_range: r.port_range.map(port_range),
    }
}

pub(crate) fn from_firewall_rule(r: v1::FirewallRule) -> Result<owned::FirewallRule, MapError> {
    Ok(owned::FirewallRule {
        policy_id: PolicyId(r.policy_id),
        rule_id: RuleId(r.rule_id),
        peer_ip: from_address("firewall_rules.peer_ip", &r.peer_ip)?,
        direction: from_direction("firewall_rules.direction", r.direction)?,
        action: from_action("firewall_rules.action", r.action)?,
        protocol: from_protocol("firewall_rules.protocol", r.protocol)?,
        port: optional_port("firewall_rules.port", r.port)?,
        port_range: r.port_range.map(from_port_range),
    })
}

pub(crate) fn route(r: owned::Route) -> v1::Route {
    v1::Route {
        id: r.id,
        network_id: r.network_id,
        network: r.network,
        domains: r.domains,
        peer: r.peer.0,
        peer_ip: address(r.peer_ip),
        metric: r.metric,
        masquerade: r.masquerade,
        keep_route: r.keep_route,
    }
}

pub(crate) fn from_route(r: v1::Route) -> Result<owned::Route, MapError> {
    Ok(owned::Route {
        id: r.id,
        network_id: r.network_id,
        network: r.network,
        domains: r.domains,
        peer: PeerId(r.peer),
        peer_ip: from_address("routes.peer_ip", &r.peer_ip)?,
        metric: r.metric,
        masquerade: r.masquerade,
        keep_route: r.keep_route,
    })
}

pub(crate) fn route_firewall_rule(r: owned::RouteFirewallRule) -> v1::RouteFirewallRule {
    v1::RouteFirewallRule {
        route_id: r.route_id,
        source_ranges: r.source_ranges.into_iter().map(prefix).collect(),
        action: action(r.action),
        destination: r.destination,
        domains: r.domains,
        protocol: protocol(r.protocol),
        port: r.port.map(u32::from),
        port_range: r.port_range.map(port_range),
    }
}

pub(crate) fn from_route_firewall_rule(
    r: v1::RouteFirewallRule,
) -> Result<owned::RouteFirewallRule, MapError> {
    Ok(owned::RouteFirewallRule {
        route_id: r.route_id,
        source_ranges: collect(r.source_ranges, |p| {
            from_prefix("route_firewall_rules.source_ranges", p)
        })?,
        action: from_action("route_firewall_rules.action", r.action)?,
        destination: r.destination,
        domains: r.domains,
        protocol: from_protocol("route_firewall_rules.protocol", r.protocol)?,
        port: optional_port("route_firewall_rules.port", r.port)?,
        port_range: r.port_range.map(from_port_range),
    })
}

fn dns(d: owned::Dns) -> v1::DnsConfig {
    v1::DnsConfig {
        service_enable: d.service_enable,
        custom_zones: d.custom_zones.into_iter().map(custom_zone).collect(),
        nameserver_groups: d
            .nameserver_groups
            .into_iter()
            .map(nameserver_group)
            .collect(),
    }
}

pub(crate) fn custom_zone(z: owned::CustomZone) -> v1::CustomZone {
    v1::CustomZone {
        domain: z.domain,
        records: z.records.into_iter().map(record).collect(),
    }
}

pub(crate) fn from_custom_zone(z: v1::CustomZone) -> owned::CustomZone {
    owned::CustomZone {
        domain: z.domain,
        records: converted(z.records, from_record),
    }
}

pub(crate) fn record(r: Arc<owned::Record>) -> v1::SimpleRecord {
    let r = Arc::unwrap_or_clone(r);
    v1::SimpleRecord {
        name: r.name,
        r#type: r.kind,
        class: r.class,
        ttl: r.ttl,
        rdata: r.rdata,
    }
}

pub(crate) fn from_record(r: v1::SimpleRecord) -> Arc<owned::Record> {
    Arc::new(owned::Record {
        name: r.name,
        kind: r.r#type,
        class: r.class,
        ttl: r.ttl,
        rdata: r.rdata,
    })
}

pub(crate) fn nameserver_group(g: owned::NameserverGroup) -> v1::NameserverGroup {
    v1::NameserverGroup {
        id: g.id.0,
        name: g.name,
        nameservers: g
            .nameservers
            .into_iter()
            .map(|n| v1::Nameserver {
                ip: n.ip,
                ns_type: n.ns_type,
                port: n.port.into(),
            })
            .collect(),
        primary: g.primary,
        domains: g.domains,
        search_domains_enabled: g.search_domains_enabled,
    }
}

pub(crate) fn from_nameserver_group(
    g: v1::NameserverGroup,
) -> Result<owned::NameserverGroup, MapError> {
    Ok(owned::NameserverGroup {
        id: NameserverGroupId(g.id),
        name: g.name,
        nameservers: collect(g.nameservers, |n| {
            Ok(Nameserver {
                ip: n.ip,
                ns_type: n.ns_type,
                port: port("dns.nameserver_groups.nameservers.port", n.port)?,
            })
        })?,
        primary: g.primary,
        domains: g.domains,
        search_domains_enabled: g.search_domains_enabled,
    })
}

fn from_dns(d: v1::DnsConfig) -> Result<owned::Dns, MapError> {
    Ok(owned::Dns {
        service_enable: d.service_enable,
        custom_zones: converted(d.custom_zones, from_custom_zone),
        nameserver_groups: collect(d.nameserver_groups, from_nameserver_group)?,
    })
}

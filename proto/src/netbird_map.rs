//! The core's [`PeerMap`] as NetBird's stock clients read it: the legacy
//! `NetworkMap` form of a `SyncResponse` (`Version` 0), converted here and
//! nowhere else.
//!
//! What the client requires, and this module therefore guarantees:
//! - addresses are CIDR text (`100.64.0.2/32` for a remote peer's allowed
//!   IPs, the own address with the network's prefix length);
//! - `remotePeersIsEmpty`, `firewallRulesIsEmpty` and
//!   `routesFirewallRulesIsEmpty` are set when the lists are empty on
//!   purpose: without them a client takes an empty list for an old server
//!   and allows everything (firewall) or keeps its old peers;
//! - one firewall rule per remote peer address, with the address both as
//!   text (`PeerIP`, read by clients before 0.59.13) and compact
//!   (`sourcePrefixes`: 4 address bytes and the length 32); the core's
//!   `0.0.0.0` for "every peer" goes as `0.0.0.0` and `0.0.0.0/0`, which
//!   clients read as any source;
//! - a route names its routing peer by WireGuard key, and its network as a
//!   prefix unless it routes domains;
//! - DNS names are fully qualified with the trailing dot, record types are
//!   DNS type numbers, nameserver addresses parse as IP addresses (the
//!   client panics on one that does not, so such a nameserver is left out);
//! - the serial only grows: a client ignores a map older than its last.
//!
//! SSH through the mesh travels as TCP: stock clients refuse a rule whose
//! protocol they cannot program.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

use meshplane_core::model::{Action, PortRange, Protocol};
use meshplane_core::netmap::firewall::Direction;
use meshplane_core::netmap::owned::{
    self, Dns, FirewallRule, NameserverGroup, RemotePeer, Route, RouteFirewallRule,
};
use meshplane_core::netmap::PeerMap;

use crate::netbird as nb;

/// The DNS type number of the record kinds the core produces.
const DNS_TYPE_A: i64 = 1;
/// NetBird's route network types.
const NETWORK_IPV4: i64 = 1;
const NETWORK_DOMAIN: i64 = 3;
/// NetBird's nameserver type for plain DNS over UDP.
const NS_TYPE_UDP: i64 = 1;

/// The whole Sync answer for the peer holding WireGuard key `own_key`:
/// `config` (where signal, STUN and relay are, and the relay token) and the
/// map, with the stream's `serial`.
pub fn sync_response(
    map: &PeerMap,
    own_key: &str,
    config: Option<nb::NetbirdConfig>,
    serial: u64,
) -> nb::SyncResponse {
    let network_map = network_map(map, own_key, serial);
    nb::SyncResponse {
        netbird_config: config,
        peer_config: network_map.peer_config.clone(),
        remote_peers: network_map.remote_peers.clone(),
        remote_peers_is_empty: network_map.remote_peers_is_empty,
        network_map: Some(network_map),
        checks: Vec::new(),
        session_expires_at: None,
        version: 0,
    }
}

/// The map in NetBird's form, for the peer holding `own_key` (routes it
/// serves name it by key, which its own map does not carry).
pub fn network_map(map: &PeerMap, own_key: &str, serial: u64) -> nb::NetworkMap {
    // Routing peers by mesh address, which routes carry beside the id.
    let keys: HashMap<Ipv4Addr, &str> = map
        .peers
        .iter()
        .chain(&map.offline_peers)
        .map(|p| (p.ip, p.key.as_str()))
        .chain([(map.peer_config.address.addr(), own_key)])
        .collect();
    nb::NetworkMap {
        serial,
        peer_config: Some(peer_config(&map.peer_config)),
        remote_peers: map.peers.iter().map(|p| remote_peer(p)).collect(),
        remote_peers_is_empty: map.peers.is_empty(),
        routes: map
            .routes
            .iter()
            .filter_map(|r| route(r, keys.get(&r.peer_ip).copied()?))
            .collect(),
        dns_config: Some(dns(&map.dns, &map.network.dns_domain)),
        offline_peers: map.offline_peers.iter().map(|p| remote_peer(p)).collect(),
        firewall_rules: map.firewall_rules.iter().map(firewall_rule).collect(),
        firewall_rules_is_empty: map.firewall_rules.is_empty(),
        routes_firewall_rules: map
            .route_firewall_rules
            .iter()
            .map(route_firewall_rule)
            .collect(),
        routes_firewall_rules_is_empty: map.route_firewall_rules.is_empty(),
    }
}

/// The peer's own settings, as Login and Sync answer them.
pub fn peer_config(own: &owned::OwnConfig) -> nb::PeerConfig {
    nb::PeerConfig {
        address: own.address.to_string(),
        dns: String::new(),
        ssh_config: Some(ssh(own.ssh_enabled)),
        fqdn: own.fqdn.clone(),
        // Routing peers resolve the domains of domain routes for others.
        routing_peer_dns_resolution_enabled: true,
        lazy_connection_enabled: false,
        // 0: the client keeps its own MTU.
        mtu: 0,
    }
}

fn ssh(enabled: bool) -> nb::SshConfig {
    nb::SshConfig {
        ssh_enabled: enabled,
        ssh_pub_key: Vec::new(),
    }
}

fn remote_peer(p: &RemotePeer) -> nb::RemotePeerConfig {
    nb::RemotePeerConfig {
        wg_pub_key: p.key.clone(),
        allowed_ips: vec![format!("{}/32", p.ip)],
        ssh_config: Some(ssh(p.ssh_enabled)),
        fqdn: p.fqdn.clone(),
        agent_version: String::new(),
    }
}

fn protocol(p: Protocol) -> i32 {
    match p {
        Protocol::All => nb::RuleProtocol::All,
        Protocol::Tcp | Protocol::NetbirdSsh => nb::RuleProtocol::Tcp,
        Protocol::Udp => nb::RuleProtocol::Udp,
        Protocol::Icmp => nb::RuleProtocol::Icmp,
    }
    .into()
}

fn action(a: Action) -> i32 {
    match a {
        Action::Accept => nb::RuleAction::Accept,
        Action::Drop => nb::RuleAction::Drop,
    }
    .into()
}

/// A single port or a range; none for all ports.
fn port_info(port: Option<u16>, range: Option<PortRange>) -> Option<nb::PortInfo> {
    use nb::port_info::{PortSelection, Range};
    let selection = match (port, range) {
        (Some(p), _) => PortSelection::Port(u32::from(p)),
        (None, Some(r)) => PortSelection::Range(Range {
            start: r.start,
            end: r.end,
        }),
        (None, None) => return None,
    };
    Some(nb::PortInfo {
        port_selection: Some(selection),
    })
}

fn firewall_rule(r: &FirewallRule) -> nb::FirewallRule {
    // `0.0.0.0` stands for every peer: the prefix of all addresses.
    let length = if r.peer_ip.is_unspecified() { 0 } else { 32 };
    let mut compact = r.peer_ip.octets().to_vec();
    compact.push(length);
    nb::FirewallRule {
        peer_ip: r.peer_ip.to_string(),
        direction: match r.direction {
            Direction::In => nb::RuleDirection::In,
            Direction::Out => nb::RuleDirection::Out,
        }
        .into(),
        action: action(r.action),
        protocol: protocol(r.protocol),
        port: r.port.map(|p| p.to_string()).unwrap_or_default(),
        port_info: port_info(r.port, r.port_range),
        policy_id: r.policy_id.as_str().as_bytes().to_vec(),
        custom_protocol: 0,
        source_prefixes: vec![compact],
    }
}

/// The route, served by the peer holding `peer_key`.
fn route(r: &Route, peer_key: &str) -> Option<nb::Route> {
    let (network, network_type) = if r.domains.is_empty() {
        (r.network.clone()?, NETWORK_IPV4)
    } else {
        (String::new(), NETWORK_DOMAIN)
    };
    Some(nb::Route {
        id: r.id.clone(),
        network,
        network_type,
        peer: peer_key.to_string(),
        metric: i64::from(r.metric),
        masquerade: r.masquerade,
        net_id: r.network_id.clone(),
        domains: r.domains.clone(),
        keep_route: r.keep_route,
        skip_auto_apply: false,
    })
}

fn route_firewall_rule(r: &RouteFirewallRule) -> nb::RouteFirewallRule {
    nb::RouteFirewallRule {
        source_ranges: r.source_ranges.iter().map(ToString::to_string).collect(),
        action: action(r.action),
        destination: r.destination.clone(),
        protocol: protocol(r.protocol),
        port_info: port_info(r.port, r.port_range),
        is_dynamic: !r.domains.is_empty(),
        domains: r.domains.clone(),
        custom_protocol: 0,
        policy_id: Vec::new(),
        route_id: r.route_id.clone(),
    }
}

/// `name` with the trailing dot of a fully qualified name.
fn fqdn(name: &str) -> String {
    if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    }
}

fn dns(d: &Dns, dns_domain: &str) -> nb::DnsConfig {
    nb::DnsConfig {
        service_enable: d.service_enable,
        name_server_groups: d.nameserver_groups.iter().map(nameserver_group).collect(),
        custom_zones: d
            .custom_zones
            .iter()
            .map(|z| nb::CustomZone {
                domain: fqdn(if z.domain.is_empty() {
                    dns_domain
                } else {
                    &z.domain
                }),
                records: z
                    .records
                    .iter()
                    .filter(|r| r.kind == "A")
                    .map(|r| nb::SimpleRecord {
                        name: fqdn(&r.name),
                        r#type: DNS_TYPE_A,
                        class: r.class.clone(),
                        ttl: i64::from(r.ttl),
                        r_data: r.rdata.clone(),
                    })
                    .collect(),
                search_domain_disabled: false,
                non_authoritative: false,
            })
            .collect(),
    }
}

fn nameserver_group(g: &NameserverGroup) -> nb::NameServerGroup {
    nb::NameServerGroup {
        name_servers: g
            .nameservers
            .iter()
            .filter(|ns| ns.ip.parse::<IpAddr>().is_ok())
            .map(|ns| nb::NameServer {
                ip: ns.ip.clone(),
                ns_type: NS_TYPE_UDP,
                port: i64::from(ns.port),
            })
            .collect(),
        primary: g.primary,
        domains: g.domains.clone(),
        search_domains_enabled: g.search_domains_enabled,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshplane_core::model::{
        AccountId, Nameserver, NameserverGroupId, PeerId, PolicyId, RuleId,
    };
    use meshplane_core::netmap::owned::{CustomZone, Network, OwnConfig, Record};

    const OWN_KEY: &str = "b3duLWtleS1vd24ta2V5LW93bi1rZXktb3duLWtleT0=";

    fn remote(id: &str, ip: [u8; 4], key: &str) -> RemotePeer {
        RemotePeer {
            id: PeerId::new(id),
            name: id.to_string(),
            key: key.to_string(),
            ip: Ipv4Addr::from(ip),
            fqdn: format!("{id}.mesh.example"),
            ssh_enabled: id == "b",
        }
    }

    fn sample() -> PeerMap {
        PeerMap {
            serial: 7,
            network: Network {
                id: AccountId("acc".into()),
                net: "100.64.0.0/16".into(),
                dns_domain: "mesh.example".into(),
            },
            peer_config: OwnConfig {
                address: "100.64.0.1/16".parse().unwrap(),
                fqdn: "a.mesh.example".into(),
                ssh_enabled: false,
            },
            peers: vec![remote("b", [100, 64, 0, 2], "key-b").into()],
            offline_peers: vec![remote("c", [100, 64, 0, 3], "key-c").into()],
            firewall_rules: vec![
                FirewallRule {
                    policy_id: PolicyId::new("pol"),
                    rule_id: RuleId::new("rule"),
                    peer_ip: Ipv4Addr::new(100, 64, 0, 2),
                    direction: Direction::In,
                    action: Action::Accept,
                    protocol: Protocol::Tcp,
                    port: Some(22),
                    port_range: None,
                },
                FirewallRule {
                    policy_id: PolicyId::new("pol"),
                    rule_id: RuleId::new("rule"),
                    peer_ip: Ipv4Addr::new(100, 64, 0, 2),
                    direction: Direction::Out,
                    action: Action::Drop,
                    protocol: Protocol::NetbirdSsh,
                    port: None,
                    port_range: Some(PortRange {
                        start: 8000,
                        end: 8080,
                    }),
                },
            ],
            routes: vec![
                Route {
                    id: "r1".into(),
                    network_id: "lan".into(),
                    network: Some("10.0.0.0/24".into()),
                    domains: vec![],
                    peer: PeerId::new("b"),
                    peer_ip: Ipv4Addr::new(100, 64, 0, 2),
                    metric: 100,
                    masquerade: true,
                    keep_route: false,
                },
                Route {
                    id: "r2".into(),
                    network_id: "web".into(),
                    network: None,
                    domains: vec!["example.org".into()],
                    peer: PeerId::new("a"),
                    peer_ip: Ipv4Addr::new(100, 64, 0, 1),
                    metric: 9999,
                    masquerade: false,
                    keep_route: true,
                },
                Route {
                    id: "r3".into(),
                    network_id: "gone".into(),
                    network: Some("10.9.0.0/24".into()),
                    domains: vec![],
                    peer: PeerId::new("unknown"),
                    peer_ip: Ipv4Addr::new(100, 64, 0, 9),
                    metric: 1,
                    masquerade: false,
                    keep_route: false,
                },
            ],
            route_firewall_rules: vec![RouteFirewallRule {
                route_id: "r2".into(),
                source_ranges: vec!["100.64.0.2/32".parse().unwrap()],
                action: Action::Accept,
                destination: String::new(),
                domains: vec!["example.org".into()],
                protocol: Protocol::All,
                port: None,
                port_range: None,
            }],
            dns: Dns {
                service_enable: true,
                custom_zones: vec![CustomZone {
                    domain: "mesh.example".into(),
                    records: vec![Record {
                        name: "b.mesh.example".into(),
                        kind: "A".into(),
                        class: "IN".into(),
                        ttl: 300,
                        rdata: "100.64.0.2".into(),
                    }
                    .into()],
                }],
                nameserver_groups: vec![NameserverGroup {
                    id: NameserverGroupId::new("ns"),
                    name: "ns".into(),
                    nameservers: vec![
                        Nameserver {
                            ip: "1.1.1.1".into(),
                            ns_type: "udp".into(),
                            port: 53,
                        },
                        Nameserver {
                            ip: "not-an-ip".into(),
                            ns_type: "udp".into(),
                            port: 53,
                        },
                    ],
                    primary: true,
                    domains: vec![],
                    search_domains_enabled: false,
                }],
            },
        }
    }

    fn convert(map: &PeerMap) -> nb::NetworkMap {
        network_map(map, OWN_KEY, 42)
    }

    #[test]
    fn own_config_and_serial() {
        let m = convert(&sample());
        assert_eq!(m.serial, 42);
        let own = m.peer_config.unwrap();
        assert_eq!(own.address, "100.64.0.1/16");
        assert_eq!(own.fqdn, "a.mesh.example");
        assert!(!own.ssh_config.unwrap().ssh_enabled);
        assert!(own.routing_peer_dns_resolution_enabled);
    }

    #[test]
    fn remote_and_offline_peers() {
        let m = convert(&sample());
        assert!(!m.remote_peers_is_empty);
        assert_eq!(m.remote_peers.len(), 1);
        let b = &m.remote_peers[0];
        assert_eq!(b.wg_pub_key, "key-b");
        assert_eq!(b.allowed_ips, ["100.64.0.2/32"]);
        assert_eq!(b.fqdn, "b.mesh.example");
        assert!(b.ssh_config.as_ref().unwrap().ssh_enabled);
        assert_eq!(m.offline_peers.len(), 1);
        assert_eq!(m.offline_peers[0].wg_pub_key, "key-c");
        assert_eq!(m.offline_peers[0].allowed_ips, ["100.64.0.3/32"]);
    }

    #[test]
    fn firewall_rules_per_peer_ip() {
        let m = convert(&sample());
        assert!(!m.firewall_rules_is_empty);
        let [tcp, ssh] = &m.firewall_rules[..] else {
            panic!("two rules expected: {:?}", m.firewall_rules);
        };
        assert_eq!(tcp.peer_ip, "100.64.0.2");
        assert_eq!(tcp.source_prefixes, [vec![100, 64, 0, 2, 32]]);
        assert_eq!(tcp.direction, nb::RuleDirection::In as i32);
        assert_eq!(tcp.action, nb::RuleAction::Accept as i32);
        assert_eq!(tcp.protocol, nb::RuleProtocol::Tcp as i32);
        assert_eq!(tcp.port, "22");
        assert_eq!(
            tcp.port_info.as_ref().unwrap().port_selection,
            Some(nb::port_info::PortSelection::Port(22))
        );
        assert_eq!(tcp.policy_id, b"pol");
        assert_eq!(ssh.direction, nb::RuleDirection::Out as i32);
        assert_eq!(ssh.action, nb::RuleAction::Drop as i32);
        assert_eq!(ssh.protocol, nb::RuleProtocol::Tcp as i32);
        assert_eq!(ssh.port, "");
        assert_eq!(
            ssh.port_info.as_ref().unwrap().port_selection,
            Some(nb::port_info::PortSelection::Range(nb::port_info::Range {
                start: 8000,
                end: 8080
            }))
        );
    }

    #[test]
    fn routes_name_their_peer_by_key() {
        let m = convert(&sample());
        // r3's routing peer is in neither list: it cannot be named.
        let [lan, web] = &m.routes[..] else {
            panic!("two routes expected: {:?}", m.routes);
        };
        assert_eq!(lan.id, "r1");
        assert_eq!(lan.net_id, "lan");
        assert_eq!(lan.network, "10.0.0.0/24");
        assert_eq!(lan.network_type, NETWORK_IPV4);
        assert_eq!(lan.peer, "key-b");
        assert_eq!(lan.metric, 100);
        assert!(lan.masquerade);
        assert!(!lan.keep_route);
        assert_eq!(web.network, "");
        assert_eq!(web.network_type, NETWORK_DOMAIN);
        assert_eq!(web.domains, ["example.org"]);
        assert_eq!(web.peer, OWN_KEY);
        assert!(web.keep_route);
    }

    #[test]
    fn a_rule_for_every_peer_has_the_empty_prefix() {
        let mut map = sample();
        map.firewall_rules.truncate(1);
        map.firewall_rules[0].peer_ip = Ipv4Addr::UNSPECIFIED;
        let m = convert(&map);
        assert_eq!(m.firewall_rules[0].peer_ip, "0.0.0.0");
        assert_eq!(m.firewall_rules[0].source_prefixes, [vec![0, 0, 0, 0, 0]]);
    }

    #[test]
    fn route_firewall_rules() {
        let m = convert(&sample());
        assert!(!m.routes_firewall_rules_is_empty);
        let r = &m.routes_firewall_rules[0];
        assert_eq!(r.route_id, "r2");
        assert_eq!(r.source_ranges, ["100.64.0.2/32"]);
        assert_eq!(r.action, nb::RuleAction::Accept as i32);
        assert_eq!(r.protocol, nb::RuleProtocol::All as i32);
        assert!(r.is_dynamic);
        assert_eq!(r.domains, ["example.org"]);
        assert_eq!(r.port_info, None);
    }

    #[test]
    fn dns_is_fully_qualified() {
        let m = convert(&sample());
        let d = m.dns_config.unwrap();
        assert!(d.service_enable);
        let zone = &d.custom_zones[0];
        assert_eq!(zone.domain, "mesh.example.");
        let rec = &zone.records[0];
        assert_eq!(
            (rec.name.as_str(), rec.r#type, rec.class.as_str(), rec.ttl),
            ("b.mesh.example.", DNS_TYPE_A, "IN", 300)
        );
        assert_eq!(rec.r_data, "100.64.0.2");
        let group = &d.name_server_groups[0];
        assert!(group.primary);
        assert_eq!(
            group.name_servers.len(),
            1,
            "the unparsable one is left out"
        );
        assert_eq!(group.name_servers[0].ip, "1.1.1.1");
        assert_eq!(group.name_servers[0].ns_type, NS_TYPE_UDP);
        assert_eq!(group.name_servers[0].port, 53);
    }

    #[test]
    fn empty_lists_are_flagged() {
        let mut map = sample();
        map.peers.clear();
        map.firewall_rules.clear();
        map.route_firewall_rules.clear();
        let m = convert(&map);
        assert!(m.remote_peers_is_empty);
        assert!(m.firewall_rules_is_empty);
        assert!(m.routes_firewall_rules_is_empty);
    }

    #[test]
    fn sync_response_repeats_the_map_at_the_top() {
        let r = sync_response(&sample(), OWN_KEY, None, 9);
        assert_eq!(r.version, 0);
        let m = r.network_map.unwrap();
        assert_eq!(r.peer_config, m.peer_config);
        assert_eq!(r.remote_peers, m.remote_peers);
        assert_eq!(r.remote_peers_is_empty, m.remote_peers_is_empty);
        assert_eq!(m.serial, 9);
    }
}

//! The network map's protobuf form: every map survives core → protobuf
//! bytes → core unchanged, whether computed from benchmark accounts or
//! generated field by field; malformed messages are refused with the field
//! at fault.

use std::net::Ipv4Addr;
use std::sync::Arc;

use ipnet::Ipv4Net;
use meshplane_core::generate::{bench_account, with_posture_on_default};
use meshplane_core::index::AccountIndex;
use meshplane_core::model::{
    Account, Action, GroupId, Nameserver, NameserverGroupId, PeerId, PolicyId, PortRange, Protocol,
    RuleId,
};
use meshplane_core::netmap::firewall::Direction;
use meshplane_core::netmap::owned::{
    CustomZone, Dns, FirewallRule, Network, OwnConfig, Record, RemotePeer, Route, RouteFirewallRule,
};
use meshplane_core::netmap::{all_network_maps, owned, PeerMap};
use meshplane_core::Timestamp;
use meshplane_proto::map::MapError;
use meshplane_proto::v1;
use proptest::prelude::*;
use prost::Message;

const NOW: Timestamp = Timestamp::from_secs(1_750_000_000);

/// Encodes `map` to bytes and decodes it back.
fn through_the_wire(map: &PeerMap) -> PeerMap {
    let bytes = v1::NetworkMap::from(map.clone()).encode_to_vec();
    let decoded = v1::NetworkMap::decode(bytes.as_slice()).expect("protobuf decodes");
    PeerMap::try_from(decoded).expect("map decodes")
}

/// Every peer's map of `account`, owned.
fn maps_of(account: &Account) -> Vec<PeerMap> {
    let index = AccountIndex::new(account);
    all_network_maps(&index, NOW)
        .values()
        .map(PeerMap::from)
        .collect()
}

/// The benchmark account with what it lacks for a full map: SSH, a domain
/// route, and a group with DNS management off.
fn varied_account(peers: usize, groups: usize) -> Account {
    let mut account = bench_account(peers, groups, NOW);
    for (i, p) in account.peers.iter_mut().enumerate() {
        p.ssh_enabled = i % 4 == 0;
    }
    let mut domain = account.routes[0].clone();
    domain.id = "route-domains".into();
    domain.network_id = "domains".into();
    domain.network = None;
    domain.domains = vec!["example.com".into(), "*.example.org".into()];
    account.routes.push(domain);
    account
        .dns_settings
        .disabled_management_groups
        .push(GroupId::new("group-1"));
    account
}

#[test]
fn maps_of_generated_accounts_survive_the_wire() {
    let accounts = [
        varied_account(100, 5),
        with_posture_on_default(varied_account(150, 10)),
        bench_account(250, 10, NOW),
    ];
    let mut checked = 0;
    let (mut routes, mut route_rules, mut offline, mut no_dns) = (0, 0, 0, 0);
    for account in &accounts {
        for map in maps_of(account) {
            assert_eq!(through_the_wire(&map), map, "{}", map.peer_config.fqdn);
            checked += 1;
            routes += map.routes.len();
            route_rules += map.route_firewall_rules.len();
            offline += map.offline_peers.len();
            no_dns += usize::from(!map.dns.service_enable);
        }
    }
    assert_eq!(checked, 500);
    // The accounts exercise every part of a map.
    assert!(routes > 0 && route_rules > 0 && offline > 0 && no_dns > 0);
}

/// A decoded map holds its lists in allocations of their own size, not in
/// the (far larger) ones the protobuf entries were decoded into.
#[test]
fn decoded_lists_hold_no_room_of_the_decoding() {
    let account = varied_account(200, 4);
    let map = maps_of(&account).remove(0);
    assert!(map.peers.len() > 100, "{} peers", map.peers.len());
    let back = through_the_wire(&map);
    assert_eq!(back, map);
    assert_eq!(back.peers.capacity(), back.peers.len());
    for zone in &back.dns.custom_zones {
        assert_eq!(zone.records.capacity(), zone.records.len());
    }
}

fn ip() -> impl Strategy<Value = Ipv4Addr> {
    any::<u32>().prop_map(Ipv4Addr::from)
}

fn prefix() -> impl Strategy<Value = Ipv4Net> {
    (ip(), 0u8..=32).prop_map(|(ip, len)| Ipv4Net::new(ip, len).expect("length at most 32"))
}

fn text() -> impl Strategy<Value = String> {
    "[a-z0-9./:*-]{0,12}"
}

fn texts() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(text(), 0..3)
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![Just(Action::Accept), Just(Action::Drop)]
}

fn protocol() -> impl Strategy<Value = Protocol> {
    prop_oneof![
        Just(Protocol::All),
        Just(Protocol::Tcp),
        Just(Protocol::Udp),
        Just(Protocol::Icmp),
        Just(Protocol::NetbirdSsh),
    ]
}

fn ports() -> impl Strategy<Value = (Option<u16>, Option<PortRange>)> {
    (
        prop::option::of(any::<u16>()),
        prop::option::of(
            (any::<u32>(), any::<u32>()).prop_map(|(start, end)| PortRange { start, end }),
        ),
    )
}

fn remote_peer() -> impl Strategy<Value = RemotePeer> {
    (text(), text(), text(), ip(), text(), any::<bool>()).prop_map(
        |(id, name, key, ip, fqdn, ssh_enabled)| RemotePeer {
            id: PeerId(id),
            name,
            key,
            ip,
            fqdn,
            ssh_enabled,
        },
    )
}

fn firewall_rule() -> impl Strategy<Value = FirewallRule> {
    (
        text(),
        text(),
        ip(),
        prop_oneof![Just(Direction::In), Just(Direction::Out)],
        action(),
        protocol(),
        ports(),
    )
        .prop_map(
            |(policy, rule, peer_ip, direction, action, protocol, (port, port_range))| {
                FirewallRule {
                    policy_id: PolicyId(policy),
                    rule_id: RuleId(rule),
                    peer_ip,
                    direction,
                    action,
                    protocol,
                    port,
                    port_range,
                }
            },
        )
}

fn route() -> impl Strategy<Value = Route> {
    (
        (text(), text(), prop::option::of(text()), texts()),
        (text(), ip(), any::<u32>(), any::<bool>(), any::<bool>()),
    )
        .prop_map(
            |((id, network_id, network, domains), (peer, peer_ip, metric, masquerade, keep))| {
                Route {
                    id,
                    network_id,
                    network,
                    domains,
                    peer: PeerId(peer),
                    peer_ip,
                    metric,
                    masquerade,
                    keep_route: keep,
                }
            },
        )
}

fn route_firewall_rule() -> impl Strategy<Value = RouteFirewallRule> {
    (
        text(),
        prop::collection::vec(prefix(), 0..4),
        action(),
        text(),
        texts(),
        protocol(),
        ports(),
    )
        .prop_map(
            |(route_id, source_ranges, action, destination, domains, protocol, (port, range))| {
                RouteFirewallRule {
                    route_id,
                    source_ranges,
                    action,
                    destination,
                    domains,
                    protocol,
                    port,
                    port_range: range,
                }
            },
        )
}

fn dns() -> impl Strategy<Value = Dns> {
    let record = (text(), text(), text(), any::<u32>(), text()).prop_map(
        |(name, kind, class, ttl, rdata)| Record {
            name,
            kind,
            class,
            ttl,
            rdata,
        },
    );
    let zone =
        (text(), prop::collection::vec(record, 0..4)).prop_map(|(domain, records)| CustomZone {
            domain,
            records: records.into_iter().map(Arc::new).collect(),
        });
    let nameserver = (text(), text(), any::<u16>()).prop_map(|(ip, ns_type, port)| Nameserver {
        ip,
        ns_type,
        port,
    });
    let group = (
        text(),
        text(),
        prop::collection::vec(nameserver, 0..3),
        any::<bool>(),
        texts(),
        any::<bool>(),
    )
        .prop_map(
            |(id, name, nameservers, primary, domains, search)| owned::NameserverGroup {
                id: NameserverGroupId(id),
                name,
                nameservers,
                primary,
                domains,
                search_domains_enabled: search,
            },
        );
    (
        any::<bool>(),
        prop::collection::vec(zone, 0..2),
        prop::collection::vec(group, 0..3),
    )
        .prop_map(|(service_enable, custom_zones, nameserver_groups)| Dns {
            service_enable,
            custom_zones,
            nameserver_groups,
        })
}

fn peer_map() -> impl Strategy<Value = PeerMap> {
    (
        (any::<u64>(), text(), text(), text()),
        (prefix(), text(), any::<bool>()),
        prop::collection::vec(remote_peer(), 0..4),
        prop::collection::vec(remote_peer(), 0..2),
        prop::collection::vec(firewall_rule(), 0..5),
        prop::collection::vec(route(), 0..3),
        prop::collection::vec(route_firewall_rule(), 0..3),
        dns(),
    )
        .prop_map(
            |(
                (serial, id, net, dns_domain),
                (address, fqdn, ssh_enabled),
                peers,
                offline_peers,
                firewall_rules,
                routes,
                route_firewall_rules,
                dns,
            )| PeerMap {
                serial,
                network: Network {
                    id: id.as_str().into(),
                    net,
                    dns_domain,
                },
                peer_config: OwnConfig {
                    address,
                    fqdn,
                    ssh_enabled,
                },
                peers: peers.into_iter().map(Arc::new).collect(),
                offline_peers: offline_peers.into_iter().map(Arc::new).collect(),
                firewall_rules,
                routes,
                route_firewall_rules,
                dns,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_map_survives_the_wire(map in peer_map()) {
        prop_assert_eq!(through_the_wire(&map), map);
    }
}

/// A change that breaks a map's message.
type Breakage = Box<dyn FnOnce(&mut v1::NetworkMap)>;

/// A valid map's message, with `change` applied, decoded.
fn decode_changed(change: impl FnOnce(&mut v1::NetworkMap)) -> Result<PeerMap, MapError> {
    let map = maps_of(&varied_account(20, 2))
        .into_iter()
        .find(|m| !m.peers.is_empty() && !m.route_firewall_rules.is_empty())
        .expect("a routing peer's map");
    let mut message = v1::NetworkMap::from(map);
    change(&mut message);
    let bytes = message.encode_to_vec();
    PeerMap::try_from(v1::NetworkMap::decode(bytes.as_slice()).expect("protobuf decodes"))
}

#[test]
fn malformed_maps_are_refused_with_the_field_at_fault() {
    assert!(decode_changed(|_| {}).is_ok());
    let cases: Vec<(Breakage, MapError)> = vec![
        (
            Box::new(|m| m.network = None),
            MapError::Missing { field: "network" },
        ),
        (
            Box::new(|m| m.peer_config = None),
            MapError::Missing {
                field: "peer_config",
            },
        ),
        (
            Box::new(|m| m.dns = None),
            MapError::Missing { field: "dns" },
        ),
        (
            Box::new(|m| m.peers[0].ip = vec![100, 64, 0]),
            MapError::BadAddress {
                field: "peers.ip",
                len: 3,
            },
        ),
        (
            Box::new(|m| m.firewall_rules[0].peer_ip = vec![0; 16]),
            MapError::BadAddress {
                field: "firewall_rules.peer_ip",
                len: 16,
            },
        ),
        (
            Box::new(|m| {
                if let Some(a) = m.peer_config.as_mut().and_then(|c| c.address.as_mut()) {
                    a.length = 33;
                }
            }),
            MapError::BadPrefix {
                field: "peer_config.address",
                length: 33,
            },
        ),
        (
            Box::new(|m| m.route_firewall_rules[0].source_ranges[0].length = 300),
            MapError::BadPrefix {
                field: "route_firewall_rules.source_ranges",
                length: 300,
            },
        ),
        (
            Box::new(|m| m.firewall_rules[0].direction = 7),
            MapError::UnknownEnum {
                field: "firewall_rules.direction",
                value: 7,
            },
        ),
        (
            Box::new(|m| m.firewall_rules[0].action = 0),
            MapError::UnknownEnum {
                field: "firewall_rules.action",
                value: 0,
            },
        ),
        (
            Box::new(|m| m.route_firewall_rules[0].protocol = -1),
            MapError::UnknownEnum {
                field: "route_firewall_rules.protocol",
                value: -1,
            },
        ),
        (
            Box::new(|m| m.firewall_rules[0].port = Some(65536)),
            MapError::BadPort {
                field: "firewall_rules.port",
                value: 65536,
            },
        ),
    ];
    for (change, error) in cases {
        assert_eq!(decode_changed(change), Err(error.clone()), "{error}");
    }
    assert_eq!(
        MapError::BadPrefix {
            field: "peer_config.address",
            length: 33
        }
        .to_string(),
        "network map: peer_config.address has prefix length 33, more than 32"
    );
}

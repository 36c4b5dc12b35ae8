//! Properties of map deltas (`netmap::delta`).
//!
//! - Round trip: `apply(old, diff(old, new)) == new`, on maps generated
//!   entry by entry (drawn from small pools, so lists share, lose, gain and
//!   reorder entries) and on maps of a benchmark account before and after
//!   random edits (peers joining, leaving, renamed, SSH switched, policies
//!   switched off and on, the DNS domain changed).
//! - A delta applied to another map than its base is caught: the digest of
//!   the result equals the digest of the intended map exactly when the
//!   result is that map.
//! - An unchanged map gives an empty delta.

use std::net::Ipv4Addr;
use std::sync::Arc;

use ipnet::Ipv4Net;
use meshplane_core::generate::bench_account;
use meshplane_core::index::AccountIndex;
use meshplane_core::model::{
    AccountId, Action, Nameserver, NameserverGroupId, Peer, PeerId, PolicyId, Protocol, RuleId,
};
use meshplane_core::netmap::delta::{apply, apply_checked, diff, digest};
use meshplane_core::netmap::firewall::Direction;
use meshplane_core::netmap::owned::{
    CustomZone, Dns, FirewallRule, NameserverGroup, Network, OwnConfig, Record, RemotePeer, Route,
    RouteFirewallRule,
};
use meshplane_core::netmap::{network_map, PeerMap};
use meshplane_core::Timestamp;
use proptest::prelude::*;

const NOW: Timestamp = Timestamp::from_secs(1_750_000_000);

fn remote(i: u8, variant: bool) -> RemotePeer {
    RemotePeer {
        id: PeerId::new(format!("peer-{i}")),
        name: format!("peer{i}"),
        key: format!("key-{i}"),
        ip: Ipv4Addr::new(100, 64, 0, i),
        fqdn: format!("peer{i}.mesh"),
        ssh_enabled: variant,
    }
}

fn rule(i: u8, variant: bool) -> FirewallRule {
    FirewallRule {
        policy_id: PolicyId::new(format!("policy-{}", i % 3)),
        rule_id: RuleId::new(format!("rule-{}", i % 3)),
        peer_ip: Ipv4Addr::new(100, 64, 0, i),
        direction: if i % 2 == 0 {
            Direction::In
        } else {
            Direction::Out
        },
        action: if variant {
            Action::Drop
        } else {
            Action::Accept
        },
        protocol: Protocol::Tcp,
        port: Some(u16::from(i)),
        port_range: None,
    }
}

fn route(i: u8, variant: bool) -> Route {
    Route {
        id: format!("route-{i}"),
        network_id: format!("net-{i}"),
        network: Some(format!("10.{i}.0.0/16")),
        domains: Vec::new(),
        peer: PeerId::new(format!("peer-{i}")),
        peer_ip: Ipv4Addr::new(100, 64, 0, i),
        metric: 9999,
        masquerade: variant,
        keep_route: false,
    }
}

fn route_rule(i: u8, variant: bool) -> RouteFirewallRule {
    RouteFirewallRule {
        route_id: format!("route-{i}"),
        source_ranges: vec![Ipv4Net::new(Ipv4Addr::new(100, 64, 0, i), 32).expect("prefix")],
        action: Action::Accept,
        destination: format!("10.{i}.0.0/16"),
        domains: Vec::new(),
        protocol: if variant {
            Protocol::Udp
        } else {
            Protocol::All
        },
        port: None,
        port_range: None,
    }
}

fn record(i: u8, variant: bool) -> Record {
    Record {
        name: format!("peer{i}.mesh."),
        kind: "A".to_string(),
        class: "IN".to_string(),
        ttl: if variant { 60 } else { 300 },
        rdata: format!("100.64.0.{i}"),
    }
}

fn group(i: u8, variant: bool) -> NameserverGroup {
    NameserverGroup {
        id: NameserverGroupId::new(format!("ns-{i}")),
        name: format!("ns{i}"),
        nameservers: vec![Nameserver {
            ip: format!("10.0.0.{i}"),
            ns_type: "udp".to_string(),
            port: 53,
        }],
        primary: variant,
        domains: Vec::new(),
        search_domains_enabled: false,
    }
}

/// A list of entries from a pool of 12, each in one of two variants.
fn list<T: std::fmt::Debug>(make: fn(u8, bool) -> T) -> impl Strategy<Value = Vec<T>> {
    prop::collection::vec((0u8..12, prop::bool::weighted(0.2)), 0..10)
        .prop_map(move |picks| picks.into_iter().map(|(i, v)| make(i, v)).collect())
}

fn peer_map() -> impl Strategy<Value = PeerMap> {
    (
        (0u64..4, 0u8..2, 0u8..3, any::<bool>()),
        list(remote),
        list(remote),
        list(rule),
        list(route),
        list(route_rule),
        (
            any::<bool>(),
            prop::collection::vec((0u8..2, list(record)), 0..3),
            list(group),
        ),
    )
        .prop_map(
            |((serial, net, addr, ssh), peers, offline, rules, routes, route_rules, dns)| {
                let (service_enable, zones, groups) = dns;
                PeerMap {
                    serial,
                    network: Network {
                        id: AccountId::new("acc"),
                        net: format!("100.{}.0.0/16", 64 + net),
                        dns_domain: "mesh".to_string(),
                    },
                    peer_config: OwnConfig {
                        address: Ipv4Net::new(Ipv4Addr::new(100, 64, 1, addr), 16).expect("prefix"),
                        fqdn: "me.mesh".to_string(),
                        ssh_enabled: ssh,
                    },
                    peers: peers.into_iter().map(Arc::new).collect(),
                    offline_peers: offline.into_iter().map(Arc::new).collect(),
                    firewall_rules: rules,
                    routes,
                    route_firewall_rules: route_rules,
                    dns: Dns {
                        service_enable,
                        custom_zones: zones
                            .into_iter()
                            .map(|(d, records)| CustomZone {
                                domain: format!("zone{d}"),
                                records: records.into_iter().map(Arc::new).collect(),
                            })
                            .collect(),
                        nameserver_groups: groups,
                    },
                }
            },
        )
}

/// An edit of the benchmark account.
#[derive(Debug, Clone)]
enum Edit {
    Join(u8),
    Leave(u8),
    Rename(u8),
    Ssh(u8),
    Policy(u8),
    Domain,
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (0u8..40).prop_map(Edit::Join),
        (0u8..40).prop_map(Edit::Leave),
        (0u8..40).prop_map(Edit::Rename),
        (0u8..40).prop_map(Edit::Ssh),
        (0u8..8).prop_map(Edit::Policy),
        Just(Edit::Domain),
    ]
}

fn edited(
    account: &meshplane_core::model::Account,
    edits: &[Edit],
) -> meshplane_core::model::Account {
    let mut account = account.clone();
    for (n, edit) in edits.iter().enumerate() {
        account.serial += 1;
        let count = account.peers.len();
        let pick = |i: u8| usize::from(i) % count.max(1);
        match edit {
            Edit::Join(i) if count > 0 => {
                let mut peer: Peer = account.peers[pick(*i)].clone();
                let id = format!("joined-{n}");
                peer.id = PeerId::new(&id);
                peer.key = format!("key-{id}");
                peer.name.clone_from(&id);
                peer.dns_label.clone_from(&id);
                peer.ip = Ipv4Addr::new(100, 64, 200, u8::try_from(n % 250).unwrap_or(0));
                for group in &mut account.groups {
                    if group.peers.contains(&account.peers[pick(*i)].id) {
                        group.peers.push(peer.id.clone());
                    }
                }
                account.peers.push(peer);
            }
            // Peer 0 is the one whose map is compared; it stays.
            Edit::Leave(i) if pick(*i) != 0 && count > 1 => {
                let gone = account.peers.remove(pick(*i)).id;
                for group in &mut account.groups {
                    group.peers.retain(|p| *p != gone);
                }
            }
            Edit::Rename(i) if count > 0 => {
                let peer = &mut account.peers[pick(*i)];
                peer.name = format!("renamed-{n}");
                peer.dns_label = format!("renamed-{n}");
            }
            Edit::Ssh(i) if count > 0 => {
                let peer = &mut account.peers[pick(*i)];
                peer.ssh_enabled = !peer.ssh_enabled;
            }
            Edit::Policy(i) if !account.policies.is_empty() => {
                let at = usize::from(*i) % account.policies.len();
                account.policies[at].enabled = !account.policies[at].enabled;
            }
            Edit::Domain => account.settings.dns_domain = format!("edit{n}.example"),
            _ => {}
        }
    }
    account
}

fn map_of(account: &meshplane_core::model::Account, peer: &str) -> PeerMap {
    let index = AccountIndex::new(account);
    PeerMap::from(&network_map(&index, peer, NOW).expect("the peer is in the account"))
}

fn round_trip(old: &PeerMap, new: &PeerMap) -> Result<(), TestCaseError> {
    let delta = diff(old, new);
    let mut held = old.clone();
    apply_checked(&mut held, &delta, &digest(new))
        .map_err(|e| TestCaseError::fail(format!("{e}: {delta:?}")))?;
    prop_assert_eq!(&held, new);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_delta_turns_the_old_map_into_the_new(old in peer_map(), new in peer_map()) {
        round_trip(&old, &new)?;
        round_trip(&new, &old)?;
    }

    #[test]
    fn an_unchanged_map_gives_an_empty_delta(map in peer_map()) {
        prop_assert!(diff(&map, &map).is_empty());
    }

    #[test]
    fn a_delta_on_the_wrong_base_is_caught(
        base in peer_map(),
        other in peer_map(),
        new in peer_map(),
    ) {
        let delta = diff(&base, &new);
        let mut held = other.clone();
        match apply(&mut held, &delta) {
            Ok(()) => prop_assert_eq!(digest(&held) == digest(&new), held == new),
            Err(_) => prop_assert_eq!(&held, &other, "a refused delta changed the map"),
        }
        let mut checked = other.clone();
        if apply_checked(&mut checked, &delta, &digest(&new)).is_err() {
            prop_assert_eq!(&checked, &other, "a refused delta changed the map");
        } else {
            prop_assert_eq!(&checked, &new);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn deltas_follow_a_benchmark_account_through_edits(
        steps in prop::collection::vec(prop::collection::vec(edit(), 1..4), 1..4),
    ) {
        let mut account = bench_account(24, 3, NOW);
        let mut held = map_of(&account, "peer-0");
        for edits in &steps {
            account = edited(&account, edits);
            let new = map_of(&account, "peer-0");
            let delta = diff(&held, &new);
            apply_checked(&mut held, &delta, &digest(&new))
                .map_err(|e| TestCaseError::fail(format!("{e}: {delta:?}")))?;
            prop_assert_eq!(&held, &new);
        }
    }
}

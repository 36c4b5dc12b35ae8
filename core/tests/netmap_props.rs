//! Properties of access evaluation and network maps on small random
//! accounts (up to 7 peers, 4 groups, 4 policies of 1–2 rules, with drop
//! rules, ports, ranges, posture checks, expired and pending peers).
//!
//! - Determinism: the same account gives byte-identical JSON, and so does
//!   the account with its peers, groups, group members, policies and
//!   posture checks shuffled: map output depends on ids, never on list
//!   order. (Evaluation's *deciding rule* does depend on policy and rule
//!   order, by design; its allowed/denied verdict does not.)
//! - Symmetry: with only bidirectional rules, A may reach B exactly when B
//!   may reach A, for every query.
//! - Soundness: B is in A's `peers` exactly when both are active, distinct,
//!   and some query is allowed from A to B or from B to A. (The random
//!   accounts have no network routers, which add router peers on top.)
//! - Fan-out: every map of `all_network_maps` serialises exactly like the
//!   single map of the same peer.
//! - Owned form: every map's `PeerMap` serialises exactly like the map.
//!
//! Every account also has a route (served by a peer and a group, with
//! access control), a nameserver group and a DNS-disabled group, so the
//! class-shared parts of the map are exercised beyond peers and rules.

use std::net::Ipv4Addr;

use meshplane_core::index::AccountIndex;
use meshplane_core::model::{
    Account, Action, Checks, Group, MinVersionCheck, Nameserver, NameserverGroup,
    NameserverGroupId, Peer, PeerId, Policy, PolicyId, PolicyRule, PortRange, PostureCheck,
    PostureCheckId, Protocol, Route, RouteId, RuleId, UserId,
};
use meshplane_core::netmap::{all_network_maps, network_map, PeerMap};
use meshplane_core::policy::{evaluate, AccessQuery, Destination};
use meshplane_core::Timestamp;
use proptest::prelude::*;
use rand::seq::SliceRandom;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;

const NOW: Timestamp = Timestamp::from_secs(1_750_000_000);

#[derive(Debug, Clone)]
struct RuleSpec {
    src: Vec<usize>,
    dst: Vec<usize>,
    protocol: Protocol,
    ports: u8,
    drop: bool,
    bidirectional: bool,
    enabled: bool,
}

#[derive(Debug, Clone)]
struct Spec {
    /// Per peer: 0 normal, 1 expired, 2 pending; and whether its version passes.
    peers: Vec<(u8, bool)>,
    /// Per group: member peer indices.
    groups: Vec<Vec<usize>>,
    /// Per policy: enabled, posture, rules.
    policies: Vec<(bool, bool, Vec<RuleSpec>)>,
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

fn rule_spec(groups: usize, all_bidirectional: bool) -> impl Strategy<Value = RuleSpec> {
    (
        prop::collection::vec(0..groups, 1..3),
        prop::collection::vec(0..groups, 1..3),
        protocol(),
        0u8..5,
        prop::bool::weighted(0.25),
        any::<bool>(),
        prop::bool::weighted(0.9),
    )
        .prop_map(
            move |(src, dst, protocol, ports, drop, bidirectional, enabled)| RuleSpec {
                src,
                dst,
                protocol,
                ports,
                drop,
                bidirectional: bidirectional || all_bidirectional,
                enabled,
            },
        )
}

fn spec(all_bidirectional: bool) -> impl Strategy<Value = Spec> {
    (2usize..8, 1usize..5).prop_flat_map(move |(n, g)| {
        (
            prop::collection::vec(
                (prop::sample::select(vec![0u8, 0, 0, 1, 2]), any::<bool>()),
                n,
            ),
            prop::collection::vec(prop::collection::vec(0..n, 0..n + 1), g),
            prop::collection::vec(
                (
                    prop::bool::weighted(0.9),
                    prop::bool::weighted(0.3),
                    prop::collection::vec(rule_spec(g, all_bidirectional), 1..3),
                ),
                1..5,
            ),
        )
            .prop_map(|(peers, groups, policies)| Spec {
                peers,
                groups,
                policies,
            })
    })
}

/// Port choices: none, one port, two ports, a range, two overlapping ranges.
fn ports_of(choice: u8, protocol: Protocol) -> (Vec<String>, Vec<PortRange>) {
    if !protocol.has_ports() {
        return (Vec::new(), Vec::new());
    }
    let range = |start, end| PortRange { start, end };
    match choice {
        1 => (vec!["22".into()], Vec::new()),
        2 => (vec!["80".into(), "443".into()], Vec::new()),
        3 => (Vec::new(), vec![range(20, 100)]),
        4 => (Vec::new(), vec![range(1, 50), range(52, 443)]),
        _ => (Vec::new(), Vec::new()),
    }
}

fn build(spec: &Spec) -> Account {
    let mut account = Account {
        id: "acc".into(),
        ..Account::default()
    };
    account.settings.peer_login_expiration = 3600;
    account.peers = spec
        .peers
        .iter()
        .enumerate()
        .map(|(i, &(state, passes))| {
            let mut p = Peer::new(
                format!("p{i}"),
                format!("p{i}"),
                Ipv4Addr::new(100, 64, 0, i as u8 + 1),
            );
            p.dns_label = format!("p{i}");
            p.meta.version = if passes { "0.30.0" } else { "0.20.0" }.into();
            p.last_login = NOW;
            if state == 1 {
                p.user_id = Some(UserId::new("u"));
                p.login_expiration_enabled = true;
                p.last_login = Timestamp::from_secs(1_750_000_000 - 7200);
            }
            p.approval_required = state == 2;
            p.ssh_enabled = i % 2 == 1;
            p
        })
        .collect();
    account.groups = spec
        .groups
        .iter()
        .enumerate()
        .map(|(g, members)| {
            Group::new(
                format!("g{g}"),
                format!("g{g}"),
                members
                    .iter()
                    .map(|m| PeerId::new(format!("p{m}")))
                    .collect(),
            )
        })
        .collect();
    account.posture_checks = vec![PostureCheck {
        id: PostureCheckId::new("pc"),
        name: "version".into(),
        description: String::new(),
        checks: Checks {
            nb_version_check: Some(MinVersionCheck {
                min_version: "0.26.0".into(),
            }),
            ..Checks::default()
        },
    }];
    account.policies = spec
        .policies
        .iter()
        .enumerate()
        .map(|(i, (enabled, posture, rules))| Policy {
            id: PolicyId::new(format!("pol{i}")),
            name: format!("pol{i}"),
            description: String::new(),
            enabled: *enabled,
            source_posture_checks: if *posture {
                vec!["pc".into()]
            } else {
                Vec::new()
            },
            rules: rules
                .iter()
                .enumerate()
                .map(|(j, r)| {
                    let (ports, port_ranges) = ports_of(r.ports, r.protocol);
                    PolicyRule {
                        id: RuleId::new(format!("r{j}")),
                        name: format!("r{j}"),
                        description: String::new(),
                        enabled: r.enabled,
                        action: if r.drop { Action::Drop } else { Action::Accept },
                        bidirectional: r.bidirectional,
                        protocol: r.protocol,
                        ports,
                        port_ranges,
                        sources: r
                            .src
                            .iter()
                            .map(|g| format!("g{g}").as_str().into())
                            .collect(),
                        destinations: r
                            .dst
                            .iter()
                            .map(|g| format!("g{g}").as_str().into())
                            .collect(),
                        source_resource: None,
                        destination_resource: None,
                    }
                })
                .collect(),
        })
        .collect();
    // A route served by p0 and by the last group, distributed to g0 with
    // access control by g0; a nameserver group for g0; DNS management off
    // for the last group when there are two or more.
    let last = format!("g{}", spec.groups.len() - 1);
    account.routes = vec![Route {
        id: RouteId::new("rt"),
        description: String::new(),
        network_id: "net".into(),
        enabled: true,
        peer: Some(PeerId::new("p0")),
        peer_groups: vec![last.as_str().into()],
        network: Some("10.0.0.0/16".into()),
        domains: Vec::new(),
        metric: 100,
        masquerade: true,
        groups: vec!["g0".into()],
        keep_route: false,
        access_control_groups: vec!["g0".into()],
    }];
    account.nameserver_groups = vec![NameserverGroup {
        id: NameserverGroupId::new("ns"),
        name: "ns".into(),
        description: String::new(),
        nameservers: vec![Nameserver {
            ip: "8.8.8.8".into(),
            ns_type: "udp".into(),
            port: 53,
        }],
        enabled: true,
        groups: vec!["g0".into()],
        primary: true,
        domains: Vec::new(),
        search_domains_enabled: false,
    }];
    if spec.groups.len() >= 2 {
        account.dns_settings.disabled_management_groups = vec![last.as_str().into()];
    }
    account
}

/// Every query worth asking of the random rules: each protocol without a
/// port, and tcp/udp on every port where some rule's coverage starts or ends.
fn queries() -> Vec<(Protocol, Option<u16>)> {
    let ports = [
        1u16, 19, 20, 21, 22, 23, 50, 51, 52, 53, 79, 80, 81, 100, 101, 442, 443, 444,
    ];
    let mut out: Vec<(Protocol, Option<u16>)> =
        [Protocol::All, Protocol::Tcp, Protocol::Udp, Protocol::Icmp]
            .into_iter()
            .map(|p| (p, None))
            .collect();
    for p in [Protocol::Tcp, Protocol::Udp] {
        out.extend(ports.iter().map(|&port| (p, Some(port))));
    }
    out
}

fn allowed(index: &AccountIndex<'_>, from: &str, to: &str, q: (Protocol, Option<u16>)) -> bool {
    let query = AccessQuery {
        source: from.into(),
        destination: Destination::Peer(to.into()),
        protocol: q.0,
        port: q.1,
    };
    evaluate(index, &query, NOW)
        .map(|d| d.allowed)
        .unwrap_or(false)
}

fn all_json(account: &Account) -> String {
    let index = AccountIndex::new(account);
    serde_json::to_string(&all_network_maps(&index, NOW)).unwrap_or_default()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn maps_are_deterministic_and_order_free(spec in spec(false), seed in any::<u64>()) {
        let account = build(&spec);
        let first = all_json(&account);
        prop_assert_eq!(&first, &all_json(&account));
        let mut shuffled = account.clone();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        shuffled.peers.shuffle(&mut rng);
        shuffled.groups.shuffle(&mut rng);
        for g in &mut shuffled.groups {
            g.peers.shuffle(&mut rng);
        }
        shuffled.policies.shuffle(&mut rng);
        prop_assert_eq!(first, all_json(&shuffled));
    }

    #[test]
    fn bidirectional_rules_are_symmetric(spec in spec(true)) {
        let account = build(&spec);
        let index = AccountIndex::new(&account);
        for a in &account.peers {
            for b in &account.peers {
                for q in queries() {
                    prop_assert_eq!(
                        allowed(&index, a.id.as_str(), b.id.as_str(), q),
                        allowed(&index, b.id.as_str(), a.id.as_str(), q),
                        "{} {} {:?}", a.id, b.id, q
                    );
                }
            }
        }
    }

    #[test]
    fn maps_list_exactly_the_reachable_peers(spec in spec(false)) {
        let account = build(&spec);
        let index = AccountIndex::new(&account);
        for a in &account.peers {
            let Ok(map) = network_map(&index, a.id.as_str(), NOW) else {
                return Err(TestCaseError::fail("map of an existing peer"));
            };
            let listed: Vec<&str> = map.peers().map(|p| p.id.as_str()).collect();
            for b in &account.peers {
                let reachable = a.id != b.id
                    && queries().into_iter().any(|q| {
                        allowed(&index, a.id.as_str(), b.id.as_str(), q)
                            || allowed(&index, b.id.as_str(), a.id.as_str(), q)
                    });
                prop_assert_eq!(
                    reachable,
                    listed.contains(&b.id.as_str()),
                    "{} sees {}? listed {:?}", a.id, b.id, listed
                );
            }
        }
    }

    #[test]
    fn fan_out_equals_single_maps(spec in spec(false)) {
        let account = build(&spec);
        let index = AccountIndex::new(&account);
        let all = all_network_maps(&index, NOW);
        prop_assert_eq!(all.len(), account.peers.len());
        for (id, map) in &all {
            let single = network_map(&index, id.as_str(), NOW)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(
                serde_json::to_string(map).unwrap_or_default(),
                serde_json::to_string(&single).unwrap_or_default()
            );
        }
    }

    #[test]
    fn owned_maps_serialise_like_the_maps(spec in spec(false)) {
        let account = build(&spec);
        let index = AccountIndex::new(&account);
        for map in all_network_maps(&index, NOW).values() {
            prop_assert_eq!(
                serde_json::to_string(&PeerMap::from(map)).unwrap_or_default(),
                serde_json::to_string(map).unwrap_or_default()
            );
        }
    }
}

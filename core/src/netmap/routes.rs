//! Routes and route firewall rules.
//!
//! A peer gets the enabled routes it serves (as `peer` or through
//! `peer_groups`) and, for every enabled route distributed to one of its
//! groups, one entry per routing peer it can see; HA routes share their
//! `network_id`. Network resources become routes too: a peer that may reach
//! a resource gets one entry per active router peer of the resource's
//! network, and a router peer gets every enabled resource of the networks it
//! routes. A routing peer is not given the other routing peers' entries for
//! a network it routes itself: neither the routes of the same
//! high-availability group (same network id and prefix or domains, whether it
//! serves them directly, through `peer_groups`, or only through a disabled
//! route), nor the other routers of a network it is a router of (see
//! `Shadowed`). Entries are sorted by network id, id and routing peer IP.
//!
//! A routing peer also gets route firewall rules for what it serves: a route
//! without access-control groups permits all from `0.0.0.0/0`; a route with
//! them permits what each rule whose destinations name one of those groups
//! permits (and, for a bidirectional rule whose sources name one, the reverse),
//! from the rule's peers; a resource permits what each rule towards it
//! permits, from the rule's peers.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::net::Ipv4Addr;
use std::sync::Arc;

use ipnet::Ipv4Net;
use serde::ser::Serializer;
use serde::Serialize;

use super::firewall::port_slots;
use super::reach::Reach;
use crate::index::{iter_words, AccountIndex, PeerSet, SideOf};
use crate::model::{Action, PeerId, PortRange, Protocol, ResourceKind};
use crate::validate::Cidr;

/// What an entry routes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Via {
    /// A route, by position.
    Route(u32),
    /// A network resource through one of its network's routers.
    Resource { resource: u32, router: u32 },
}

/// One route of a map before it is written out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RouteEntry {
    pub via: Via,
    /// Rank of the routing peer.
    pub peer: u32,
}

impl RouteEntry {
    /// The identity of an entry: network id, id, routing peer, kind.
    pub fn key<'a>(&self, index: &AccountIndex<'a>) -> (&'a str, &'a str, u32, bool) {
        let (network, id) = ids(index, self.via);
        (
            network,
            id,
            self.peer,
            matches!(self.via, Via::Resource { .. }),
        )
    }
}

/// Network id and id of what an entry routes to.
fn ids<'a>(index: &AccountIndex<'a>, via: Via) -> (&'a str, &'a str) {
    match via {
        Via::Route(pos) => {
            let r = &index.account.routes[pos as usize];
            (r.network_id.as_str(), r.id.as_str())
        }
        Via::Resource { resource, .. } => {
            let r = index.resource_at(resource);
            (r.network_id.as_str(), r.id.as_str())
        }
    }
}

/// Sorts entries and drops repeated ones (the first router wins).
pub(crate) fn sort_entries(index: &AccountIndex<'_>, entries: &mut Vec<RouteEntry>) {
    entries.sort_unstable_by(|a, b| (a.key(index), a.via).cmp(&(b.key(index), b.via)));
    entries.dedup_by(|a, b| a.key(index) == b.key(index));
}

/// The routes and resources among served entries, once each (whatever the
/// router), sorted by id: the order of their route firewall rules.
pub(crate) fn served_vias(index: &AccountIndex<'_>, served: &[RouteEntry]) -> Vec<Via> {
    let mut vias: Vec<Via> = served
        .iter()
        .map(|e| match e.via {
            Via::Resource { resource, .. } => Via::Resource {
                resource,
                router: 0,
            },
            via => via,
        })
        .collect();
    vias.sort_by_key(|&via| (ids(index, via).1, via));
    vias.dedup();
    vias
}

/// The routed prefix (CIDR) or domains of a route or resource.
fn destination<'a>(index: &AccountIndex<'a>, via: Via) -> (Option<Cow<'a, str>>, &'a [String]) {
    match via {
        Via::Route(pos) => {
            let r = &index.account.routes[pos as usize];
            (r.network.as_deref().map(Cow::Borrowed), &r.domains)
        }
        Via::Resource { resource, .. } => {
            let r = index.resource_at(resource);
            if r.kind == ResourceKind::Domain {
                (None, std::slice::from_ref(&r.address))
            } else {
                let cidr = Cidr::parse_host_or_cidr(&r.address)
                    .map(|c| Cow::Owned(c.to_string()))
                    .unwrap_or(Cow::Borrowed(r.address.as_str()));
                (Some(cidr), &[])
            }
        }
    }
}

/// Entries of the enabled routes distributed to `groups`, through the
/// routing peers in `visible` that are active.
pub(crate) fn distributed_routes(
    reach: &Reach<'_>,
    groups: &[u32],
    visible: &PeerSet,
) -> Vec<RouteEntry> {
    let index = reach.index;
    let mut out = Vec::new();
    for (pos, route) in index.account.routes.iter().enumerate() {
        let distributed = route
            .groups
            .iter()
            .filter_map(|g| index.group(g.as_str()))
            .any(|g| groups.binary_search(&g).is_ok());
        if !route.enabled || !distributed {
            continue;
        }
        let via = Via::Route(pos as u32);
        let peers = index.route_peers(pos as u32).words();
        let words = peers
            .iter()
            .zip(visible.words())
            .zip(reach.active.words())
            .map(|((p, v), a)| p & v & a);
        out.extend(iter_words(words).map(|peer| RouteEntry { via, peer }));
    }
    out
}

/// Entries of `resources` through the active peers of their networks'
/// enabled routers (only through `only` when given).
pub(crate) fn resource_routes(
    reach: &Reach<'_>,
    resources: &[u32],
    only: Option<u32>,
) -> Vec<RouteEntry> {
    let index = reach.index;
    let mut out = Vec::new();
    for &resource in resources {
        let network = index.resource_at(resource).network_id.as_str();
        for &router in index.network_routers(network) {
            if !index.account.network_routers[router as usize].enabled {
                continue;
            }
            let via = Via::Resource { resource, router };
            let mut peers = index.router_peers(router).clone();
            peers.intersect_with(&reach.active);
            match only {
                Some(me) if peers.contains(me) => out.push(RouteEntry { via, peer: me }),
                Some(_) => {}
                None => out.extend(peers.iter().map(|peer| RouteEntry { via, peer })),
            }
        }
    }
    out
}

/// The enabled routes the peer at `rank` serves.
pub(crate) fn served_routes(reach: &Reach<'_>, rank: u32) -> Vec<RouteEntry> {
    let index = reach.index;
    (0..index.account.routes.len() as u32)
        .filter(|&pos| {
            index.account.routes[pos as usize].enabled && index.route_peers(pos).contains(rank)
        })
        .map(|pos| RouteEntry {
            via: Via::Route(pos),
            peer: rank,
        })
        .collect()
}

/// The high-availability groups of every route the peer at `rank` serves,
/// enabled or not, sorted: the networks it routes itself (see
/// [`Shadowed`]).
pub(crate) fn served_ha_groups(index: &AccountIndex<'_>, rank: u32) -> Vec<u32> {
    let mut out: Vec<u32> = (0..index.account.routes.len() as u32)
        .filter(|&pos| index.route_peers(pos).contains(rank))
        .map(|pos| index.route_ha(pos))
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// What a routing peer routes itself, so it is not also given the entries of
/// the other routing peers of the same networks.
///
/// A routing peer delivers a network's traffic into its local network
/// itself. Given its group mates' entries as well, its client side would
/// route that network into the tunnel, towards a mate, taking over the
/// traffic it should forward (and, between two routers, sending it back and
/// forth). The reference leaves those entries out the same way (its
/// `filterRoutesFromPeersOfSameHAGroup` for routes; for resources, a router
/// of a network is never given the network's other routers). Only the route
/// entries change: the peers stay, route firewall rules are those of what
/// the peer serves, and DNS does not depend on routes.
#[derive(Debug)]
pub(crate) struct Shadowed {
    /// HA groups of the routes the peer serves, enabled or not: the
    /// reference counts a disabled route too, so a peer assigned to a network
    /// never routes it through its group mates.
    pub ha_groups: Vec<u32>,
    /// Resources of the networks the peer routes, sorted.
    pub resources: Vec<u32>,
}

impl Shadowed {
    /// Whether `entry` is for a network the peer routes itself. Only entries
    /// through other peers are asked about: the peer's own are what it serves.
    pub fn hides(&self, index: &AccountIndex<'_>, entry: &RouteEntry) -> bool {
        match entry.via {
            Via::Route(pos) => self.ha_groups.binary_search(&index.route_ha(pos)).is_ok(),
            Via::Resource { resource, .. } => self.resources.binary_search(&resource).is_ok(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.ha_groups.is_empty() && self.resources.is_empty()
    }
}

/// The enabled resources of the networks whose enabled routers include the
/// peer at `rank`.
pub(crate) fn served_resources(reach: &Reach<'_>, rank: u32) -> Vec<u32> {
    let index = reach.index;
    let mut out: Vec<u32> = index
        .account
        .network_routers
        .iter()
        .enumerate()
        .filter(|(pos, r)| r.enabled && index.router_peers(*pos as u32).contains(rank))
        .flat_map(|(_, r)| {
            index
                .network_resources(r.network_id.as_str())
                .iter()
                .copied()
        })
        .filter(|&res| index.resource_at(res).enabled)
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// A route as it appears in a map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Route<'a> {
    pub id: &'a str,
    pub network_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub domains: &'a [String],
    pub peer: &'a PeerId,
    pub peer_ip: Ipv4Addr,
    pub metric: u32,
    pub masquerade: bool,
    pub keep_route: bool,
}

/// Writes out an entry.
pub(crate) fn route<'a>(index: &AccountIndex<'a>, entry: &RouteEntry) -> Route<'a> {
    let (network_id, id) = ids(index, entry.via);
    let (network, domains) = destination(index, entry.via);
    let peer = index.peer(entry.peer);
    let (metric, masquerade, keep_route) = match entry.via {
        Via::Route(pos) => {
            let r = &index.account.routes[pos as usize];
            (r.metric, r.masquerade, r.keep_route)
        }
        Via::Resource { router, .. } => {
            let r = &index.account.network_routers[router as usize];
            (r.metric, r.masquerade, false)
        }
    };
    Route {
        id,
        network_id,
        network,
        domains,
        peer: &peer.id,
        peer_ip: peer.ip,
        metric,
        masquerade,
        keep_route,
    }
}

/// One policy rule's permission on a route or resource, before ports are
/// expanded. `rule` is `None` for a route that permits all.
#[derive(Debug)]
pub(crate) struct RouteRule {
    via: Via,
    rule: Option<u32>,
    sources: PeerSet,
}

/// A route firewall rule as it appears in a map.
#[derive(Debug, Clone, Serialize)]
pub struct RouteFirewallRule<'a> {
    pub route_id: &'a str,
    pub source_ranges: SourceRanges<'a>,
    pub action: Action,
    /// The routed prefix; `0.0.0.0/0` for domain routes (see `domains`).
    pub destination: Cow<'a, str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub domains: &'a [String],
    pub protocol: Protocol,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port_range: Option<PortRange>,
}

/// Source ranges: `0.0.0.0/0`, or `<ip>/32` per peer in IP order.
#[derive(Debug, Clone, Copy)]
pub struct SourceRanges<'a> {
    index: &'a AccountIndex<'a>,
    peers: Option<&'a PeerSet>,
}

impl SourceRanges<'_> {
    /// The ranges: `0.0.0.0/0`, or each peer's address as a /32.
    pub fn prefixes(&self) -> impl Iterator<Item = Ipv4Net> + '_ {
        let all = self.peers.is_none().then_some(Ipv4Net::default());
        let peers = self.peers.into_iter().flat_map(|set| set.iter());
        all.into_iter()
            .chain(peers.map(|r| Ipv4Net::from(self.index.peer(r).ip)))
    }
}

impl Serialize for SourceRanges<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.prefixes())
    }
}

/// Route firewall rules per route and per resource, each computed once.
#[derive(Debug)]
pub(crate) struct RouteRules {
    routes: Vec<OnceCell<Arc<[RouteRule]>>>,
    resources: Vec<OnceCell<Arc<[RouteRule]>>>,
}

impl RouteRules {
    pub fn new(index: &AccountIndex<'_>) -> Self {
        RouteRules {
            routes: (0..index.account.routes.len())
                .map(|_| OnceCell::new())
                .collect(),
            resources: (0..index.account.network_resources.len())
                .map(|_| OnceCell::new())
                .collect(),
        }
    }

    /// The rules of a route or resource a peer serves.
    pub fn of(&self, reach: &Reach<'_>, via: Via) -> Arc<[RouteRule]> {
        match via {
            Via::Route(pos) => self.routes[pos as usize]
                .get_or_init(|| route_rules(reach, pos).into())
                .clone(),
            Via::Resource { resource, .. } => self.resources[resource as usize]
                .get_or_init(|| resource_rules(reach, resource).into())
                .clone(),
        }
    }
}

fn route_rules(reach: &Reach<'_>, pos: u32) -> Vec<RouteRule> {
    let index = reach.index;
    let via = Via::Route(pos);
    let acg = index.group_positions(&index.account.routes[pos as usize].access_control_groups);
    if acg.is_empty() {
        return vec![RouteRule {
            via,
            rule: None,
            sources: PeerSet::default(),
        }];
    }
    let names = |groups: &[u32]| groups.iter().any(|g| acg.binary_search(g).is_ok());
    let sides = index.rules().iter().enumerate().flat_map(|(i, rule)| {
        let i = i as u32;
        let fwd = names(&rule.destinations.groups).then_some((i, SideOf::Sources));
        let back = (rule.bidirectional && names(&rule.sources.groups))
            .then_some((i, SideOf::Destinations));
        fwd.into_iter().chain(back)
    });
    collect_rules(reach, via, sides)
}

fn resource_rules(reach: &Reach<'_>, pos: u32) -> Vec<RouteRule> {
    let via = Via::Resource {
        resource: pos,
        router: 0,
    };
    collect_rules(reach, via, reach.resource_rules(pos))
}

/// One rule per policy rule from the active peers of the given sides,
/// sorted by policy id and rule id.
fn collect_rules(
    reach: &Reach<'_>,
    via: Via,
    sides: impl Iterator<Item = (u32, SideOf)>,
) -> Vec<RouteRule> {
    let index = reach.index;
    let mut out: Vec<RouteRule> = Vec::new();
    for (rule, side) in sides {
        let mut peers = (**reach.side(rule, side)).clone();
        peers.intersect_with(&reach.active);
        match out.last_mut() {
            Some(last) if last.rule == Some(rule) => last.sources.union_with(&peers),
            _ => out.push(RouteRule {
                via,
                rule: Some(rule),
                sources: peers,
            }),
        }
    }
    out.retain(|r| !r.sources.is_empty());
    out.sort_by_cached_key(|r| {
        r.rule.map(|i| {
            let rule = &index.rules()[i as usize];
            let (policy, pr) = index.policy_rule(rule);
            (&policy.id, &pr.id, i)
        })
    });
    out
}

/// Writes out a route rule, one per port slot.
pub(crate) fn route_firewall_rules<'a>(
    index: &'a AccountIndex<'a>,
    rule: &'a RouteRule,
) -> impl Iterator<Item = RouteFirewallRule<'a>> + 'a {
    let (_, route_id) = ids(index, rule.via);
    let (network, domains) = destination(index, rule.via);
    let destination = network.unwrap_or(Cow::Borrowed("0.0.0.0/0"));
    let (action, protocol, spec) = match rule.rule {
        None => (Action::Accept, Protocol::All, None),
        Some(i) => {
            let r = &index.rules()[i as usize];
            (r.action, r.protocol, Some(&r.ports))
        }
    };
    let peers = rule.rule.map(|_| &rule.sources);
    let slots: Vec<(Option<u16>, Option<PortRange>)> = match spec {
        Some(spec) => port_slots(spec).collect(),
        None => vec![(None, None)],
    };
    slots
        .into_iter()
        .map(move |(port, port_range)| RouteFirewallRule {
            route_id,
            source_ranges: SourceRanges { index, peers },
            action,
            destination: destination.clone(),
            domains,
            protocol,
            port,
            port_range,
        })
}

#[cfg(test)]
mod tests {
    use crate::index::AccountIndex;
    use crate::model::Account;
    use crate::netmap::network_map;
    use crate::Timestamp;

    /// A network whose routers are `b` and the group of `c` and `d`, and a
    /// policy letting `a`, `b` and `c` reach its resource. (Not a conformance
    /// vector: the router's route firewall rule lists `b` among its own
    /// sources, where the reference leaves the router out.)
    fn account() -> Account {
        let peer = |id: &str, n: u8| {
            serde_json::json!({"id": id, "name": id, "ip": format!("100.64.0.{n}"),
                "dns_label": id, "key": format!("{}KEY=", id.to_uppercase())})
        };
        serde_json::from_value(serde_json::json!({
            "id": "acc", "serial": 1,
            "peers": [peer("a", 1), peer("b", 2), peer("c", 3), peer("d", 4)],
            "groups": [
                {"id": "g-all", "name": "All", "peers": ["a", "b", "c", "d"]},
                {"id": "g-cli", "name": "g-cli", "peers": ["a", "b", "c"]},
                {"id": "g-rt", "name": "g-rt", "peers": ["c", "d"]}
            ],
            "policies": [
                {"id": "p-all", "name": "p-all", "enabled": true, "rules": [
                    {"id": "r-all", "name": "r-all", "enabled": true, "action": "accept",
                     "bidirectional": true, "protocol": "all",
                     "sources": ["g-all"], "destinations": ["g-all"]}]},
                {"id": "p-h", "name": "p-h", "enabled": true, "rules": [
                    {"id": "r-h", "name": "r-h", "enabled": true, "action": "accept",
                     "bidirectional": false, "protocol": "tcp", "ports": ["5432"],
                     "sources": ["g-cli"],
                     "destinationResource": {"id": "res-h", "type": "host"}}]}
            ],
            "networks": [{"id": "net-1", "name": "Office"}],
            "network_resources": [{"id": "res-h", "network_id": "net-1", "name": "db",
                "address": "10.0.0.5", "type": "host", "enabled": true}],
            "network_routers": [
                {"id": "rtr-b", "network_id": "net-1", "peer": "b", "metric": 10,
                 "masquerade": true, "enabled": true},
                {"id": "rtr-g", "network_id": "net-1", "peer_groups": ["g-rt"], "metric": 20,
                 "masquerade": false, "enabled": true}
            ]
        }))
        .expect("the test account parses")
    }

    fn routes_of(account: &Account, peer: &str) -> Vec<(String, String)> {
        let index = AccountIndex::new(account);
        let map = network_map(&index, peer, Timestamp::from_secs(1_750_000_000)).expect("map");
        map.routes()
            .iter()
            .map(|r| (r.id.to_string(), r.peer.to_string()))
            .collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn a_client_gets_every_router_of_the_network() {
        assert_eq!(
            routes_of(&account(), "a"),
            pairs(&[("res-h", "b"), ("res-h", "c"), ("res-h", "d")])
        );
    }

    #[test]
    fn a_router_that_is_also_a_client_gets_only_its_own_entry() {
        let account = account();
        assert_eq!(routes_of(&account, "b"), pairs(&[("res-h", "b")]));
        // The same for a router through the group of routers.
        assert_eq!(routes_of(&account, "c"), pairs(&[("res-h", "c")]));
        // d routes and is no client: its own entry, as before.
        assert_eq!(routes_of(&account, "d"), pairs(&[("res-h", "d")]));
    }
}

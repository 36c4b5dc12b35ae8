//! Routes and networks on the peer: what the map's routes make of it.
//!
//! [`Routes`] holds the last map and, every time a map arrives
//! ([`Routes::apply_map`]) or a peer's reachability changes
//! ([`Routes::follow`]: the engine's [`Reach`](crate::engine::wg::Reach) watch), chooses a routing
//! peer for every network this peer uses
//! ([`meshplane_core::routing::select`]) and applies the choice:
//!
//! - to the engine: each chosen prefix goes to its routing peer's allowed
//!   IPs, and the route filter gets the route firewall rules of what this
//!   peer serves plus one outbound rule per prefix it uses
//!   ([`NetworkUpdate::routes`], [`NetworkUpdate::route_rules`]);
//! - to the host, in kernel TUN mode: kernel routes for the chosen prefixes
//!   on the interface ([`host`]), and, on a routing peer, forwarding and
//!   masquerading ([`serve`]).
//!
//! [`HostSide::apply_chosen`] is the single place where chosen prefixes
//! reach the host; a default route (`0.0.0.0/0`, an exit node) needs policy
//! routing that keeps the management, relay and peer underlay traffic out
//! of the tunnel ([`exit`], with the sockets [`mark`]ed), so it is never
//! installed as a plain route.
//!
//! Domain routes resolve their names with the host's resolver
//! ([`domains`]); each address counts as a /32 of the route: routed
//! through the chosen peer, allowed and masqueraded by the routing peer as
//! its route firewall rules say.
//!
//! In netstack mode there is no host side: the engine routes the chosen
//! prefixes and the userspace stack may dial them
//! ([`RoutedPrefixes`]), so this process's own connections (the SOCKS5
//! proxy) reach routed networks; a netstack peer does not forward for
//! others.

pub mod domains;
#[cfg(target_os = "linux")]
pub mod exit;
#[cfg(target_os = "linux")]
pub mod host;
pub mod mark;
#[cfg(target_os = "linux")]
pub mod serve;

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, PoisonError};

use ipnet::Ipv4Net;
use meshplane_core::model::PeerId;
use meshplane_core::netmap::PeerMap;
use meshplane_core::routing::forward::RouteRule;
use meshplane_core::routing::select::{Candidate, Selection, Selector};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use crate::engine::netstack::RoutedPrefixes;
use crate::engine::wg::{Engine, EngineStopped, NetworkUpdate, RoutedPrefix};
use crate::key::PublicKey;
use domains::{DomainResolver, Resolved};

/// A network this peer uses, in `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkReport {
    pub network_id: String,
    /// The routed prefix; none for a domain route.
    pub network: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub domains: Vec<String>,
    /// The chosen routing peer (id, mesh IP, FQDN) and its route's id;
    /// none while no routing peer of the network is connected.
    pub route_id: Option<String>,
    pub routing_peer: Option<String>,
    pub routing_peer_ip: Option<Ipv4Addr>,
    pub routing_peer_fqdn: Option<String>,
    /// How many routing peers the network has (more than one: HA).
    pub routing_peers: usize,
}

/// A network this peer routes for others, in `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServedReport {
    pub network_id: String,
    pub network: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub domains: Vec<String>,
    pub masquerade: bool,
}

/// The routes part of `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutesReport {
    pub networks: Vec<NetworkReport>,
    pub served: Vec<ServedReport>,
}

/// The exit node in `status`: the chosen routing peer of the network
/// routing `0.0.0.0/0`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitNodeReport {
    pub network_id: String,
    pub route_id: String,
    pub peer_id: String,
    pub peer_ip: Ipv4Addr,
    pub fqdn: Option<String>,
}

impl RoutesReport {
    /// The exit node in use: a default-route network with a routing peer.
    pub fn exit_node(&self) -> Option<ExitNodeReport> {
        self.networks.iter().find_map(|n| {
            let network = n.network.as_deref()?.parse::<Ipv4Net>().ok()?;
            if network.prefix_len() != 0 {
                return None;
            }
            Some(ExitNodeReport {
                network_id: n.network_id.clone(),
                route_id: n.route_id.clone()?,
                peer_id: n.routing_peer.clone()?,
                peer_ip: n.routing_peer_ip?,
                fqdn: n.routing_peer_fqdn.clone(),
            })
        })
    }
}

/// The human form of the routes part of `status`.
pub fn render(r: &RoutesReport) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let what = |network: &Option<String>, domains: &[String]| {
        network.clone().unwrap_or_else(|| domains.join(","))
    };
    let _ = writeln!(out, "Networks:    {}", r.networks.len());
    for n in &r.networks {
        let via = match (&n.routing_peer_ip, &n.routing_peer_fqdn, &n.routing_peer) {
            (Some(ip), Some(fqdn), _) => format!("via {fqdn} ({ip})"),
            (Some(ip), None, Some(id)) => format!("via {id} ({ip})"),
            _ => "no routing peer connected".to_string(),
        };
        let ha = if n.routing_peers > 1 {
            format!("  [{} routing peers]", n.routing_peers)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "  {} {}  {via}{ha}",
            n.network_id,
            what(&n.network, &n.domains)
        );
    }
    if !r.served.is_empty() {
        let _ = writeln!(out, "Routing for: {}", r.served.len());
        for s in &r.served {
            let _ = writeln!(
                out,
                "  {} {}{}",
                s.network_id,
                what(&s.network, &s.domains),
                if s.masquerade { "  masquerade" } else { "" }
            );
        }
    }
    out
}

/// What the host side needs to know (kernel TUN mode).
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// The TUN interface.
    pub interface: String,
    /// Addresses that must stay on the underlay: the management server's
    /// and the relay's.
    pub underlay: Vec<Ipv4Addr>,
}

/// The IPv4 addresses of the hosts in `urls` (`scheme://host[:port]/…`),
/// for [`HostConfig::underlay`]; a name that does not resolve is logged
/// and skipped.
pub async fn underlay_addresses(urls: &[&str]) -> Vec<Ipv4Addr> {
    let mut out = Vec::new();
    for url in urls {
        let rest = url.split_once("://").map_or(*url, |(_, r)| r);
        let authority = rest.split('/').next().unwrap_or_default();
        let with_port = if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            authority.to_string()
        } else {
            format!("{authority}:0")
        };
        match tokio::net::lookup_host(with_port).await {
            Ok(addrs) => out.extend(addrs.filter_map(|a| match a.ip() {
                std::net::IpAddr::V4(ip) => Some(ip),
                std::net::IpAddr::V6(_) => None,
            })),
            Err(e) => tracing::warn!("{url}: {e}; routes may cover it"),
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Chooses routing peers and applies the choice; see the module docs.
#[derive(Debug)]
pub struct Routes {
    engine: Arc<Engine>,
    own: PeerId,
    /// This peer's mesh address and the network's prefix length.
    address: Ipv4Net,
    state: tokio::sync::Mutex<State>,
    report: Mutex<RoutesReport>,
    /// The addresses of the domain routes' names.
    domains: DomainResolver,
    /// In netstack mode: the prefixes the userspace stack may dial.
    netstack: Option<RoutedPrefixes>,
}

#[derive(Debug, Default)]
struct State {
    map: Option<PeerMap>,
    /// The map's own part of the engine's update (peers and firewall).
    base: NetworkUpdate,
    selector: Selector,
    /// The routes part last given to the engine.
    applied: Option<Applied>,
    host: Option<HostSide>,
}

impl Routes {
    /// Routes for the link of peer `own` at `address`: `host` in kernel TUN
    /// mode (when kernel routes and forwarding cannot be set up it is
    /// logged and the engine side still works), `netstack` in netstack
    /// mode.
    pub fn new(
        engine: Arc<Engine>,
        own: PeerId,
        address: Ipv4Net,
        host: Option<HostConfig>,
        netstack: Option<RoutedPrefixes>,
    ) -> Routes {
        let host = host.and_then(|h| HostSide::new(&h, address));
        Routes {
            engine,
            own,
            address,
            state: tokio::sync::Mutex::new(State {
                host,
                ..State::default()
            }),
            report: Mutex::new(RoutesReport::default()),
            domains: DomainResolver::start(),
            netstack,
        }
    }

    /// Applies a new map: its peers and firewall rules, and the routes
    /// chosen for it. Returns the update the engine got.
    pub async fn apply_map(&self, map: PeerMap) -> Result<NetworkUpdate, EngineStopped> {
        let mut state = self.state.lock().await;
        state.base = NetworkUpdate::from_map(&map);
        state.map = Some(map);
        state.applied = None;
        self.apply(&mut state).await
    }

    /// Chooses again with the peers' current reachability; the engine and
    /// the host change only when a choice did.
    pub async fn reselect(&self) -> Result<(), EngineStopped> {
        let mut state = self.state.lock().await;
        if state.map.is_some() {
            self.apply(&mut state).await?;
        }
        Ok(())
    }

    /// Follows the engine's reachability and chooses again on every change:
    /// a routing peer that stops answering is replaced within seconds. Also
    /// applies the domain routes' addresses as they resolve.
    pub fn follow(self: &Arc<Self>) -> JoinHandle<()> {
        let routes = Arc::clone(self);
        let mut reach = self.engine.reach();
        let mut resolved = self.domains.resolved();
        tokio::spawn(async move {
            loop {
                let changed = tokio::select! {
                    r = reach.changed() => r,
                    r = resolved.changed() => r,
                };
                if changed.is_err() || routes.reselect().await.is_err() {
                    return;
                }
            }
        })
    }

    /// What `status` shows of routes.
    pub fn report(&self) -> RoutesReport {
        self.report
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Removes what this peer set up on the host (kernel routes, the
    /// nftables table, forwarding); the link is going down.
    pub async fn shutdown(&self) {
        let mut state = self.state.lock().await;
        if let Some(host) = &mut state.host {
            host.clear(self.address).await;
        }
    }

    async fn apply(&self, state: &mut State) -> Result<NetworkUpdate, EngineStopped> {
        let reach = self.engine.reach().borrow().clone();
        let Some(map) = &state.map else {
            return Ok(state.base.clone());
        };
        let keys: HashMap<&PeerId, PublicKey> = map
            .peers
            .iter()
            .filter_map(|p| Some((&p.id, p.key.parse::<PublicKey>().ok()?)))
            .collect();
        let candidates: Vec<Candidate> = map.routes.iter().map(Candidate::from).collect();
        let selection = state.selector.select(&self.own, &candidates, |id| {
            keys.get(id).and_then(|k| reach.get(k)).copied()
        });
        self.domains.set_domains(domain_names(map, &selection));
        let resolved = self.domains.resolved().borrow().clone();
        let plan = Plan::new(&self.own, map, &selection, &keys, self.address, &resolved);
        *self.report.lock().unwrap_or_else(PoisonError::into_inner) =
            report(&self.own, map, &selection);
        let mut update = state.base.clone();
        update.routes = plan.routes.clone();
        update.route_rules = plan.rules.clone();
        let applied = Applied {
            routes: plan.routes,
            rules: plan.rules,
            kept: plan.kept,
        };
        if state.applied.as_ref() != Some(&applied) {
            for r in &applied.routes {
                tracing::info!("route {} via {}", r.prefix, r.via);
            }
            self.engine.update(update.clone()).await?;
            let chosen: Vec<Ipv4Net> = applied.routes.iter().map(|r| r.prefix).collect();
            if let Some(stack) = &self.netstack {
                stack.set(&chosen);
            }
            if let Some(host) = &mut state.host {
                let mut kernel = chosen.clone();
                kernel.extend(&applied.kept);
                host.apply_chosen(&kernel).await;
            }
            state.applied = Some(applied);
        }
        // Serving is applied every time, not only when the engine's part
        // changed: a route's masquerade flag alone changes nothing above,
        // and a failed nftables transaction is retried at the next map or
        // reachability change (unchanged, it costs a comparison).
        if let Some(host) = &mut state.host {
            host.serve(!selection.served.is_empty(), self.address, &plan.masquerade)
                .await;
        }
        Ok(update)
    }
}

/// What was last given to the engine and the host.
#[derive(Debug, PartialEq, Eq)]
struct Applied {
    routes: Vec<RoutedPrefix>,
    rules: Vec<RouteRule>,
    kept: Vec<Ipv4Net>,
}

/// What one selection means for the engine and the host.
struct Plan {
    routes: Vec<RoutedPrefix>,
    rules: Vec<RouteRule>,
    masquerade: Vec<Ipv4Net>,
    /// Prefixes of networks with no routing peer connected whose route
    /// says `keep_route`: their kernel route stays (their traffic goes
    /// into the tunnel and is dropped there rather than leaving through
    /// the underlay), as NetBird keeps it.
    kept: Vec<Ipv4Net>,
}

impl Plan {
    fn new(
        own: &PeerId,
        map: &PeerMap,
        selection: &Selection,
        keys: &HashMap<&PeerId, PublicKey>,
        address: Ipv4Net,
        resolved: &Resolved,
    ) -> Plan {
        let routes: Vec<RoutedPrefix> = selection
            .used
            .iter()
            .filter_map(|c| Some((keys.get(&c.chosen.as_ref()?.peer)?, c)))
            .flat_map(|(via, c)| {
                let prefixes = match c.target.network.as_deref() {
                    Some(n) => n
                        .parse::<Ipv4Net>()
                        .ok()
                        .map(|p| p.trunc())
                        .into_iter()
                        .collect(),
                    None => domains::addresses(&c.target.domains, resolved),
                };
                prefixes
                    .into_iter()
                    .map(|prefix| RoutedPrefix { prefix, via: *via })
            })
            .collect();
        let mut rules: Vec<RouteRule> = map
            .route_firewall_rules
            .iter()
            .flat_map(|r| {
                let rule = RouteRule::from_map(r);
                if rule.is_none() {
                    tracing::debug!(
                        "route rule {} for {:?}: no prefix",
                        r.route_id,
                        r.destination
                    );
                }
                // A domain route's rule names `0.0.0.0/0` as its
                // destination: it allows the names' resolved addresses
                // instead, so nothing until they are known (never
                // everywhere).
                let destinations = if r.domains.is_empty() {
                    rule.iter().map(|x| x.destination).collect()
                } else {
                    domains::addresses(&r.domains, resolved)
                };
                destinations.into_iter().filter_map(move |destination| {
                    Some(RouteRule {
                        destination,
                        ..rule.clone()?
                    })
                })
            })
            .collect();
        rules.extend(
            routes
                .iter()
                .map(|r| RouteRule::outbound(address.addr(), r.prefix)),
        );
        let masquerade = map
            .routes
            .iter()
            .filter(|r| &r.peer == own && r.masquerade)
            .flat_map(|r| match r.network.as_deref() {
                Some(n) => n
                    .parse::<Ipv4Net>()
                    .ok()
                    .map(|p| p.trunc())
                    .into_iter()
                    .collect(),
                None => domains::addresses(&r.domains, resolved),
            })
            .collect();
        let kept = selection
            .used
            .iter()
            .filter(|c| c.chosen.is_none())
            .filter(|c| {
                map.routes.iter().any(|r| {
                    r.keep_route
                        && r.network_id == c.target.network_id
                        && r.network == c.target.network
                })
            })
            .filter_map(|c| c.target.network.as_deref()?.parse::<Ipv4Net>().ok())
            .map(|p| p.trunc())
            .collect();
        Plan {
            routes,
            rules,
            masquerade,
            kept,
        }
    }
}

/// The names to resolve: those of the domain networks this peer uses
/// through a routing peer, and those its route firewall rules allow (as a
/// routing peer).
fn domain_names<'a>(map: &'a PeerMap, selection: &'a Selection) -> impl Iterator<Item = &'a str> {
    let used = selection
        .used
        .iter()
        .filter(|c| c.chosen.is_some())
        .flat_map(|c| &c.target.domains);
    let served = map.route_firewall_rules.iter().flat_map(|r| &r.domains);
    used.chain(served).map(String::as_str)
}

/// The routes part of `status` for a selection.
fn report(own: &PeerId, map: &PeerMap, selection: &Selection) -> RoutesReport {
    let fqdn = |id: &PeerId| {
        map.peers
            .iter()
            .find(|p| &p.id == id)
            .map(|p| p.fqdn.clone())
    };
    let networks = selection
        .used
        .iter()
        .map(|c| NetworkReport {
            network_id: c.target.network_id.clone(),
            network: c.target.network.clone(),
            domains: c.target.domains.clone(),
            route_id: c.chosen.as_ref().map(|x| x.route_id.clone()),
            routing_peer: c.chosen.as_ref().map(|x| x.peer.to_string()),
            routing_peer_ip: c.chosen.as_ref().map(|x| x.peer_ip),
            routing_peer_fqdn: c.chosen.as_ref().and_then(|x| fqdn(&x.peer)),
            routing_peers: c.routing_peers,
        })
        .collect();
    let served = selection
        .served
        .iter()
        .map(|t| ServedReport {
            network_id: t.network_id.clone(),
            network: t.network.clone(),
            domains: t.domains.clone(),
            masquerade: map.routes.iter().any(|r| {
                &r.peer == own
                    && r.masquerade
                    && r.network_id == t.network_id
                    && r.network == t.network
            }),
        })
        .collect();
    RoutesReport { networks, served }
}

/// The host side in kernel TUN mode.
#[derive(Debug)]
struct HostSide {
    #[cfg(target_os = "linux")]
    routes: host::HostRoutes,
    #[cfg(target_os = "linux")]
    serving: serve::Serving,
    /// The exit node's policy routing; none when netlink refused it.
    #[cfg(target_os = "linux")]
    exit: Option<exit::ExitRouting>,
}

impl HostSide {
    #[cfg(target_os = "linux")]
    fn new(config: &HostConfig, _address: Ipv4Net) -> Option<HostSide> {
        match host::HostRoutes::new(&config.interface, config.underlay.clone()) {
            Ok(routes) => Some(HostSide {
                routes,
                serving: serve::Serving::default(),
                exit: exit::ExitRouting::new(&config.interface)
                    .map_err(|e| tracing::warn!("exit nodes unavailable: {e}"))
                    .ok(),
            }),
            Err(e) => {
                tracing::warn!("routes: no netlink ({e}); routed prefixes get no kernel routes");
                None
            }
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn new(_config: &HostConfig, _address: Ipv4Net) -> Option<HostSide> {
        None
    }

    /// The one entry point for the prefixes chosen for this peer: kernel
    /// routes on the interface for each. A default route is an exit node's:
    /// it goes through policy routing ([`exit`]), not as a plain route.
    async fn apply_chosen(&mut self, chosen: &[Ipv4Net]) {
        let (default, plain): (Vec<Ipv4Net>, Vec<Ipv4Net>) =
            chosen.iter().partition(|p| p.prefix_len() == 0);
        #[cfg(target_os = "linux")]
        {
            self.routes.apply(&plain).await;
            self.set_exit(!default.is_empty()).await;
        }
        #[cfg(not(target_os = "linux"))]
        let _ = (default, plain);
    }

    /// Turns the exit node's policy routing on or off.
    #[cfg(target_os = "linux")]
    async fn set_exit(&mut self, on: bool) {
        match &mut self.exit {
            Some(exit) => match exit.set(on).await {
                Ok(()) => {}
                Err(e) => tracing::warn!("exit node: {e}"),
            },
            None if on => tracing::warn!("exit node chosen, but policy routing is unavailable"),
            None => {}
        }
    }

    /// Forwards while serving, masquerading `masquerade`.
    async fn serve(&mut self, serving: bool, address: Ipv4Net, masquerade: &[Ipv4Net]) {
        #[cfg(target_os = "linux")]
        self.serving.apply(serving, address, masquerade).await;
        #[cfg(not(target_os = "linux"))]
        let _ = (serving, address, masquerade);
    }

    async fn clear(&mut self, address: Ipv4Net) {
        #[cfg(target_os = "linux")]
        {
            self.set_exit(false).await;
            self.routes.clear().await;
            self.serving.clear(address).await;
        }
        #[cfg(not(target_os = "linux"))]
        let _ = address;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::PrivateKey;
    use meshplane_core::index::AccountIndex;
    use meshplane_core::model::Account;
    use meshplane_core::netmap::network_map;
    use meshplane_core::routing::select::PeerState;
    use meshplane_core::Timestamp;
    use serde_json::json;

    /// The map of `peer` in an account where b routes the office network
    /// (masqueraded) for everyone.
    fn map_of(peer: &str, keys: &[String; 2], keep_route: bool) -> PeerMap {
        let account: Account = serde_json::from_value(json!({
            "id": "acc", "serial": 1,
            "peers": [
                {"id": "a", "name": "a", "ip": "100.64.0.1", "dns_label": "a", "key": keys[0]},
                {"id": "b", "name": "b", "ip": "100.64.0.2", "dns_label": "b", "key": keys[1]}
            ],
            "groups": [{"id": "g", "name": "All", "peers": ["a", "b"]}],
            "policies": [{"id": "p", "name": "all", "enabled": true, "rules": [{
                "id": "r", "name": "all", "enabled": true, "action": "accept",
                "bidirectional": true, "protocol": "all", "sources": ["g"], "destinations": ["g"]}]}],
            "routes": [{"id": "office", "network_id": "office", "enabled": true, "peer": "b",
                "network": "10.50.0.0/24", "metric": 9999, "masquerade": true, "groups": ["g"],
                "keep_route": keep_route}]
        }))
        .expect("account");
        let index = AccountIndex::new(&account);
        PeerMap::from(&network_map(&index, peer, Timestamp::from_secs(1)).expect("map"))
    }

    fn plan_of(peer: &str, keys: &[String; 2], b_up: bool, keep: bool) -> (Plan, RoutesReport) {
        let map = map_of(peer, keys, keep);
        let own = PeerId(peer.into());
        let parsed: HashMap<&PeerId, PublicKey> = map
            .peers
            .iter()
            .map(|p| (&p.id, p.key.parse().expect("key")))
            .collect();
        let candidates: Vec<Candidate> = map.routes.iter().map(Candidate::from).collect();
        let state = PeerState {
            connected: b_up,
            relayed: false,
            latency_ms: Some(3),
        };
        let selection = Selector::default().select(&own, &candidates, |_| Some(state));
        let address = Ipv4Net::new(map.peer_config.address.addr(), 16).expect("prefix");
        let plan = Plan::new(&own, &map, &selection, &parsed, address, &Resolved::new());
        let report = report(&own, &map, &selection);
        (plan, report)
    }

    #[test]
    fn a_client_routes_the_prefix_through_the_chosen_peer_and_b_serves_it() {
        let keys = [(); 2].map(|()| PrivateKey::generate().public_key().to_string());
        let office: Ipv4Net = "10.50.0.0/24".parse().expect("prefix");

        let (plan, report) = plan_of("a", &keys, true, false);
        assert_eq!(plan.routes.len(), 1);
        assert_eq!(plan.routes[0].prefix, office);
        assert_eq!(plan.routes[0].via.to_string(), keys[1]);
        assert_eq!(
            plan.rules,
            vec![RouteRule::outbound(Ipv4Addr::new(100, 64, 0, 1), office)]
        );
        assert!(plan.masquerade.is_empty());
        assert_eq!(report.networks[0].routing_peer.as_deref(), Some("b"));
        assert!(report.served.is_empty());

        // b not connected: nothing is routed, the network is listed without
        // a routing peer.
        let (plan, report) = plan_of("a", &keys, false, false);
        assert!(plan.routes.is_empty());
        assert!(plan.kept.is_empty());
        assert_eq!(report.networks[0].routing_peer, None);
        // ... unless the route keeps its kernel route.
        let (plan, _) = plan_of("a", &keys, false, true);
        assert!(plan.routes.is_empty());
        assert_eq!(plan.kept, vec![office]);

        let (plan, report) = plan_of("b", &keys, true, false);
        assert!(plan.routes.is_empty());
        assert_eq!(plan.masquerade, vec![office]);
        assert_eq!(plan.rules.len(), 1);
        assert_eq!(plan.rules[0].destination, office);
        assert_eq!(plan.rules[0].source_ranges, vec![Ipv4Net::default()]);
        assert_eq!(report.served.len(), 1);
        assert!(report.served[0].masquerade);
    }
}

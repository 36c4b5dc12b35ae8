//! Network maps: what each peer is told about the mesh.
//!
//! A peer's map holds the account serial, the network, its own address, the
//! remote peers it may reach or be reached by (`peers`, in IP order; peers
//! whose login expired go to `offline_peers`), its firewall rules, its routes,
//! the route firewall rules of the routes it serves, and its DNS
//! configuration. See [`firewall`], [`routes`] and [`dns`] for each part's
//! rules and order.
//!
//! A peer waiting for approval, and a peer whose own login has expired (it
//! must log in again before it gets anything), receive only the serial, the
//! network and their own configuration; neither appears in anyone's map
//! except that expired peers are listed as offline peers.
//!
//! Scale: peers in the same groups with the same rule sides share one
//! class map (behind an `Arc`); a map is the class part plus the
//! few things only the peer has (the routes it serves and their rules), and
//! the peer itself is left out only when the map is read or written. The
//! fan-out ([`all_network_maps`]) therefore costs one class computation per
//! distinct class plus a small constant per peer, and
//! `all_network_maps(..)[p]` is the same value as `network_map(.., p, ..)`.
//!
//! A [`NetworkMap`] borrows the account; [`PeerMap`] (see [`owned`]) is the
//! same map owning its data, for whatever holds a map on its own: the wire
//! protocol and the daemon. Both serialise to the same JSON.

mod classes;
pub mod delta;
pub mod dns;
pub mod fanout;
pub mod firewall;
pub mod owned;
pub(crate) mod reach;
pub mod routes;

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::Arc;

use ipnet::Ipv4Net;
use serde::ser::{SerializeStruct, Serializer};
use serde::Serialize;
use thiserror::Error;

use crate::error::{ErrorCode, Kind};
use crate::index::{iter_words, AccountIndex, PeerSet, SideId};
use crate::model::{Peer, PeerId};
use crate::time::Timestamp;
use classes::ClassMap;
use dns::{NameserverGroupView, Record};
use firewall::{expand, FirewallRule};
pub use owned::PeerMap;
use reach::Reach;
use routes::{
    distributed_routes, resource_routes, route, route_firewall_rules, served_ha_groups,
    served_resources, served_routes, served_vias, sort_entries, Route, RouteEntry,
    RouteFirewallRule, RouteRule, RouteRules, Shadowed,
};

/// A map was asked for a peer the account does not hold.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NetmapError {
    #[error("peer {0} not found")]
    PeerNotFound(String),
}

impl ErrorCode for NetmapError {
    fn code(&self) -> &'static str {
        match self {
            NetmapError::PeerNotFound(_) => "peer_not_found",
        }
    }

    fn kind(&self) -> Kind {
        Kind::NotFound
    }
}

/// The map of one peer at `now`.
pub fn network_map<'a>(
    index: &'a AccountIndex<'a>,
    peer_id: &str,
    now: Timestamp,
) -> Result<NetworkMap<'a>, NetmapError> {
    let rank = index
        .rank(peer_id)
        .ok_or_else(|| NetmapError::PeerNotFound(peer_id.to_string()))?;
    Ok(MapBuilder::new(index, now).map(rank))
}

/// The map of every peer at `now`, by peer id.
pub fn all_network_maps<'a>(
    index: &'a AccountIndex<'a>,
    now: Timestamp,
) -> BTreeMap<&'a PeerId, NetworkMap<'a>> {
    MapBuilder::new(index, now).all()
}

/// Builds maps for one account at one instant, sharing work between them.
#[derive(Debug)]
pub struct MapBuilder<'a> {
    reach: Reach<'a>,
    route_rules: RouteRules,
    classes: HashMap<(&'a [u32], Vec<SideId>), Arc<ClassMap>>,
}

impl<'a> MapBuilder<'a> {
    pub fn new(index: &'a AccountIndex<'a>, now: Timestamp) -> Self {
        MapBuilder {
            reach: Reach::new(index, now),
            route_rules: RouteRules::new(index),
            classes: HashMap::new(),
        }
    }

    /// Every peer's map. Posture checks are evaluated once per peer first.
    pub fn all(&mut self) -> BTreeMap<&'a PeerId, NetworkMap<'a>> {
        self.reach.evaluate_posture();
        let index = self.reach.index;
        (0..index.peer_count() as u32)
            .map(|rank| (&index.peer(rank).id, self.map(rank)))
            .collect()
    }

    /// The map of the peer at `rank`.
    pub fn map(&mut self, rank: u32) -> NetworkMap<'a> {
        let reach = &self.reach;
        let index = reach.index;
        if !index.approved().contains(rank) || reach.expired.contains(rank) {
            return NetworkMap {
                index,
                rank,
                body: None,
            };
        }
        let groups = index.groups_of(rank);
        let key = (groups, reach.member_sides(rank));
        let class = match self.classes.get(&key) {
            Some(class) => class.clone(),
            None => {
                let class = Arc::new(ClassMap::build(reach, groups, &key.1));
                self.classes.insert(key, class.clone());
                class
            }
        };
        let extras = self.extras(rank, groups, &class);
        NetworkMap {
            index,
            rank,
            body: Some(Body {
                class,
                active: self.reach.active.clone(),
                expired: self.reach.expired.clone(),
                extras,
            }),
        }
    }

    /// What only this peer has: the routes and resources it serves, their
    /// firewall rules, the clients of those resources, which it sees, and the
    /// networks it routes itself, whose other routing peers it is not given.
    fn extras(&self, rank: u32, groups: &[u32], class: &ClassMap) -> Option<Box<Extras>> {
        let reach = &self.reach;
        let index = reach.index;
        let mut served = served_routes(reach, rank);
        let resources = served_resources(reach, rank);
        served.extend(resource_routes(reach, &resources, Some(rank)));
        let shadowed = Shadowed {
            ha_groups: served_ha_groups(index, rank),
            resources,
        };
        if served.is_empty() && shadowed.is_empty() {
            return None;
        }
        sort_entries(index, &mut served);
        let mut clients = PeerSet::empty(index.peer_count());
        for &res in &shadowed.resources {
            clients.union_with(reach.clients(res));
        }
        let (visible, routes) = if clients.is_subset(&class.visible) {
            (None, None)
        } else {
            clients.union_with(&class.visible);
            let mut routes = distributed_routes(reach, groups, &clients);
            routes.extend(resource_routes(reach, &class.granted, None));
            sort_entries(index, &mut routes);
            (Some(clients), Some(routes))
        };
        let vias = served_vias(index, &served);
        let route_rules = vias
            .into_iter()
            .map(|via| self.route_rules.of(reach, via))
            .collect();
        Some(Box::new(Extras {
            served,
            visible,
            routes,
            route_rules,
            shadowed,
        }))
    }
}

#[derive(Debug)]
struct Body {
    class: Arc<ClassMap>,
    active: Arc<PeerSet>,
    expired: Arc<PeerSet>,
    extras: Option<Box<Extras>>,
}

#[derive(Debug)]
struct Extras {
    /// Entries this peer serves, sorted.
    served: Vec<RouteEntry>,
    /// The class view widened by the clients of the resources it routes.
    visible: Option<PeerSet>,
    /// The class routes recomputed for the widened view.
    routes: Option<Vec<RouteEntry>>,
    route_rules: Vec<Arc<[RouteRule]>>,
    /// Networks this peer routes itself.
    shadowed: Shadowed,
}

/// One peer's network map. Cheap to hold: it shares its class's part.
/// Serialise it (serde) for the JSON form; [`PeerMap::from`] makes an owned
/// copy, which the wire protocol carries.
#[derive(Debug)]
pub struct NetworkMap<'a> {
    index: &'a AccountIndex<'a>,
    rank: u32,
    body: Option<Body>,
}

/// A remote peer as listed in a map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerView<'a> {
    pub id: &'a PeerId,
    pub name: &'a str,
    pub key: &'a str,
    pub ip: Ipv4Addr,
    pub fqdn: &'a str,
    pub ssh_enabled: bool,
}

impl<'a> NetworkMap<'a> {
    /// The peer whose map this is.
    pub fn peer(&self) -> &'a Peer {
        self.index.peer(self.rank)
    }

    fn visible(&self) -> Option<(&PeerSet, &Body)> {
        self.body.as_ref().map(|b| {
            let v = b
                .extras
                .as_ref()
                .and_then(|e| e.visible.as_ref())
                .unwrap_or(&b.class.visible);
            (v, b)
        })
    }

    /// Ranks of visible peers in `filter` (active or expired), without self.
    fn ranks(&self, expired: bool) -> impl Iterator<Item = u32> + '_ {
        let me = self.rank;
        self.visible()
            .into_iter()
            .flat_map(move |(visible, body)| {
                let filter = if expired { &body.expired } else { &body.active };
                iter_words(
                    visible
                        .words()
                        .iter()
                        .zip(filter.words())
                        .map(|(v, f)| v & f),
                )
            })
            .filter(move |&r| r != me)
    }

    /// Remote peers this peer may reach or be reached by, in IP order.
    pub fn peers(&self) -> impl Iterator<Item = &'a Peer> + '_ {
        self.ranks(false).map(|r| self.index.peer(r))
    }

    /// Peers it would see whose login has expired, in IP order.
    pub fn offline_peers(&self) -> impl Iterator<Item = &'a Peer> + '_ {
        self.ranks(true).map(|r| self.index.peer(r))
    }

    /// The firewall rules, in their documented order.
    pub fn firewall_rules(&self) -> impl Iterator<Item = FirewallRule<'a>> + '_ {
        let index = self.index;
        self.body
            .iter()
            .flat_map(move |b| expand(index, &b.class.firewall, &b.active, self.rank))
    }

    /// The routes, sorted by network id, id and routing peer IP. A routing
    /// peer gets its own entries for the networks it routes and none of the
    /// other routing peers' (see `routes::Shadowed`).
    pub fn routes(&self) -> Vec<Route<'a>> {
        let Some(body) = &self.body else {
            return Vec::new();
        };
        let me = self.rank;
        let index = self.index;
        let extras = body.extras.as_deref();
        let shared = extras
            .and_then(|e| e.routes.as_deref())
            .unwrap_or(&body.class.routes);
        let mut entries: Vec<RouteEntry> = shared
            .iter()
            .filter(|e| e.peer != me && !extras.is_some_and(|x| x.shadowed.hides(index, e)))
            .copied()
            .collect();
        if let Some(e) = extras {
            entries.extend_from_slice(&e.served);
            sort_entries(self.index, &mut entries);
        }
        entries.iter().map(|e| route(self.index, e)).collect()
    }

    /// Route firewall rules of what this peer serves, by route id.
    pub fn route_firewall_rules(&self) -> impl Iterator<Item = RouteFirewallRule<'_>> + '_ {
        let index = self.index;
        self.body
            .iter()
            .flat_map(|b| b.extras.iter())
            .flat_map(|e| e.route_rules.iter())
            .flat_map(|rules| rules.iter())
            .flat_map(move |r| route_firewall_rules(index, r))
    }

    /// Whether DNS management is on for this peer.
    pub fn dns_enabled(&self) -> bool {
        self.body.as_ref().is_some_and(|b| b.class.dns_enabled)
    }

    /// This peer's address with the account network's prefix length.
    pub fn address(&self) -> Ipv4Net {
        Ipv4Net::new(self.peer().ip, self.index.prefix_len())
            .expect("the index keeps a prefix length of at most 32")
    }

    /// The peer at `rank` as maps list it.
    fn view(&self, rank: u32) -> PeerView<'a> {
        Self::view_of(self.index, rank)
    }

    /// The peer at `rank` of `index` as maps list it.
    fn view_of(index: &'a AccountIndex<'a>, rank: u32) -> PeerView<'a> {
        let p = index.peer(rank);
        PeerView {
            id: &p.id,
            name: &p.name,
            key: &p.key,
            ip: p.ip,
            fqdn: index.fqdn(rank),
            ssh_enabled: p.ssh_enabled,
        }
    }

    /// [`Self::peers`] as listed in the map.
    pub fn peer_views(&self) -> impl Iterator<Item = PeerView<'a>> + '_ {
        self.ranks(false).map(|r| self.view(r))
    }

    /// [`Self::offline_peers`] as listed in the map.
    pub fn offline_peer_views(&self) -> impl Iterator<Item = PeerView<'a>> + '_ {
        self.ranks(true).map(|r| self.view(r))
    }

    /// The A records of the account zone (none while DNS is off).
    pub fn records(&self) -> impl Iterator<Item = Record<'a>> + '_ {
        let index = self.index;
        self.record_ranks().map(move |r| Record::of(index, r))
    }

    /// The nameserver groups that apply (none while DNS is off).
    pub fn nameserver_groups(&self) -> impl Iterator<Item = NameserverGroupView<'a>> + '_ {
        let index = self.index;
        let on = self.dns_enabled();
        self.body
            .iter()
            .flat_map(|b| b.class.nameservers.iter())
            .filter(move |_| on)
            .map(move |&pos| NameserverGroupView::of(index, pos))
    }

    /// Ranks of the records of the account zone: the peer and its `peers`.
    fn record_ranks(&self) -> impl Iterator<Item = u32> + '_ {
        let me = self.rank;
        let on = self.dns_enabled();
        let before = self.ranks(false).filter(move |&r| r < me);
        let after = self.ranks(false).filter(move |&r| r > me);
        before
            .chain(std::iter::once(me))
            .chain(after)
            .filter(move |_| on)
    }
}

/// Serialises an iterator as a sequence without collecting it.
struct Seq<F>(F);

impl<F, I> Serialize for Seq<F>
where
    F: Fn() -> I,
    I: Iterator,
    I::Item: Serialize,
{
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq((self.0)())
    }
}

#[derive(Serialize)]
struct NetworkView<'a> {
    id: &'a str,
    net: &'a str,
    dns_domain: &'a str,
}

#[derive(Serialize)]
struct PeerConfig<'a> {
    address: Ipv4Net,
    fqdn: &'a str,
    ssh_enabled: bool,
}

#[derive(Serialize)]
struct Zone<'a, R: Serialize> {
    domain: &'a str,
    records: R,
}

impl Serialize for NetworkMap<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let index = self.index;
        let account = index.account;
        let settings = &account.settings;
        let mut st = s.serialize_struct("NetworkMap", 9)?;
        st.serialize_field("serial", &account.serial)?;
        st.serialize_field(
            "network",
            &NetworkView {
                id: account.id.as_str(),
                net: &settings.network_range,
                dns_domain: &settings.dns_domain,
            },
        )?;
        st.serialize_field(
            "peer_config",
            &PeerConfig {
                address: self.address(),
                fqdn: index.fqdn(self.rank),
                ssh_enabled: self.peer().ssh_enabled,
            },
        )?;
        st.serialize_field("peers", &Seq(|| self.peer_views()))?;
        st.serialize_field("offline_peers", &Seq(|| self.offline_peer_views()))?;
        st.serialize_field("firewall_rules", &Seq(|| self.firewall_rules()))?;
        st.serialize_field("routes", &self.routes())?;
        st.serialize_field("route_firewall_rules", &Seq(|| self.route_firewall_rules()))?;
        let on = self.dns_enabled();
        let zones = Seq(|| {
            on.then(|| Zone {
                domain: &settings.dns_domain,
                records: Seq(|| self.records()),
            })
            .into_iter()
        });
        st.serialize_field(
            "dns",
            &Dns {
                service_enable: on,
                custom_zones: zones,
                nameserver_groups: Seq(|| self.nameserver_groups()),
            },
        )?;
        st.end()
    }
}

#[derive(Serialize)]
struct Dns<Z: Serialize, N: Serialize> {
    service_enable: bool,
    custom_zones: Z,
    nameserver_groups: N,
}

//! Which routing peer carries each routed network.
//!
//! A map lists one entry per (route, routing peer); entries with the same
//! network id and the same prefix (or domains) are one highly available
//! network ([`Target`]). For each network the [`Selector`] picks one entry,
//! scoring each routing peer as NetBird's client does:
//!
//! - only a peer with a working path is a candidate (one still connecting
//!   has no session to carry the prefix);
//! - a lower metric wins over everything but connectivity: each metric step
//!   below [`MAX_METRIC`] is worth ten seconds of latency;
//! - then lower latency (unknown latency counts as 999 ms, more than a
//!   second as 999 ms too), then a direct path over a relayed one (worth
//!   1 ms);
//! - the current choice is kept unless another candidate beats it by more
//!   than [`KEEP_MARGIN_MS`] (10 ms of latency), so latency jitter does not
//!   move a network back and forth; a better peer (lower metric, or a
//!   clearly faster one) takes over at the next selection, which is how a
//!   network comes back to its preferred peer after a failover.
//!
//! Unlike NetBird's map iteration, ties are broken deterministically: the
//! current choice, then the lowest route id, then the lowest peer IP.
//!
//! A network this peer routes itself is served, never used through another
//! peer. Scores are integers in thousandths of NetBird's units, so equal
//! inputs give equal answers on every platform.
//!
//! ```
//! use std::collections::BTreeMap;
//! use meshplane_core::model::PeerId;
//! use meshplane_core::routing::select::{Candidate, PeerState, Selector};
//!
//! let entry = |id: &str, peer: &str, ip: &str, metric| Candidate {
//!     id: id.into(),
//!     network_id: "office".into(),
//!     network: Some("10.50.0.0/24".into()),
//!     domains: vec![],
//!     peer: PeerId(peer.into()),
//!     peer_ip: ip.parse().unwrap(),
//!     metric,
//! };
//! let routes = [entry("r1", "b", "100.64.0.2", 10), entry("r2", "c", "100.64.0.3", 20)];
//! let up = PeerState { connected: true, relayed: false, latency_ms: Some(5) };
//! let mut states = BTreeMap::from([(PeerId("b".into()), up), (PeerId("c".into()), up)]);
//! let mut selector = Selector::default();
//! let own = PeerId("a".into());
//! let chosen = |s: &mut Selector, states: &BTreeMap<PeerId, PeerState>| {
//!     s.select(&own, &routes, |p| states.get(p).copied()).used[0].chosen.clone().map(|c| c.peer.0)
//! };
//! assert_eq!(chosen(&mut selector, &states).as_deref(), Some("b"));
//! // b goes away: c takes over; b comes back: the lower metric wins again.
//! states.insert(PeerId("b".into()), PeerState::default());
//! assert_eq!(chosen(&mut selector, &states).as_deref(), Some("c"));
//! states.insert(PeerId("b".into()), up);
//! assert_eq!(chosen(&mut selector, &states).as_deref(), Some("b"));
//! ```

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::model::PeerId;
use crate::netmap::owned::Route;

/// The highest route metric; a route at it gets nothing for its metric.
pub const MAX_METRIC: u32 = 9999;

/// How much better (in ms of latency) another routing peer must be before
/// the current one is replaced.
pub const KEEP_MARGIN_MS: i64 = 10;

/// Latency assumed when none is known, and for anything above a second.
const UNKNOWN_LATENCY_MS: u32 = 999;
/// One metric step, in ms of latency.
const METRIC_STEP: i64 = 10_000;
/// A direct path over a relayed one, in ms of latency.
const DIRECT_BONUS: i64 = 1_000;

/// What the daemon knows of a routing peer now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerState {
    /// A path to the peer works and the peer was heard from recently.
    pub connected: bool,
    /// The working path goes through the relay.
    #[serde(default)]
    pub relayed: bool,
    /// The round trip of the last handshake, when measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u32>,
}

/// One entry of the map's routes: a way to reach a routed network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    /// The route's (or network resource's) id.
    pub id: String,
    pub network_id: String,
    /// The routed prefix; absent for a domain route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub domains: Vec<String>,
    /// The routing peer.
    pub peer: PeerId,
    pub peer_ip: Ipv4Addr,
    pub metric: u32,
}

impl From<&Route> for Candidate {
    fn from(r: &Route) -> Self {
        Candidate {
            id: r.id.clone(),
            network_id: r.network_id.clone(),
            network: r.network.clone(),
            domains: r.domains.clone(),
            peer: r.peer.clone(),
            peer_ip: r.peer_ip,
            metric: r.metric,
        }
    }
}

/// What one highly available network routes: its entries share this.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Target {
    pub network_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// Sorted, so the same set in another order is the same network.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub domains: Vec<String>,
}

impl Target {
    fn of(c: &Candidate) -> Target {
        let mut domains = c.domains.clone();
        domains.sort_unstable();
        domains.dedup();
        Target {
            network_id: c.network_id.clone(),
            network: c.network.clone(),
            domains,
        }
    }
}

/// The entry chosen for a network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Chosen {
    pub route_id: String,
    pub peer: PeerId,
    pub peer_ip: Ipv4Addr,
    /// The entry's score (thousandths of NetBird's units), for status.
    pub score: i64,
}

/// A network this peer uses, with its routing peer when one is available.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Choice {
    #[serde(flatten)]
    pub target: Target,
    /// None while no routing peer of the network is connected.
    pub chosen: Option<Chosen>,
    /// How many routing peers the network has (more than one: HA).
    pub routing_peers: usize,
}

/// The outcome of one selection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Selection {
    /// Networks routed through other peers, in [`Target`] order.
    pub used: Vec<Choice>,
    /// Networks this peer routes itself, in [`Target`] order.
    pub served: Vec<Target>,
}

/// The score of an entry through a connected peer; see the module docs.
pub fn score(metric: u32, state: PeerState) -> i64 {
    let metric_part = i64::from(MAX_METRIC.saturating_sub(metric)) * METRIC_STEP;
    let latency = match state.latency_ms {
        Some(l) if l > 0 && l <= 1_000 => l,
        _ => UNKNOWN_LATENCY_MS,
    };
    let direct = if state.relayed { 0 } else { DIRECT_BONUS };
    metric_part + (1_000 - i64::from(latency)) + direct
}

/// Keeps the current choice of every network between selections.
#[derive(Debug, Clone, Default)]
pub struct Selector {
    current: BTreeMap<Target, (String, PeerId)>,
}

impl Selector {
    /// Chooses a routing peer for every network of `routes` that `own`
    /// does not serve, given each routing peer's state (`None`: unknown,
    /// as not connected). Call it again whenever the map or a peer's
    /// state changes; the result replaces the previous one.
    pub fn select(
        &mut self,
        own: &PeerId,
        routes: &[Candidate],
        state: impl Fn(&PeerId) -> Option<PeerState>,
    ) -> Selection {
        let mut groups: BTreeMap<Target, Vec<&Candidate>> = BTreeMap::new();
        for r in routes {
            groups.entry(Target::of(r)).or_default().push(r);
        }
        let mut selection = Selection::default();
        let mut current = BTreeMap::new();
        for (target, mut entries) in groups {
            if entries.iter().any(|e| &e.peer == own) {
                selection.served.push(target);
                continue;
            }
            entries.sort_by(|a, b| (&a.id, a.peer_ip).cmp(&(&b.id, b.peer_ip)));
            let previous = self.current.get(&target);
            let chosen = choose(&entries, previous, &state);
            if let Some(c) = &chosen {
                current.insert(target.clone(), (c.route_id.clone(), c.peer.clone()));
            }
            selection.used.push(Choice {
                target,
                chosen,
                routing_peers: entries.len(),
            });
        }
        self.current = current;
        selection
    }
}

/// The best connected entry, keeping `previous` unless it is beaten by
/// more than the margin.
fn choose(
    entries: &[&Candidate],
    previous: Option<&(String, PeerId)>,
    state: &impl Fn(&PeerId) -> Option<PeerState>,
) -> Option<Chosen> {
    let is_previous = |e: &Candidate| previous.is_some_and(|(id, p)| *id == e.id && *p == e.peer);
    let mut best: Option<(&Candidate, i64)> = None;
    let mut kept: Option<(&Candidate, i64)> = None;
    for &e in entries {
        let Some(s) = state(&e.peer).filter(|s| s.connected) else {
            continue;
        };
        let points = score(e.metric, s);
        if is_previous(e) {
            kept = Some((e, points));
        }
        let better = match best {
            None => true,
            Some((_, b)) => points > b || (points == b && is_previous(e)),
        };
        if better {
            best = Some((e, points));
        }
    }
    let (entry, points) = match (best, kept) {
        (Some((_, b)), Some(k)) if k.1 + KEEP_MARGIN_MS > b => k,
        (Some(b), _) => b,
        (None, _) => return None,
    };
    Some(Chosen {
        route_id: entry.id.clone(),
        peer: entry.peer.clone(),
        peer_ip: entry.peer_ip,
        score: points,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, network: &str, peer: &str, last: u8, metric: u32) -> Candidate {
        Candidate {
            id: id.into(),
            network_id: "n".into(),
            network: Some(network.into()),
            domains: vec![],
            peer: PeerId(peer.into()),
            peer_ip: Ipv4Addr::new(100, 64, 0, last),
            metric,
        }
    }

    fn up(latency: u32, relayed: bool) -> PeerState {
        PeerState {
            connected: true,
            relayed,
            latency_ms: Some(latency),
        }
    }

    fn pick(
        s: &mut Selector,
        routes: &[Candidate],
        states: &[(&str, PeerState)],
    ) -> Vec<Option<String>> {
        let states: BTreeMap<PeerId, PeerState> = states
            .iter()
            .map(|(p, s)| (PeerId((*p).into()), *s))
            .collect();
        s.select(&PeerId("me".into()), routes, |p| states.get(p).copied())
            .used
            .into_iter()
            .map(|c| c.chosen.map(|c| c.peer.0))
            .collect()
    }

    #[test]
    fn metric_beats_latency_and_direct_beats_relayed() {
        let routes = [
            entry("r1", "10.0.0.0/8", "b", 2, 100),
            entry("r2", "10.0.0.0/8", "c", 3, 101),
        ];
        let mut s = Selector::default();
        assert_eq!(
            pick(
                &mut s,
                &routes,
                &[("b", up(900, true)), ("c", up(1, false))]
            ),
            [Some("b".to_string())]
        );
        let same = [
            entry("r1", "10.0.0.0/8", "b", 2, 100),
            entry("r2", "10.0.0.0/8", "c", 3, 100),
        ];
        let mut s = Selector::default();
        assert_eq!(
            pick(&mut s, &same, &[("b", up(20, true)), ("c", up(20, false))]),
            [Some("c".to_string())]
        );
    }

    #[test]
    fn jitter_keeps_the_current_peer_a_clear_gain_moves() {
        let routes = [
            entry("r1", "10.0.0.0/8", "b", 2, 100),
            entry("r2", "10.0.0.0/8", "c", 3, 100),
        ];
        let mut s = Selector::default();
        assert_eq!(
            pick(
                &mut s,
                &routes,
                &[("b", up(30, false)), ("c", up(31, false))]
            )[0]
            .as_deref(),
            Some("b")
        );
        // c is now 5 ms faster: within the margin, b stays.
        assert_eq!(
            pick(
                &mut s,
                &routes,
                &[("b", up(30, false)), ("c", up(25, false))]
            )[0]
            .as_deref(),
            Some("b")
        );
        // 20 ms faster: c takes over.
        assert_eq!(
            pick(
                &mut s,
                &routes,
                &[("b", up(30, false)), ("c", up(10, false))]
            )[0]
            .as_deref(),
            Some("c")
        );
    }

    #[test]
    fn never_an_unconnected_peer_and_nothing_when_none_is_up() {
        let routes = [
            entry("r1", "10.0.0.0/8", "b", 2, 1),
            entry("r2", "10.0.0.0/8", "c", 3, 9000),
        ];
        let mut s = Selector::default();
        assert_eq!(
            pick(&mut s, &routes, &[("c", up(500, true))])[0].as_deref(),
            Some("c")
        );
        assert_eq!(pick(&mut s, &routes, &[])[0], None);
    }

    #[test]
    fn own_networks_are_served_and_groups_split_by_prefix() {
        let routes = [
            entry("r1", "10.0.0.0/8", "me", 1, 1),
            entry("r1", "10.0.0.0/8", "b", 2, 1),
            entry("r3", "192.168.0.0/16", "b", 2, 1),
        ];
        let mut s = Selector::default();
        let states = BTreeMap::from([(PeerId("b".into()), up(1, false))]);
        let sel = s.select(&PeerId("me".into()), &routes, |p| states.get(p).copied());
        assert_eq!(sel.served.len(), 1);
        assert_eq!(sel.served[0].network.as_deref(), Some("10.0.0.0/8"));
        assert_eq!(sel.used.len(), 1);
        assert_eq!(
            sel.used[0].target.network.as_deref(),
            Some("192.168.0.0/16")
        );
    }
}

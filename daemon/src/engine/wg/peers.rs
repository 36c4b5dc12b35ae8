//! The peer table: one boringtun tunnel per peer, found by session index,
//! by public key, by mesh IP or by a routed prefix (longest match), each
//! with the path machine that decides where its packets go ([`PeerPaths`]).

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};

use boringtun::noise::Tunn;
use boringtun::x25519::StaticSecret;
use meshplane_core::connect::{PeerPaths, Timers};
use meshplane_core::Timestamp;

use ipnet::Ipv4Net;

use super::{PeerConfig, RoutedPrefix};
use crate::key::PublicKey;

/// boringtun keeps the low 8 bits of a session index for itself.
const INDEX_LIMIT: u32 = 1 << 24;

/// One remote peer and its tunnel.
pub(super) struct Peer {
    pub(super) public_key: PublicKey,
    pub(super) tunn: Tunn,
    pub(super) mesh_ip: Ipv4Addr,
    /// Which path (a UDP address or the relay) packets for the peer take.
    pub(super) paths: PeerPaths,
    /// The endpoint the last map gave: a candidate that needs no signal.
    configured_endpoint: Option<SocketAddr>,
    /// The candidates the peer announced over signal.
    signalled: Vec<SocketAddr>,
    /// The last handshake initiation and when it was made: probes on
    /// several paths must carry the *same* initiation, since each new one
    /// replaces the previous one and its answer would no longer match.
    pub(super) initiation: Option<(Timestamp, Vec<u8>)>,
    pub(super) keepalive: Option<u16>,
    pub(super) rx_bytes: u64,
    pub(super) tx_bytes: u64,
    /// WireGuard handshakes completed with the peer, either side starting.
    pub(super) handshakes: u64,
    /// Prefixes routed through the peer: it may send from them too.
    pub(super) routed: Vec<Ipv4Net>,
    /// When an authenticated packet last came from the peer.
    pub(super) last_received: Option<Timestamp>,
}

impl Peer {
    /// Whether the peer may send from `src` (its allowed IPs).
    pub(super) fn may_send_from(&self, src: Ipv4Addr) -> bool {
        src == self.mesh_ip || self.routed.iter().any(|n| n.contains(&src))
    }
}

impl Peer {
    /// Every candidate address: the map's endpoint first, then the
    /// signalled ones.
    fn candidates(&self) -> Vec<SocketAddr> {
        let mut all: Vec<SocketAddr> = self.configured_endpoint.into_iter().collect();
        for c in &self.signalled {
            if !all.contains(c) {
                all.push(*c);
            }
        }
        all
    }

    /// Replaces the signalled candidates; the path machine hears of it
    /// only when the set changed (new candidates start a round of probes).
    pub(super) fn set_signalled(&mut self, candidates: Vec<SocketAddr>, now: Timestamp) {
        if self.signalled != candidates {
            tracing::debug!("peer {}: candidates {candidates:?}", self.public_key);
            self.signalled = candidates;
            self.paths.handle_candidates(&self.candidates(), now);
        }
    }
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("public_key", &self.public_key)
            .field("mesh_ip", &self.mesh_ip)
            .field("path", &self.paths.selected())
            .finish_non_exhaustive()
    }
}

/// All peers, indexed three ways.
#[derive(Debug, Default)]
pub(super) struct PeerTable {
    by_index: HashMap<u32, Peer>,
    by_key: HashMap<PublicKey, u32>,
    by_ip: HashMap<Ipv4Addr, u32>,
    /// Routed prefixes, longest first: outgoing packets for an address
    /// that is no peer's mesh IP go to the first that contains it.
    by_prefix: Vec<(Ipv4Net, u32)>,
    next_index: u32,
    /// What was known of where recently removed peers are, so that a peer
    /// that comes back (a policy deleted and added again) is reached at
    /// once over the path that worked, not after a new discovery.
    parked: HashMap<PublicKey, Parked>,
}

/// The path state of a peer that left the map.
#[derive(Debug)]
struct Parked {
    at: Timestamp,
    paths: PeerPaths,
    signalled: Vec<SocketAddr>,
}

/// How long a removed peer's path state is kept.
const PARK_FOR_MS: i64 = 120_000;
/// At most this many removed peers' path states are kept.
const MAX_PARKED: usize = 1024;

impl PeerTable {
    /// Makes the table hold exactly `wanted` (our own key excluded). Peers
    /// that stay keep their tunnel and sessions; a changed keep-alive needs
    /// a new tunnel (boringtun fixes it at creation). When two peers claim
    /// one mesh IP, the one whose key sorts first gets the route.
    pub(super) fn apply(
        &mut self,
        wanted: &[PeerConfig],
        private: &StaticSecret,
        own: PublicKey,
        relay: bool,
        now: Timestamp,
    ) {
        let wanted: BTreeMap<PublicKey, &PeerConfig> = wanted
            .iter()
            .filter(|p| p.public_key != own)
            .map(|p| (p.public_key, p))
            .collect();
        let gone: Vec<PublicKey> = self
            .by_key
            .keys()
            .filter(|k| !wanted.contains_key(k))
            .copied()
            .collect();
        self.parked
            .retain(|_, p| now.as_millis() - p.at.as_millis() < PARK_FOR_MS);
        for key in gone {
            let Some(index) = self.by_key.remove(&key) else {
                continue;
            };
            if let Some(peer) = self.by_index.remove(&index) {
                if self.parked.len() < MAX_PARKED {
                    let parked = Parked {
                        at: now,
                        paths: peer.paths,
                        signalled: peer.signalled,
                    };
                    self.parked.insert(key, parked);
                }
            }
        }
        for (key, cfg) in &wanted {
            match self.by_key.get(key).and_then(|i| self.by_index.get_mut(i)) {
                Some(peer) => {
                    if peer.keepalive != cfg.keepalive {
                        let index = self.by_key[key];
                        peer.tunn = new_tunn(private, cfg, index);
                        peer.keepalive = cfg.keepalive;
                    }
                    peer.mesh_ip = cfg.mesh_ip;
                    if peer.configured_endpoint != cfg.endpoint {
                        peer.configured_endpoint = cfg.endpoint;
                        peer.paths.handle_candidates(&peer.candidates(), now);
                    }
                }
                None => {
                    let index = self.free_index();
                    self.by_key.insert(*key, index);
                    let (paths, signalled) = match self.parked.remove(key) {
                        Some(p) => (p.paths, p.signalled),
                        None => (PeerPaths::new(Timers::default(), now), Vec::new()),
                    };
                    let mut peer = Peer {
                        public_key: *key,
                        tunn: new_tunn(private, cfg, index),
                        mesh_ip: cfg.mesh_ip,
                        paths,
                        configured_endpoint: cfg.endpoint,
                        signalled,
                        initiation: None,
                        keepalive: cfg.keepalive,
                        rx_bytes: 0,
                        tx_bytes: 0,
                        handshakes: 0,
                        routed: Vec::new(),
                        last_received: None,
                    };
                    peer.paths.handle_relay(relay, now);
                    peer.paths.handle_candidates(&peer.candidates(), now);
                    self.by_index.insert(index, peer);
                }
            }
        }
        self.by_ip.clear();
        for (key, cfg) in wanted.iter().rev() {
            self.by_ip.insert(cfg.mesh_ip, self.by_key[key]);
        }
    }

    /// Routes `routes` through their peers (after [`PeerTable::apply`]);
    /// replaces the previous routes. A prefix through a peer not in the
    /// table is left out; a prefix given twice goes through the first.
    pub(super) fn set_routes(&mut self, routes: &[RoutedPrefix]) {
        for peer in self.by_index.values_mut() {
            peer.routed.clear();
        }
        self.by_prefix.clear();
        for r in routes {
            let prefix = r.prefix.trunc();
            let Some(&index) = self.by_key.get(&r.via) else {
                continue;
            };
            if self.by_prefix.iter().any(|(p, _)| *p == prefix) {
                continue;
            }
            self.by_prefix.push((prefix, index));
            if let Some(peer) = self.by_index.get_mut(&index) {
                peer.routed.push(prefix);
            }
        }
        self.by_prefix
            .sort_by(|a, b| b.0.prefix_len().cmp(&a.0.prefix_len()).then(a.0.cmp(&b.0)));
    }

    fn free_index(&mut self) -> u32 {
        loop {
            self.next_index = (self.next_index + 1) % INDEX_LIMIT;
            if !self.by_index.contains_key(&self.next_index) {
                return self.next_index;
            }
        }
    }

    /// The peer owning a session index as carried in packets.
    pub(super) fn by_session(&mut self, receiver_idx: u32) -> Option<&mut Peer> {
        self.by_index.get_mut(&(receiver_idx >> 8))
    }

    pub(super) fn by_key(&mut self, key: &PublicKey) -> Option<&mut Peer> {
        let index = self.by_key.get(key)?;
        self.by_index.get_mut(index)
    }

    /// The peer whose mesh IP is `ip`.
    pub(super) fn route(&mut self, ip: Ipv4Addr) -> Option<&mut Peer> {
        let index = self.by_ip.get(&ip)?;
        self.by_index.get_mut(index)
    }

    /// The peer routing the longest prefix that contains `ip`.
    pub(super) fn route_prefix(&mut self, ip: Ipv4Addr) -> Option<&mut Peer> {
        let index = self.by_prefix.iter().find(|(p, _)| p.contains(&ip))?.1;
        self.by_index.get_mut(&index)
    }

    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = &mut Peer> {
        self.by_index.values_mut()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &Peer> {
        self.by_index.values()
    }
}

fn new_tunn(private: &StaticSecret, cfg: &PeerConfig, index: u32) -> Tunn {
    Tunn::new(
        private.clone(),
        cfg.public_key.to_dalek(),
        None,
        cfg.keepalive,
        index,
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::PrivateKey;

    fn cfg(key: &PrivateKey, last: u8, endpoint: Option<&str>) -> PeerConfig {
        PeerConfig {
            public_key: key.public_key(),
            mesh_ip: Ipv4Addr::new(100, 64, 0, last),
            endpoint: endpoint.map(|e| e.parse().unwrap()),
            keepalive: None,
        }
    }

    #[test]
    fn updates_in_place_and_merges_candidates() {
        let me = PrivateKey::generate();
        let (a, b) = (PrivateKey::generate(), PrivateKey::generate());
        let mut t = PeerTable::default();
        let own = me.public_key();
        let now = Timestamp::from_millis(0);
        t.apply(
            &[cfg(&a, 2, Some("127.0.0.1:1000")), cfg(&b, 3, None)],
            me.secret(),
            own,
            false,
            now,
        );
        let index_a = t.by_key[&a.public_key()];
        assert_eq!(
            t.route(Ipv4Addr::new(100, 64, 0, 3)).unwrap().public_key,
            b.public_key()
        );

        // Signalled candidates join the map's endpoint, which stays first;
        // the same map again keeps the peer (same session index).
        let signalled: SocketAddr = "127.0.0.1:2000".parse().unwrap();
        t.by_key(&a.public_key())
            .unwrap()
            .set_signalled(vec![signalled, "127.0.0.1:1000".parse().unwrap()], now);
        t.apply(
            &[cfg(&a, 2, Some("127.0.0.1:1000"))],
            me.secret(),
            own,
            false,
            now,
        );
        assert_eq!(t.by_key[&a.public_key()], index_a);
        assert_eq!(
            t.by_key(&a.public_key()).unwrap().candidates(),
            vec!["127.0.0.1:1000".parse().unwrap(), signalled]
        );
        assert!(t.by_key(&b.public_key()).is_none());
        assert!(t.route(Ipv4Addr::new(100, 64, 0, 3)).is_none());

        // A new endpoint in the map replaces the old one, which stays a
        // candidate since the peer signalled it too.
        t.apply(
            &[cfg(&a, 2, Some("127.0.0.1:3000"))],
            me.secret(),
            own,
            false,
            now,
        );
        assert_eq!(
            t.by_session(index_a << 8).unwrap().candidates(),
            vec![
                "127.0.0.1:3000".parse().unwrap(),
                signalled,
                "127.0.0.1:1000".parse().unwrap()
            ]
        );
        // Our own key is never a peer.
        t.apply(&[cfg(&me, 1, None)], me.secret(), own, false, now);
        assert_eq!(t.iter().count(), 0);

        // A peer back within the parking time has its signalled candidates
        // again; after it, it starts afresh.
        t.apply(&[cfg(&a, 2, None)], me.secret(), own, false, now);
        assert_eq!(
            t.by_key(&a.public_key()).unwrap().candidates(),
            vec![signalled, "127.0.0.1:1000".parse().unwrap()]
        );
        t.apply(&[], me.secret(), own, false, now);
        let later = Timestamp::from_millis(PARK_FOR_MS + 1);
        t.apply(&[], me.secret(), own, false, later);
        t.apply(&[cfg(&a, 2, None)], me.secret(), own, false, later);
        assert!(t.by_key(&a.public_key()).unwrap().candidates().is_empty());
    }
}

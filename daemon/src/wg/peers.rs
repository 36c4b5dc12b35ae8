//! The peer table: one boringtun tunnel per peer, found by session index,
//! by public key or by mesh IP.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};

use boringtun::noise::Tunn;
use boringtun::x25519::StaticSecret;

use super::PeerConfig;
use crate::key::PublicKey;

/// boringtun keeps the low 8 bits of a session index for itself.
const INDEX_LIMIT: u32 = 1 << 24;

/// One remote peer and its tunnel.
pub(super) struct Peer {
    pub(super) public_key: PublicKey,
    pub(super) tunn: Tunn,
    pub(super) mesh_ip: Ipv4Addr,
    /// Where packets for the peer go: from the map, or learned from the
    /// peer's authenticated packets when it roams.
    pub(super) endpoint: Option<SocketAddr>,
    /// The endpoint the last map gave, so that a map repeating it does not
    /// undo what roaming learned.
    configured_endpoint: Option<SocketAddr>,
    pub(super) keepalive: Option<u16>,
    pub(super) rx_bytes: u64,
    pub(super) tx_bytes: u64,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("public_key", &self.public_key)
            .field("mesh_ip", &self.mesh_ip)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

/// All peers, indexed three ways.
#[derive(Debug, Default)]
pub(super) struct PeerTable {
    by_index: HashMap<u32, Peer>,
    by_key: HashMap<PublicKey, u32>,
    by_ip: HashMap<Ipv4Addr, u32>,
    next_index: u32,
}

impl PeerTable {
    /// Makes the table hold exactly `wanted` (our own key excluded). Peers
    /// that stay keep their tunnel and sessions; a changed keep-alive needs
    /// a new tunnel (boringtun fixes it at creation). When two peers claim
    /// one mesh IP, the one whose key sorts first gets the route.
    pub(super) fn apply(&mut self, wanted: &[PeerConfig], private: &StaticSecret, own: PublicKey) {
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
        for key in gone {
            if let Some(index) = self.by_key.remove(&key) {
                self.by_index.remove(&index);
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
                        if cfg.endpoint.is_some() {
                            peer.endpoint = cfg.endpoint;
                        }
                    }
                }
                None => {
                    let index = self.free_index();
                    self.by_key.insert(*key, index);
                    self.by_index.insert(
                        index,
                        Peer {
                            public_key: *key,
                            tunn: new_tunn(private, cfg, index),
                            mesh_ip: cfg.mesh_ip,
                            endpoint: cfg.endpoint,
                            configured_endpoint: cfg.endpoint,
                            keepalive: cfg.keepalive,
                            rx_bytes: 0,
                            tx_bytes: 0,
                        },
                    );
                }
            }
        }
        self.by_ip.clear();
        for (key, cfg) in wanted.iter().rev() {
            self.by_ip.insert(cfg.mesh_ip, self.by_key[key]);
        }
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

    /// The peer that outgoing packets to `ip` are routed to.
    pub(super) fn route(&mut self, ip: Ipv4Addr) -> Option<&mut Peer> {
        let index = self.by_ip.get(&ip)?;
        self.by_index.get_mut(index)
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
    fn updates_in_place_and_keeps_learned_endpoints() {
        let me = PrivateKey::generate();
        let (a, b) = (PrivateKey::generate(), PrivateKey::generate());
        let mut t = PeerTable::default();
        let own = me.public_key();
        t.apply(
            &[cfg(&a, 2, Some("127.0.0.1:1000")), cfg(&b, 3, None)],
            me.secret(),
            own,
        );
        let index_a = t.by_key[&a.public_key()];
        assert_eq!(
            t.route(Ipv4Addr::new(100, 64, 0, 3)).unwrap().public_key,
            b.public_key()
        );

        // Roaming: the peer was seen elsewhere; the same map must not undo it.
        let roamed: SocketAddr = "127.0.0.1:2000".parse().unwrap();
        t.by_key(&a.public_key()).unwrap().endpoint = Some(roamed);
        t.apply(&[cfg(&a, 2, Some("127.0.0.1:1000"))], me.secret(), own);
        assert_eq!(t.by_key[&a.public_key()], index_a);
        assert_eq!(t.by_key(&a.public_key()).unwrap().endpoint, Some(roamed));
        assert!(t.by_key(&b.public_key()).is_none());
        assert!(t.route(Ipv4Addr::new(100, 64, 0, 3)).is_none());

        // A new endpoint in the map wins.
        t.apply(&[cfg(&a, 2, Some("127.0.0.1:3000"))], me.secret(), own);
        assert_eq!(
            t.by_session(index_a << 8).unwrap().endpoint,
            Some("127.0.0.1:3000".parse().unwrap())
        );
        // Our own key is never a peer.
        t.apply(&[cfg(&me, 1, None)], me.secret(), own);
        assert_eq!(t.iter().count(), 0);
    }
}

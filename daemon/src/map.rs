//! The network map as the daemon reads it from a Sync message.
//!
//! The server sends the core's canonical JSON serialisation of a map. The
//! core's `NetworkMap` only serialises (it borrows the server's account),
//! so the daemon reads the fields it acts on into owned types here and
//! ignores the rest.

use std::net::{Ipv4Addr, SocketAddr};

use meshplane_core::firewall::Rule;
use serde::Deserialize;

use crate::key::PublicKey;
use crate::wg::{NetworkUpdate, PeerConfig};

/// WireGuard persistent keep-alive towards every peer, in seconds: keeps
/// NAT mappings open and lets `status` see a peer go quiet.
pub const KEEPALIVE: u16 = 25;

/// This peer's own part of the map.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct OwnConfig {
    /// Mesh address in CIDR form (`100.64.1.2/16`).
    pub address: String,
    pub fqdn: String,
}

/// A remote peer the map lists.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RemotePeer {
    pub id: String,
    pub name: String,
    pub key: String,
    pub ip: Ipv4Addr,
    pub fqdn: String,
    /// Where the peer reported its WireGuard socket; absent until it has.
    #[serde(default)]
    pub endpoints: Vec<String>,
}

/// The parts of a map the daemon uses.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Map {
    pub peer_config: OwnConfig,
    pub peers: Vec<RemotePeer>,
    pub firewall_rules: Vec<Rule>,
}

impl Map {
    pub fn parse(json: &str) -> Result<Map, serde_json::Error> {
        serde_json::from_str(json)
    }

    /// The engine's update: every peer with a valid key, dialled at the
    /// first endpoint it reported that parses, and the firewall rules.
    pub fn to_update(&self) -> NetworkUpdate {
        let peers = self
            .peers
            .iter()
            .filter_map(|p| match p.key.parse::<PublicKey>() {
                Ok(public_key) => Some(PeerConfig {
                    public_key,
                    mesh_ip: p.ip,
                    endpoint: p
                        .endpoints
                        .iter()
                        .find_map(|e| e.parse::<SocketAddr>().ok()),
                    keepalive: Some(KEEPALIVE),
                }),
                Err(e) => {
                    tracing::warn!("peer {} left out: {e}", p.id);
                    None
                }
            })
            .collect();
        NetworkUpdate {
            peers,
            firewall: self.firewall_rules.clone(),
        }
    }

    /// The remote peer with WireGuard key `key`.
    pub fn peer_by_key(&self, key: &str) -> Option<&RemotePeer> {
        self.peers.iter().find(|p| p.key == key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::PrivateKey;
    use serde_json::json;

    #[test]
    fn reads_the_servers_map_and_builds_the_update() {
        let key = PrivateKey::generate().public_key().to_string();
        let text = json!({
            "serial": 3,
            "network": {"id": "acc", "net": "100.64.0.0/10", "dns_domain": "mesh.local"},
            "peer_config": {"address": "100.64.0.1/10", "fqdn": "a.mesh.local", "ssh_enabled": false},
            "peers": [
                {"id": "b", "name": "b", "key": key, "ip": "100.64.0.2", "fqdn": "b.mesh.local",
                 "ssh_enabled": false, "endpoints": ["nowhere", "127.0.0.1:4000"]},
                {"id": "c", "name": "c", "key": "bad", "ip": "100.64.0.3", "fqdn": "c.mesh.local",
                 "ssh_enabled": false}
            ],
            "offline_peers": [],
            "firewall_rules": [{"peer_ip": "100.64.0.2", "direction": "in", "action": "accept",
                "protocol": "tcp", "port": 8080, "policy_id": "p"}],
            "routes": [], "route_firewall_rules": [],
            "dns": {"service_enable": false, "custom_zones": [], "nameserver_groups": []}
        })
        .to_string();
        let map = Map::parse(&text).unwrap();
        assert_eq!(map.peer_config.fqdn, "a.mesh.local");
        let update = map.to_update();
        assert_eq!(update.peers.len(), 1);
        assert_eq!(
            update.peers[0].endpoint,
            Some("127.0.0.1:4000".parse().unwrap())
        );
        assert_eq!(update.peers[0].keepalive, Some(KEEPALIVE));
        assert_eq!(update.firewall.len(), 1);
        assert_eq!(update.firewall[0].port, Some(8080));
        assert_eq!(map.peer_by_key(&key).map(|p| p.id.as_str()), Some("b"));
    }
}

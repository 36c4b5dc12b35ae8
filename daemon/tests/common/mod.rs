//! Shared set-up of the data-plane tests: peers, maps and rule sets.

#![allow(dead_code)] // each test file uses part of this module

pub mod dns;
#[cfg(target_os = "linux")]
pub mod lan;
#[cfg(target_os = "linux")]
pub mod nat;
/// The NetBird-protocol test peer, shared with the server's tests.
#[path = "../../../server/tests/common/netbird.rs"]
pub mod netbird;
#[cfg(target_os = "linux")]
pub mod netns;
#[cfg(target_os = "linux")]
pub mod netns_mesh;
pub mod procs;

use std::net::{Ipv4Addr, SocketAddr};

use ipnet::Ipv4Net;
use meshplane::engine::netstack::Netstack;
use meshplane::engine::wg::{Engine, EngineConfig, NetworkUpdate, PeerConfig, Tunnel};
use meshplane::key::PrivateKey;
use meshplane_core::firewall::Rule;
use meshplane_core::model::{Action, Protocol};
use meshplane_core::netmap::firewall::Direction;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const IP_A: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 1);
pub const IP_B: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 2);

/// One side of a test mesh.
pub struct Side {
    pub key: PrivateKey,
    pub ip: Ipv4Addr,
    pub engine: Engine,
}

impl Side {
    pub async fn start(ip: Ipv4Addr, listen: SocketAddr) -> (Side, Tunnel) {
        Side::with_key(PrivateKey::generate(), ip, listen).await
    }

    /// A side with a given key (the same peer on a new socket, as after a
    /// restart or a move to another network).
    pub async fn with_key(key: PrivateKey, ip: Ipv4Addr, listen: SocketAddr) -> (Side, Tunnel) {
        let (engine, tunnel) = Engine::start(EngineConfig {
            private_key: key.clone(),
            listen,
            mesh_ip: ip,
        })
        .await
        .expect("engine starts");
        (Side { key, ip, engine }, tunnel)
    }

    /// Hands this side's engine a new map.
    pub async fn map(&self, peers: Vec<PeerConfig>, firewall: Vec<Rule>) {
        self.engine
            .update(NetworkUpdate {
                peers,
                firewall,
                ..NetworkUpdate::default()
            })
            .await
            .expect("engine runs");
    }

    /// This side as a peer in someone else's map.
    pub fn as_peer(&self, with_endpoint: bool) -> PeerConfig {
        PeerConfig {
            public_key: self.key.public_key(),
            mesh_ip: self.ip,
            endpoint: with_endpoint.then(|| self.engine.local_addr()),
            keepalive: None,
        }
    }
}

pub fn rule(
    peer_ip: Ipv4Addr,
    direction: Direction,
    protocol: Protocol,
    port: Option<u16>,
) -> Rule {
    Rule {
        peer_ip,
        direction,
        action: Action::Accept,
        protocol,
        port,
        port_range: None,
    }
}

/// Everything in and out, as an allow-all policy gives.
pub fn allow_all() -> Vec<Rule> {
    vec![
        rule(Ipv4Addr::UNSPECIFIED, Direction::In, Protocol::All, None),
        rule(Ipv4Addr::UNSPECIFIED, Direction::Out, Protocol::All, None),
    ]
}

/// Gives each side the other as its only peer. A knows B's endpoint; B
/// learns A's from A's handshake (as after a NAT).
pub async fn join(a: &Side, a_rules: Vec<Rule>, b: &Side, b_rules: Vec<Rule>) {
    a.map(vec![b.as_peer(true)], a_rules).await;
    b.map(vec![a.as_peer(false)], b_rules).await;
}

/// Two peers on loopback UDP, joined with allow-all rules, each with its
/// userspace stack.
pub async fn joined_stacks() -> (Side, Side, Netstack, Netstack) {
    let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let (a, tunnel_a) = Side::start(IP_A, loopback).await;
    let (b, tunnel_b) = Side::start(IP_B, loopback).await;
    let stack_a = Netstack::start(Ipv4Net::new(IP_A, 10).expect("prefix"), tunnel_a);
    let stack_b = Netstack::start(Ipv4Net::new(IP_B, 10).expect("prefix"), tunnel_b);
    join(&a, allow_all(), &b, allow_all()).await;
    (a, b, stack_a, stack_b)
}

/// Echoes back everything every connection on `port` of `stack` sends.
pub fn echo_server(stack: &Netstack, port: u16) -> tokio::task::JoinHandle<()> {
    let mut listener = stack.listen(port).expect("listen");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    })
}

//! The WireGuard engine: one UDP socket, one boringtun [`Tunn`] per peer.
//!
//! [`Engine::start`] binds the socket and spawns the task that owns every
//! tunnel; it answers with the [`Engine`] handle (to feed network maps and
//! read `status`) and the [`Tunnel`], the packet side that a front-end
//! ([`crate::engine::kernel_tun`] or [`crate::engine::netstack`]) attaches to: IP packets the
//! host sends go into `Tunnel::outbound`, packets from peers come out of
//! `Tunnel::inbound`.
//!
//! Outgoing packets are routed by destination mesh IP to the peer that owns
//! it. Incoming datagrams are matched to a peer by the receiver index of the
//! session (or, for a handshake initiation, by the initiator's static key),
//! decrypted, checked against the peer's mesh IP (a peer may only send from
//! its own address) and filtered by [`meshplane_core::firewall`] in both
//! directions. WireGuard's timers (handshake retries, rekeying, keep-alives,
//! session expiry) run from a 100 ms tick, as boringtun expects.
//!
//! A peer is reached over one of two kinds of path: a UDP address (one of
//! its candidates, or where its authenticated packets came from) or the
//! relay, a channel of datagrams to and from the relay task
//! ([`Underlay`]). Which one is decided per peer by the core's path machine
//! ([`meshplane_core::connect::PeerPaths`]): the engine feeds it every
//! authenticated packet with the path it came over, sends the probes it
//! asks for (handshake initiations, then keep-alives) and sends data on the
//! path it selects. Relayed datagrams go through the same tunnel, checks
//! and firewall as direct ones.
//!
//! Datagrams cross the socket in batches (module `udp`): consecutive ones to one
//! address leave in one system call (UDP segmentation offload) and a run
//! from one sender arrives in one (receive offload); each is still
//! decrypted, checked, filtered and counted on its own.
//!
//! The UDP socket also carries this peer's STUN binding requests (so the
//! server sees the NAT mapping WireGuard uses); STUN messages that arrive
//! on it are handed to discovery through [`Underlay::stun`].
//!
//! [`Tunn`]: boringtun::noise::Tunn

mod dataplane;
mod peers;
mod udp;

use std::collections::BTreeMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use ipnet::Ipv4Net;
use meshplane_core::connect::Connection;
use meshplane_core::firewall::Rule;
use meshplane_core::netmap::PeerMap;
use meshplane_core::routing::forward::RouteRule;
use meshplane_core::routing::select::PeerState;
use meshplane_core::Timestamp;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::task::JoinHandle;

use crate::engine::flows::FlowLog;
use crate::key::{PrivateKey, PublicKey};
use dataplane::{Dataplane, UnderlayEnds};

/// How many packets may wait between the engine and a front-end in each
/// direction. The engine never waits for a front-end: past this many
/// undelivered inbound packets it drops, as a full NIC ring would.
pub const QUEUE: usize = 4096;

/// How many STUN answers may wait for discovery.
const STUN_QUEUE: usize = 16;

/// The UDP socket's buffers, each way.
const SOCKET_BUFFER: usize = 4 << 20;

/// The largest IP packet the tunnel carries (the interface MTU).
pub const MTU: u16 = 1420;

/// WireGuard persistent keep-alive towards every peer of a map, in seconds:
/// keeps NAT mappings open and lets `status` see a peer go quiet.
pub const KEEPALIVE: u16 = 25;

/// What the engine needs to start.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub private_key: PrivateKey,
    /// The UDP address to listen on (port 0 picks one).
    pub listen: SocketAddr,
    /// This peer's own mesh address.
    pub mesh_ip: Ipv4Addr,
}

/// One remote peer as the network map describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    pub public_key: PublicKey,
    /// The one address (/32) the peer may send from and is routed to.
    pub mesh_ip: Ipv4Addr,
    /// A fixed address to try, besides the candidates the peer signals
    /// ([`Engine::candidates`]) and the addresses its packets come from.
    pub endpoint: Option<SocketAddr>,
    /// Persistent keep-alive interval in seconds.
    pub keepalive: Option<u16>,
}

/// A prefix routed through a peer: packets for it go to `via`, and `via`
/// may send from it (its allowed IPs besides its mesh IP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutedPrefix {
    pub prefix: Ipv4Net,
    pub via: PublicKey,
}

/// The data-plane part of a network map: the whole peer list, this peer's
/// firewall rules and what it routes. Each update replaces the previous
/// one: peers missing from it are removed, new ones added, and peers that
/// stay keep their sessions (an endpoint change takes effect without a new
/// handshake).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkUpdate {
    pub peers: Vec<PeerConfig>,
    pub firewall: Vec<Rule>,
    /// The prefixes of the networks this peer uses, each through its chosen
    /// routing peer ([`crate::routing`] chooses). A prefix through a peer
    /// not in `peers` is ignored.
    pub routes: Vec<RoutedPrefix>,
    /// Decides routed packets ([`meshplane_core::routing::forward`]): the
    /// route firewall rules of the networks this peer serves (packets from
    /// peers to addresses other than this peer's are forwarded only as they
    /// say), and one outbound rule per prefix it uses (so their replies
    /// come back in).
    pub route_rules: Vec<RouteRule>,
    /// The mesh network (this peer's address with the map's prefix): the
    /// host routes it into the tunnel, so no peer is reached over the
    /// underlay at an address in it.
    pub mesh_network: Option<Ipv4Net>,
}

impl NetworkUpdate {
    /// The data-plane part of a peer's network map: the map's peers
    /// (offline peers carry no traffic and are left out), kept alive every
    /// [`KEEPALIVE`] seconds, and its firewall rules. Where each peer is
    /// reached is not in the map: its candidates arrive over signal. A
    /// peer whose key is not a valid WireGuard key is left out (and logged)
    /// rather than refusing the whole map.
    pub fn from_map(map: &PeerMap) -> NetworkUpdate {
        let peers = map
            .peers
            .iter()
            .filter_map(|p| match p.key.parse::<PublicKey>() {
                Ok(public_key) => Some(PeerConfig {
                    public_key,
                    mesh_ip: p.ip,
                    endpoint: None,
                    keepalive: Some(KEEPALIVE),
                }),
                Err(e) => {
                    tracing::warn!("peer {} left out: {e}", p.id);
                    None
                }
            })
            .collect();
        let firewall = map.firewall_rules.iter().map(Rule::from).collect();
        NetworkUpdate {
            peers,
            firewall,
            mesh_network: Some(map.peer_config.address.trunc()),
            ..NetworkUpdate::default()
        }
    }
}

/// The front-end's side of the engine.
#[derive(Debug)]
pub struct Tunnel {
    /// IP packets from this host towards the mesh.
    pub outbound: mpsc::Sender<Vec<u8>>,
    /// IP packets from peers that the firewall let in.
    pub inbound: mpsc::Receiver<Vec<u8>>,
}

/// The engine's side towards the network besides its own UDP traffic:
/// STUN on the shared socket, and the relay.
#[derive(Debug)]
pub struct Underlay {
    /// The engine's UDP socket, to send STUN binding requests from the port
    /// WireGuard uses (so the mapping a NAT shows the server is WireGuard's).
    pub socket: Arc<UdpSocket>,
    /// STUN messages that arrived on the socket, with their sender.
    pub stun: mpsc::Receiver<(SocketAddr, Vec<u8>)>,
    /// WireGuard datagrams to send over the relay, with the peer they are for.
    pub relay_out: mpsc::Receiver<(PublicKey, Vec<u8>)>,
    /// WireGuard datagrams that came over the relay.
    pub relay_in: mpsc::Sender<Vec<u8>>,
    /// Told when a peer's direct path died: this host's NAT mapping may
    /// have changed, so discovery should look again now.
    pub path_lost: Arc<Notify>,
}

/// How a peer is reached, in `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionKind {
    Direct,
    Relayed,
}

impl From<Connection> for ConnectionKind {
    fn from(c: Connection) -> Self {
        match c {
            Connection::Direct(_) => ConnectionKind::Direct,
            Connection::Relayed => ConnectionKind::Relayed,
        }
    }
}

/// One peer in `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStatus {
    pub public_key: String,
    pub mesh_ip: Ipv4Addr,
    /// How the peer is reached now; none while no path works yet.
    pub connection: Option<ConnectionKind>,
    /// The peer's UDP address in use, when direct.
    pub endpoint: Option<SocketAddr>,
    /// Round trip of the last handshake this side started, in ms.
    pub latency_ms: Option<u32>,
    pub last_handshake: Option<Timestamp>,
    /// WireGuard bytes (UDP payloads) received from and sent to the peer.
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    /// WireGuard handshakes completed with the peer (either side
    /// starting) since it entered the engine.
    #[serde(default)]
    pub handshakes: u64,
    /// A session younger than WireGuard's reject-after time (180 s) exists.
    pub connected: bool,
}

/// The engine's state for `status`; peers in mesh IP order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    pub public_key: String,
    pub mesh_ip: Ipv4Addr,
    pub listen: SocketAddr,
    /// Whether the relay connection is up.
    pub relay_connected: bool,
    /// Packets the peer firewall dropped since the engine started.
    pub firewall_dropped: u64,
    pub peers: Vec<PeerStatus>,
}

/// The engine's task is gone (it only stops when its handle is dropped, so
/// this means it panicked).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("the WireGuard engine has stopped")]
pub struct EngineStopped;

enum Command {
    Update(NetworkUpdate, oneshot::Sender<()>),
    Candidates(PublicKey, Vec<SocketAddr>),
    Checked(PublicKey, SocketAddr, bool),
    Relay(bool),
    Status(oneshot::Sender<Status>),
}

/// The handle to a running engine; dropping it stops the engine.
#[derive(Debug)]
pub struct Engine {
    commands: mpsc::Sender<Command>,
    local_addr: SocketAddr,
    public_key: PublicKey,
    /// What the firewall let through and dropped ([`crate::engine::flows`]).
    flows: FlowLog,
    /// Which peers answer now, over which path ([`Engine::reach`]).
    reach: watch::Receiver<Reach>,
    task: JoinHandle<()>,
}

/// Every peer's state as route selection needs it: connected means a path
/// is selected and an authenticated packet arrived within the path
/// machine's `dead_after` (peers send keep-alives every two seconds, so a
/// peer that stopped is noticed within seconds, not after WireGuard's
/// three-minute session expiry).
pub type Reach = BTreeMap<PublicKey, PeerState>;

impl Engine {
    /// Binds the UDP socket and starts the engine with no peers (and so no
    /// traffic) until the first [`Engine::update`]; direct paths only
    /// (no relay, STUN answers dropped).
    pub async fn start(config: EngineConfig) -> io::Result<(Engine, Tunnel)> {
        let (engine, tunnel, _) = Engine::start_with_underlay(config).await?;
        Ok((engine, tunnel))
    }

    /// [`Engine::start`], with the [`Underlay`] for STUN discovery and the
    /// relay task.
    pub async fn start_with_underlay(
        config: EngineConfig,
    ) -> io::Result<(Engine, Tunnel, Underlay)> {
        let socket = UdpSocket::bind(config.listen).await?;
        grow_buffers(&socket);
        let socket = Arc::new(socket);
        let local_addr = socket.local_addr()?;
        let (outbound, from_host) = mpsc::channel(QUEUE);
        let (to_host, inbound) = mpsc::channel(QUEUE);
        let (commands, command_rx) = mpsc::channel(64);
        let (stun_tx, stun) = mpsc::channel(STUN_QUEUE);
        let (relay_tx, relay_out) = mpsc::channel(QUEUE);
        let (relay_in, from_relay) = mpsc::channel(QUEUE);
        let path_lost = Arc::new(Notify::new());
        let public_key = config.private_key.public_key();
        let flows = FlowLog::default();
        let (reach_tx, reach) = watch::channel(Reach::new());
        let dataplane = Dataplane::new(
            Arc::clone(&socket),
            local_addr,
            config,
            to_host,
            flows.clone(),
            UnderlayEnds {
                stun: stun_tx,
                relay: relay_tx,
                path_lost: Arc::clone(&path_lost),
                reach: reach_tx,
            },
        );
        let task = tokio::spawn(dataplane.run(command_rx, from_host, from_relay));
        Ok((
            Engine {
                commands,
                local_addr,
                public_key,
                flows,
                reach,
                task,
            },
            Tunnel { outbound, inbound },
            Underlay {
                socket,
                stun,
                relay_out,
                relay_in,
                path_lost,
            },
        ))
    }

    /// The bound UDP address (to publish as this peer's endpoint).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn public_key(&self) -> PublicKey {
        self.public_key
    }

    /// The flow log the engine fills, for the reporter (`crate::mgmt::flow_report`).
    pub fn flows(&self) -> FlowLog {
        self.flows.clone()
    }

    /// Every peer's reachability, updated when it changes (route selection
    /// follows it to fail over).
    pub fn reach(&self) -> watch::Receiver<Reach> {
        self.reach.clone()
    }

    /// Applies a new map; returns once it is in effect.
    pub async fn update(&self, update: NetworkUpdate) -> Result<(), EngineStopped> {
        let (done, wait) = oneshot::channel();
        self.commands
            .send(Command::Update(update, done))
            .await
            .map_err(|_| EngineStopped)?;
        wait.await.map_err(|_| EngineStopped)
    }

    /// The candidate addresses `peer` announced (replacing earlier ones);
    /// a peer not in the current map is ignored.
    pub async fn candidates(
        &self,
        peer: PublicKey,
        candidates: Vec<SocketAddr>,
    ) -> Result<(), EngineStopped> {
        self.commands
            .send(Command::Candidates(peer, candidates))
            .await
            .map_err(|_| EngineStopped)
    }

    /// An ICE connectivity check showed `peer` hears us at `addr`: it
    /// answered there, keyed by the password only it and we know (signal
    /// bodies are sealed), so the answer proves the path both ways as an
    /// authenticated WireGuard packet does. NetBird's clients send no
    /// WireGuard keep-alives on an idle path (their ICE checks every 2 s
    /// hold it), so without this an idle direct path to one would die. When
    /// the address is `new`ly answered, a handshake initiation also goes
    /// there (unless the peer is reached there already): a NetBird client
    /// that chose the path as the responder waits for it.
    pub async fn checked(
        &self,
        peer: PublicKey,
        addr: SocketAddr,
        new: bool,
    ) -> Result<(), EngineStopped> {
        self.commands
            .send(Command::Checked(peer, addr, new))
            .await
            .map_err(|_| EngineStopped)
    }

    /// Whether the relay connection is up (every peer may then be reached
    /// over it).
    pub async fn relay(&self, up: bool) -> Result<(), EngineStopped> {
        self.commands
            .send(Command::Relay(up))
            .await
            .map_err(|_| EngineStopped)
    }

    pub async fn status(&self) -> Result<Status, EngineStopped> {
        let (reply, wait) = oneshot::channel();
        self.commands
            .send(Command::Status(reply))
            .await
            .map_err(|_| EngineStopped)?;
        wait.await.map_err(|_| EngineStopped)
    }
}

/// Asks for socket buffers that hold a burst of full-size datagrams, so a
/// busy moment drops fewer of them. The kernel caps the sizes
/// (`net.core.rmem_max`); a refusal only costs throughput.
fn grow_buffers(socket: &UdpSocket) {
    let s = socket2::SockRef::from(socket);
    for result in [
        s.set_recv_buffer_size(SOCKET_BUFFER),
        s.set_send_buffer_size(SOCKET_BUFFER),
    ] {
        if let Err(e) = result {
            tracing::debug!("udp socket buffer: {e}");
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshplane_core::index::AccountIndex;
    use meshplane_core::model::Account;
    use meshplane_core::netmap::network_map;
    use serde_json::json;

    #[test]
    fn a_map_becomes_the_engines_update() {
        let key = || PrivateKey::generate().public_key().to_string();
        let b_key = key();
        let account: Account = serde_json::from_value(json!({
            "id": "acc", "serial": 1,
            "peers": [
                {"id": "a", "name": "a", "ip": "100.64.0.1", "dns_label": "a", "key": key()},
                {"id": "b", "name": "b", "ip": "100.64.0.2", "dns_label": "b", "key": b_key},
                {"id": "c", "name": "c", "ip": "100.64.0.3", "dns_label": "c", "key": "bad"}
            ],
            "groups": [{"id": "g", "name": "all", "peers": ["a", "b", "c"]}],
            "policies": [{
                "id": "p", "name": "web", "enabled": true,
                "rules": [{
                    "id": "r", "name": "web", "enabled": true, "action": "accept",
                    "bidirectional": true, "protocol": "tcp",
                    "sources": ["g"], "destinations": ["g"], "ports": ["8080"]
                }]
            }]
        }))
        .expect("account");
        let index = AccountIndex::new(&account);
        let map = PeerMap::from(&network_map(&index, "a", Timestamp::from_secs(1)).expect("map"));
        assert_eq!(map.peers.len(), 2);

        let update = NetworkUpdate::from_map(&map);
        // c's key is not a WireGuard key: left out, not the whole map.
        assert_eq!(update.peers.len(), 1);
        assert_eq!(update.peers[0].public_key.to_string(), b_key);
        assert_eq!(update.peers[0].mesh_ip, Ipv4Addr::new(100, 64, 0, 2));
        // Where b is comes over signal, not in the map.
        assert_eq!(update.peers[0].endpoint, None);
        assert_eq!(update.peers[0].keepalive, Some(KEEPALIVE));
        assert_eq!(update.firewall.len(), 2, "in and out");
        assert!(update.firewall.iter().all(|r| r.port == Some(8080)));
        assert_eq!(map.peer_by_key(&b_key).map(|p| p.id.as_str()), Some("b"));
    }
}

//! The engine's task: the only owner of the socket, the tunnels and the
//! firewall, so none of them needs a lock.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use boringtun::noise::handshake::parse_handshake_anon;
use boringtun::noise::{Packet, Tunn, TunnResult};
use boringtun::x25519::{PublicKey as DalekPublic, StaticSecret};
use ipnet::Ipv4Net;
use meshplane_core::connect::Timers;
use meshplane_core::connect::{Connection, Path, ProbeKind};
use meshplane_core::firewall::{Firewall, Verdict};
use meshplane_core::netmap::firewall::Direction;
use meshplane_core::routing::forward::RouteFilter;
use meshplane_core::routing::select::PeerState;
use meshplane_core::Timestamp;
use meshplane_proto::stun;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch, Notify};
use tokio::time::MissedTickBehavior;

use super::peers::{Peer, PeerTable};
use super::udp::{Inbox, Outbox};
use super::{Command, ConnectionKind, EngineConfig, PeerStatus, Reach, Status};
use crate::engine::flows::FlowLog;
use crate::engine::packet;
use crate::key::PublicKey;

/// How often WireGuard's timers are looked at.
const TICK: Duration = Duration::from_millis(100);
/// How often idle firewall flows are swept.
const FLOW_SWEEP: Duration = Duration::from_secs(10);
/// WireGuard's reject-after time: an older session carries nothing.
const REJECT_AFTER: Duration = Duration::from_secs(180);
/// A cookie reply (what a rate-limited handshake gets) is this long; it is
/// not proof that the sender holds the peer's key.
const COOKIE_REPLY_LEN: usize = 64;
/// Room for the largest datagram plus WireGuard's overhead.
const BUF: usize = 65_536 + 64;
/// Packets (or coalesced receives) handled per wake-up before the other
/// sources get a turn.
const BATCH: usize = 64;
/// WireGuard's rekey timeout: how long an initiation waits for its answer.
const REKEY_TIMEOUT_MS: i64 = 5_000;
/// A handshake initiation's length.
const INITIATION_LEN: usize = 148;

/// The zero of [`clock`].
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

pub(super) struct Dataplane {
    wire: Wire,
    listen: SocketAddr,
    private: StaticSecret,
    public: DalekPublic,
    own_key: PublicKey,
    mesh_ip: Ipv4Addr,
    peers: PeerTable,
    filter: Filter,
    /// Decides routed packets: forwarded ones and those of routes in use.
    routed: RouteFilter,
    /// Publishes which peers answer, for route selection.
    reach: watch::Sender<Reach>,
    to_host: mpsc::Sender<Vec<u8>>,
    /// STUN messages that arrived on the socket, for discovery.
    stun: mpsc::Sender<(SocketAddr, Vec<u8>)>,
    /// Rings discovery when a direct path died.
    path_lost: Arc<Notify>,
    /// Whether the relay connection is up (every peer may be reached over
    /// it: all peers of a map use the relay their management server names).
    relay_up: bool,
}

/// The engine's ends of the [`Underlay`](super::Underlay) channels.
pub(super) struct UnderlayEnds {
    pub(super) stun: mpsc::Sender<(SocketAddr, Vec<u8>)>,
    pub(super) relay: mpsc::Sender<(PublicKey, Vec<u8>)>,
    pub(super) path_lost: Arc<Notify>,
    pub(super) reach: watch::Sender<Reach>,
}

/// Where datagrams leave: the UDP socket or the relay.
struct Wire {
    socket: Arc<UdpSocket>,
    /// Datagrams waiting to leave on the socket together; flushed before
    /// the engine waits for its next event.
    outbox: Outbox,
    relay: mpsc::Sender<(PublicKey, Vec<u8>)>,
    /// Addresses the host routes into the tunnel: the mesh network and the
    /// prefixes of the routes in use (a default route excepted: an exit
    /// node's policy routing keeps the underlay out of it). WireGuard
    /// datagrams are never sent to them nor taken from them: that would be
    /// the tunnel carrying itself.
    tunnelled: Vec<Ipv4Net>,
}

impl Wire {
    /// Whether `ip` is reached through the tunnel itself.
    fn tunnelled(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(ip) => self.tunnelled.iter().any(|n| n.contains(&ip)),
            IpAddr::V6(_) => false,
        }
    }
}

impl Wire {
    /// Sends one WireGuard datagram to `peer` over `path`. Direct ones are
    /// queued in the outbox ([`Wire::flush`] sends them). The relay's
    /// queue is bounded: when it is full the datagram is dropped, as a full
    /// socket buffer would.
    async fn send(&mut self, peer: &mut Peer, path: Path, datagram: &[u8]) {
        let sent = match path {
            Path::Direct(to) if self.tunnelled(to.ip()) => false,
            Path::Direct(to) => {
                if !self.outbox.fits(to, datagram.len()) {
                    self.outbox.flush(&self.socket).await;
                }
                self.outbox.push(to, datagram);
                true
            }
            Path::Relay => self
                .relay
                .try_send((peer.public_key, datagram.to_vec()))
                .is_ok(),
        };
        if sent {
            peer.tx_bytes += datagram.len() as u64;
        }
    }

    /// Sends a datagram boringtun made on the peer's selected path; with
    /// none selected yet it is dropped, and a handshake initiation is kept
    /// for the probes.
    async fn send_selected(&mut self, peer: &mut Peer, datagram: &[u8]) {
        remember_initiation(peer, datagram);
        if let Some(path) = peer.paths.selected() {
            self.send(peer, path, datagram).await;
        }
    }

    /// Sends the queued direct datagrams.
    async fn flush(&mut self) {
        self.outbox.flush(&self.socket).await;
    }
}

/// What an incoming datagram can prove about its sender.
#[derive(Clone, Copy)]
enum Kind {
    /// A handshake initiation: proves the key unless only a cookie is due.
    Initiation,
    /// A handshake response: authenticated when it decrypts, and it
    /// answers an initiation we sent on that path, so the peer hears us
    /// there (what lifts a one-way mark in the path machine).
    Response,
    /// A data packet or keepalive: authenticated when it decrypts.
    Data,
    /// A cookie reply: proves nothing.
    Cookie,
}

enum Event {
    Readable(std::io::Result<()>),
    Relayed(Option<Vec<u8>>),
    Outbound(Option<Vec<u8>>),
    Command(Option<Command>),
    Tick,
}

impl Dataplane {
    pub(super) fn new(
        socket: Arc<UdpSocket>,
        listen: SocketAddr,
        config: EngineConfig,
        to_host: mpsc::Sender<Vec<u8>>,
        flows: FlowLog,
        underlay: UnderlayEnds,
    ) -> Self {
        let UnderlayEnds {
            stun,
            relay,
            path_lost,
            reach,
        } = underlay;
        let private = config.private_key.secret().clone();
        Dataplane {
            wire: Wire {
                socket,
                outbox: Outbox::default(),
                relay,
                tunnelled: Vec::new(),
            },
            listen,
            public: DalekPublic::from(&private),
            own_key: config.private_key.public_key(),
            private,
            mesh_ip: config.mesh_ip,
            peers: PeerTable::default(),
            filter: Filter {
                firewall: Firewall::new(&[]),
                wall_epoch: millis(
                    SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .unwrap_or_default(),
                )
                .as_millis()
                    - clock().as_millis(),
                flows,
                dropped: 0,
            },
            routed: RouteFilter::default(),
            reach,
            to_host,
            stun,
            path_lost,
            relay_up: false,
        }
    }

    /// Runs until the handle's command channel closes.
    pub(super) async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut from_host: mpsc::Receiver<Vec<u8>>,
        mut from_relay: mpsc::Receiver<Vec<u8>>,
    ) {
        let mut inbox = Inbox::new(&self.wire.socket);
        let mut out = vec![0u8; BUF];
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut last_sweep = Instant::now();
        let mut host_open = true;
        let mut relay_open = true;
        let socket = Arc::clone(&self.wire.socket);
        loop {
            let event = tokio::select! {
                r = socket.readable() => Event::Readable(r),
                p = from_relay.recv(), if relay_open => Event::Relayed(p),
                p = from_host.recv(), if host_open => Event::Outbound(p),
                c = commands.recv() => Event::Command(c),
                _ = tick.tick() => Event::Tick,
            };
            match event {
                Event::Readable(Ok(())) => {
                    // Take a burst without going back to select.
                    for _ in 0..BATCH {
                        match inbox.try_recv(&socket) {
                            Ok((from, datagrams)) => {
                                for datagram in datagrams {
                                    self.on_udp(datagram, from, &mut out).await;
                                }
                            }
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                            Err(e) => {
                                tracing::debug!("udp receive: {e}");
                                break;
                            }
                        }
                    }
                }
                Event::Readable(Err(e)) => tracing::debug!("udp receive: {e}"),
                Event::Relayed(Some(p)) => {
                    self.on_datagram(&p, Path::Relay, &mut out).await;
                    for _ in 1..BATCH {
                        match from_relay.try_recv() {
                            Ok(p) => self.on_datagram(&p, Path::Relay, &mut out).await,
                            Err(_) => break,
                        }
                    }
                }
                Event::Relayed(None) => relay_open = false,
                Event::Outbound(Some(p)) => {
                    self.on_outbound(&p, &mut out).await;
                    for _ in 1..BATCH {
                        match from_host.try_recv() {
                            Ok(p) => self.on_outbound(&p, &mut out).await,
                            Err(_) => break,
                        }
                    }
                }
                Event::Outbound(None) => host_open = false,
                Event::Command(None) => return,
                Event::Command(Some(Command::Checked(key, addr, new))) => {
                    self.on_checked(key, addr, new, &mut out).await;
                }
                Event::Command(Some(command)) => self.on_command(command),
                Event::Tick => {
                    self.on_tick(&mut out).await;
                    if last_sweep.elapsed() >= FLOW_SWEEP {
                        self.filter.sweep();
                        self.routed.expire(clock());
                        last_sweep = Instant::now();
                    }
                }
            }
            self.wire.flush().await;
        }
    }

    /// A handshake initiation to `addr`, which an ICE check proved
    /// (see [`Engine::checked`](super::Engine::checked)).
    async fn on_checked(&mut self, key: PublicKey, addr: SocketAddr, new: bool, out: &mut [u8]) {
        let now = clock();
        let Some(peer) = self.peers.by_key(&key) else {
            return;
        };
        let path = Path::Direct(addr);
        let selected = peer.paths.selected() == Some(path);
        peer.paths.handle_received(path, now);
        if !new || selected {
            return;
        }
        if let Some(init) = fresh_initiation(peer, now) {
            self.wire.send(peer, path, &init).await;
        } else if let TunnResult::WriteToNetwork(p) =
            peer.tunn.format_handshake_initiation(out, true)
        {
            remember_initiation(peer, p);
            self.wire.send(peer, path, p).await;
        }
    }

    fn on_command(&mut self, command: Command) {
        let now = clock();
        match command {
            Command::Update(update, done) => {
                self.filter.firewall.set_rules(&update.firewall);
                self.peers.apply(
                    &update.peers,
                    &self.private,
                    self.own_key,
                    self.relay_up,
                    now,
                );
                self.peers.set_routes(&update.routes);
                self.routed.set_rules(&update.route_rules);
                self.wire.tunnelled = update
                    .mesh_network
                    .into_iter()
                    .chain(update.routes.iter().map(|r| r.prefix))
                    .filter(|p| p.prefix_len() > 0)
                    .collect();
                let _ = done.send(());
            }
            Command::Candidates(key, candidates) => {
                if let Some(peer) = self.peers.by_key(&key) {
                    peer.set_signalled(candidates, now);
                }
            }
            Command::Relay(up) => {
                self.relay_up = up;
                for peer in self.peers.iter_mut() {
                    peer.paths.handle_relay(up, now);
                }
            }
            Command::Status(reply) => {
                let _ = reply.send(self.status());
            }
            // Handled by `on_checked`, which sends.
            Command::Checked(..) => {}
        }
    }

    /// A datagram from the UDP socket: STUN goes to discovery, the rest is
    /// WireGuard.
    async fn on_udp(&mut self, data: &[u8], from: SocketAddr, out: &mut [u8]) {
        if stun::is_stun(data) {
            // Discovery reads these a few times a minute; a flood is dropped.
            let _ = self.stun.try_send((from, data.to_vec()));
            return;
        }
        if self.wire.tunnelled(from.ip()) {
            return;
        }
        self.on_datagram(data, Path::Direct(from), out).await;
    }

    /// A WireGuard datagram that came over `from`: find its peer, decrypt,
    /// check, deliver.
    async fn on_datagram(&mut self, data: &[u8], from: Path, out: &mut [u8]) {
        let (peer, kind) = match Tunn::parse_incoming_packet(data) {
            Ok(Packet::HandshakeInit(init)) => {
                match parse_handshake_anon(&self.private, &self.public, &init) {
                    Ok(half) => (
                        self.peers.by_key(&PublicKey(half.peer_static_public)),
                        Kind::Initiation,
                    ),
                    Err(_) => return,
                }
            }
            Ok(Packet::HandshakeResponse(r)) => {
                (self.peers.by_session(r.receiver_idx), Kind::Response)
            }
            Ok(Packet::PacketCookieReply(c)) => {
                (self.peers.by_session(c.receiver_idx), Kind::Cookie)
            }
            Ok(Packet::PacketData(d)) => (self.peers.by_session(d.receiver_idx), Kind::Data),
            Err(_) => return,
        };
        let Some(peer) = peer else {
            return;
        };
        let source = match from {
            Path::Direct(addr) => Some(addr.ip()),
            Path::Relay => None,
        };
        let mut result = peer.tunn.decapsulate(source, data, out);
        if !matches!(result, TunnResult::Err(_)) {
            peer.rx_bytes += data.len() as u64;
            // The path proved itself: the packet is authenticated. A
            // cookie reply proves nothing, and neither does an initiation
            // that only earned a cookie reply (we are under load and did
            // not check it).
            let now = clock();
            match kind {
                Kind::Response => {
                    peer.handshakes += 1;
                    peer.paths.handle_handshake_response(from, now);
                    peer.last_received = Some(now);
                }
                Kind::Data => {
                    peer.paths.handle_received(from, now);
                    peer.last_received = Some(now);
                }
                Kind::Cookie => {}
                Kind::Initiation => {
                    if !matches!(
                        &result,
                        TunnResult::WriteToNetwork(p) if p.len() == COOKIE_REPLY_LEN
                    ) {
                        peer.handshakes += 1;
                        peer.paths.handle_received(from, now);
                        peer.last_received = Some(now);
                    }
                }
            }
        }
        // The answer to this datagram goes back where it came from; packets
        // boringtun had queued follow (repeat calls) on the selected path.
        let mut answered = false;
        loop {
            match result {
                TunnResult::WriteToNetwork(p) => {
                    if answered {
                        self.wire.send_selected(peer, p).await;
                    } else {
                        self.wire.send(peer, from, p).await;
                        answered = true;
                    }
                    result = peer.tunn.decapsulate(None, &[], out);
                }
                TunnResult::WriteToTunnelV4(p, src) => {
                    // A peer may only send from its allowed IPs. Its own
                    // packets to this peer go through the firewall; the
                    // rest (forwarded by or through it) through the route
                    // filter. The engine never waits for the host: a full
                    // queue drops the packet.
                    let pass = match packet::addresses(p) {
                        Some((_, dst)) if src == peer.mesh_ip && dst == self.mesh_ip => {
                            self.filter.passes(p, Direction::In)
                        }
                        Some(_) if peer.may_send_from(src) => routed_passes(&mut self.routed, p),
                        _ => false,
                    };
                    if pass {
                        let _ = self.to_host.try_send(p.to_vec());
                    }
                    return;
                }
                TunnResult::WriteToTunnelV6(..) | TunnResult::Done => return,
                TunnResult::Err(e) => {
                    tracing::trace!("decapsulate from {from:?}: {e:?}");
                    return;
                }
            }
        }
    }

    /// A packet from the host: route by destination (a peer's mesh IP,
    /// else the longest routed prefix), filter, encrypt, send. This peer's
    /// own packets to peers go through the firewall; routed ones (to a
    /// routed prefix, or a forwarded flow's replies) through the route
    /// filter.
    async fn on_outbound(&mut self, ip: &[u8], out: &mut [u8]) {
        let Some((src, dst)) = packet::addresses(ip) else {
            return;
        };
        if dst == self.mesh_ip {
            return;
        }
        let (peer, pass) = match self.peers.route(dst) {
            Some(peer) if src == self.mesh_ip => (peer, self.filter.passes(ip, Direction::Out)),
            Some(peer) => (peer, routed_passes(&mut self.routed, ip)),
            None => match self.peers.route_prefix(dst) {
                Some(peer) => (peer, routed_passes(&mut self.routed, ip)),
                None => return,
            },
        };
        if !pass {
            return;
        }
        if let TunnResult::WriteToNetwork(p) = peer.tunn.encapsulate(ip, out) {
            self.wire.send_selected(peer, p).await;
        }
    }

    /// WireGuard's timers (handshake retries, rekeys and keep-alives) and
    /// the path machines' probes: handshake initiations before a session
    /// exists, keep-alives after, each on the path the machine names.
    async fn on_tick(&mut self, out: &mut [u8]) {
        let now = clock();
        for peer in self.peers.iter_mut() {
            let established = peer
                .tunn
                .time_since_last_handshake()
                .is_some_and(|d| d < REJECT_AFTER);
            let before = peer.paths.selected();
            peer.paths.handle_session(established, now);
            while let Some(probe) = peer.paths.poll_probe(now) {
                tracing::trace!("peer {}: probe {probe:?}", peer.public_key);
                match probe.kind {
                    ProbeKind::Handshake => {
                        if let Some(init) = fresh_initiation(peer, now) {
                            self.wire.send(peer, probe.path, &init).await;
                        } else if let TunnResult::WriteToNetwork(p) =
                            peer.tunn.format_handshake_initiation(out, true)
                        {
                            remember_initiation(peer, p);
                            self.wire.send(peer, probe.path, p).await;
                        }
                    }
                    ProbeKind::Keepalive if established => {
                        if let TunnResult::WriteToNetwork(p) = peer.tunn.encapsulate(&[], out) {
                            self.wire.send(peer, probe.path, p).await;
                        }
                    }
                    ProbeKind::Keepalive => {}
                }
            }
            if let TunnResult::WriteToNetwork(p) = peer.tunn.update_timers(out) {
                self.wire.send_selected(peer, p).await;
            }
            let after = peer.paths.selected();
            if after != before {
                tracing::info!("peer {}: {before:?} -> {after:?}", peer.public_key);
                if matches!(before, Some(Path::Direct(_))) {
                    self.path_lost.notify_one();
                }
            }
        }
        self.publish_reach(now);
    }

    /// Publishes every peer's reachability when it changed.
    fn publish_reach(&mut self, now: Timestamp) {
        let dead_after = Timers::default().dead_after.as_millis();
        let reach: Reach = self
            .peers
            .iter()
            .map(|p| {
                let heard = p
                    .last_received
                    .is_some_and(|t| now.as_millis() - t.as_millis() < dead_after);
                let connection = p.paths.connection();
                let state = PeerState {
                    connected: heard && connection.is_some(),
                    relayed: matches!(connection, Some(Connection::Relayed)),
                    latency_ms: p.tunn.stats().4,
                };
                (p.public_key, state)
            })
            .collect();
        self.reach.send_if_modified(|current| {
            let changed = *current != reach;
            if changed {
                *current = reach;
            }
            changed
        });
    }

    fn status(&self) -> Status {
        let wall_now = SystemTime::now();
        let mut peers: Vec<PeerStatus> = self
            .peers
            .iter()
            .map(|p| {
                let since = p.tunn.time_since_last_handshake();
                let connection = p.paths.connection();
                PeerStatus {
                    public_key: p.public_key.to_string(),
                    mesh_ip: p.mesh_ip,
                    endpoint: match connection {
                        Some(Connection::Direct(addr)) => Some(addr),
                        _ => None,
                    },
                    connection: connection.map(ConnectionKind::from),
                    latency_ms: p.tunn.stats().4,
                    last_handshake: since
                        .and_then(|d| wall_now.checked_sub(d))
                        .map(|t| millis(t.duration_since(UNIX_EPOCH).unwrap_or_default())),
                    rx_bytes: p.rx_bytes,
                    tx_bytes: p.tx_bytes,
                    handshakes: p.handshakes,
                    connected: since.is_some_and(|d| d < REJECT_AFTER),
                }
            })
            .collect();
        peers.sort_by_key(|p| p.mesh_ip);
        Status {
            public_key: self.own_key.to_string(),
            mesh_ip: self.mesh_ip,
            listen: self.listen,
            relay_connected: self.relay_up,
            firewall_dropped: self.filter.dropped,
            peers,
        }
    }
}

/// The initiation last sent to `peer`, while its answer may still come
/// (WireGuard's rekey timeout): probes on new paths repeat it.
fn fresh_initiation(peer: &Peer, now: Timestamp) -> Option<Vec<u8>> {
    let (at, init) = peer.initiation.as_ref()?;
    (now.as_millis() - at.as_millis() < REKEY_TIMEOUT_MS).then(|| init.clone())
}

/// Keeps `datagram` as the peer's current initiation if it is a new
/// WireGuard handshake initiation (type 1), so probes repeat it.
fn remember_initiation(peer: &mut Peer, datagram: &[u8]) {
    if datagram.len() == INITIATION_LEN && datagram[..4] == [1, 0, 0, 0] {
        peer.initiation = Some((clock(), datagram.to_vec()));
    }
}

/// The engines' clock for the firewall and the path machines:
/// milliseconds since the first engine of the process started.
fn clock() -> Timestamp {
    millis(EPOCH.elapsed())
}

fn millis(d: Duration) -> Timestamp {
    Timestamp::from_millis(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The firewall with its clock, and the flow log its verdicts go to; apart
/// from the peer table, since a packet's peer is borrowed while it is
/// filtered.
struct Filter {
    firewall: Firewall,
    /// The wall clock at the engine clock's zero, ms since the Unix epoch
    /// minus the engine clock (flow events carry wall-clock times).
    wall_epoch: i64,
    /// Every packet's verdict, for the network traffic log.
    flows: FlowLog,
    /// Packets the firewall dropped since the engine started.
    dropped: u64,
}

impl Filter {
    /// Whether the firewall lets `ip` cross in `direction`; the verdict
    /// goes into the flow log.
    fn passes(&mut self, ip: &[u8], direction: Direction) -> bool {
        let Some(summary) = packet::summary(ip, direction) else {
            return false;
        };
        let now = clock();
        let allowed = self.firewall.check(&summary, now).verdict == Verdict::Accept;
        self.flows
            .packet(ip, &summary, allowed, self.wall_epoch + now.as_millis());
        if !allowed {
            self.dropped += 1;
        }
        allowed
    }

    /// Forgets idle firewall flows and ends idle logged ones.
    fn sweep(&mut self) {
        let now = clock();
        self.firewall.expire(now);
        self.flows.sweep(self.wall_epoch + now.as_millis());
    }
}

/// Whether the route filter lets a routed packet through.
fn routed_passes(filter: &mut RouteFilter, ip: &[u8]) -> bool {
    packet::routed(ip).is_some_and(|p| filter.check(&p, clock()).verdict == Verdict::Accept)
}

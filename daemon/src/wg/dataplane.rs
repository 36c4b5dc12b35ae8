//! The engine's task: the only owner of the socket, the tunnels and the
//! firewall, so none of them needs a lock.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use boringtun::noise::handshake::parse_handshake_anon;
use boringtun::noise::{Packet, Tunn, TunnResult};
use boringtun::x25519::{PublicKey as DalekPublic, StaticSecret};
use meshplane_core::firewall::{Firewall, Verdict};
use meshplane_core::netmap::firewall::Direction;
use meshplane_core::Timestamp;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;

use super::peers::{Peer, PeerTable};
use super::{Command, EngineConfig, NetworkUpdate, PeerStatus, Status};
use crate::flows::FlowLog;
use crate::key::PublicKey;
use crate::packet;

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
/// Packets handled per wake-up before the other sources get a turn.
const BATCH: usize = 64;

pub(super) struct Dataplane {
    socket: UdpSocket,
    listen: SocketAddr,
    private: StaticSecret,
    public: DalekPublic,
    own_key: PublicKey,
    mesh_ip: Ipv4Addr,
    peers: PeerTable,
    filter: Filter,
    to_host: mpsc::Sender<Vec<u8>>,
}

/// What an incoming datagram can prove about its sender.
#[derive(Clone, Copy)]
enum Kind {
    /// A handshake initiation: proves the key unless only a cookie is due.
    Initiation,
    /// A handshake response or a data packet: authenticated when it decrypts.
    Proof,
    /// A cookie reply: proves nothing.
    Cookie,
}

enum Event {
    Datagram(std::io::Result<(usize, SocketAddr)>),
    Outbound(Option<Vec<u8>>),
    Command(Option<Command>),
    Tick,
}

impl Dataplane {
    pub(super) fn new(
        socket: UdpSocket,
        listen: SocketAddr,
        config: EngineConfig,
        to_host: mpsc::Sender<Vec<u8>>,
        flows: FlowLog,
    ) -> Self {
        let private = config.private_key.secret().clone();
        Dataplane {
            socket,
            listen,
            public: DalekPublic::from(&private),
            own_key: config.private_key.public_key(),
            private,
            mesh_ip: config.mesh_ip,
            peers: PeerTable::default(),
            filter: Filter {
                firewall: Firewall::new(&[]),
                epoch: Instant::now(),
                wall_epoch: millis(
                    SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .unwrap_or_default(),
                )
                .as_millis(),
                flows,
            },
            to_host,
        }
    }

    /// Runs until the handle's command channel closes.
    pub(super) async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut from_host: mpsc::Receiver<Vec<u8>>,
    ) {
        let mut recv = vec![0u8; BUF];
        let mut out = vec![0u8; BUF];
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut last_sweep = Instant::now();
        let mut host_open = true;
        loop {
            let event = tokio::select! {
                r = self.socket.recv_from(&mut recv) => Event::Datagram(r),
                p = from_host.recv(), if host_open => Event::Outbound(p),
                c = commands.recv() => Event::Command(c),
                _ = tick.tick() => Event::Tick,
            };
            match event {
                Event::Datagram(Ok((n, from))) => {
                    self.on_datagram(&recv[..n], from, &mut out).await;
                    // Take the rest of a burst without going back to select.
                    for _ in 1..BATCH {
                        match self.socket.try_recv_from(&mut recv) {
                            Ok((n, from)) => self.on_datagram(&recv[..n], from, &mut out).await,
                            Err(_) => break,
                        }
                    }
                }
                Event::Datagram(Err(e)) => tracing::debug!("udp receive: {e}"),
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
                Event::Command(Some(Command::Update(u, done))) => {
                    self.apply(u);
                    let _ = done.send(());
                }
                Event::Command(Some(Command::Status(reply))) => {
                    let _ = reply.send(self.status());
                }
                Event::Tick => {
                    self.on_tick(&mut out).await;
                    if last_sweep.elapsed() >= FLOW_SWEEP {
                        self.filter.sweep();
                        last_sweep = Instant::now();
                    }
                }
            }
        }
    }

    fn apply(&mut self, update: NetworkUpdate) {
        self.filter.firewall.set_rules(&update.firewall);
        self.peers.apply(&update.peers, &self.private, self.own_key);
    }

    /// A datagram from the socket: find its peer, decrypt, check, deliver.
    async fn on_datagram(&mut self, data: &[u8], from: SocketAddr, out: &mut [u8]) {
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
                (self.peers.by_session(r.receiver_idx), Kind::Proof)
            }
            Ok(Packet::PacketCookieReply(c)) => {
                (self.peers.by_session(c.receiver_idx), Kind::Cookie)
            }
            Ok(Packet::PacketData(d)) => (self.peers.by_session(d.receiver_idx), Kind::Proof),
            Err(_) => return,
        };
        let Some(peer) = peer else {
            return;
        };
        let mut result = peer.tunn.decapsulate(Some(from.ip()), data, out);
        if !matches!(result, TunnResult::Err(_)) {
            peer.rx_bytes += data.len() as u64;
            // Roaming: follow the peer to wherever its authenticated packets
            // come from. A cookie reply proves nothing, and neither does an
            // initiation that only earned a cookie reply (we are under load
            // and did not check it).
            let roams = match kind {
                Kind::Proof => true,
                Kind::Cookie => false,
                Kind::Initiation => !matches!(
                    &result,
                    TunnResult::WriteToNetwork(p) if p.len() == COOKIE_REPLY_LEN
                ),
            };
            if roams {
                peer.endpoint = Some(from);
            }
        }
        // The answer to this datagram goes back where it came from; packets
        // boringtun had queued follow (repeat calls) to the peer's endpoint.
        let mut dest = from;
        loop {
            match result {
                TunnResult::WriteToNetwork(p) => {
                    match self.socket.send_to(p, dest).await {
                        Ok(_) => peer.tx_bytes += p.len() as u64,
                        Err(e) => tracing::debug!("udp send to {dest}: {e}"),
                    }
                    dest = peer.endpoint.unwrap_or(from);
                    result = peer.tunn.decapsulate(None, &[], out);
                }
                TunnResult::WriteToTunnelV4(p, src) => {
                    // A peer may only send from its own address. The
                    // engine never waits for the host: a full queue drops
                    // the packet.
                    if src == peer.mesh_ip && self.filter.passes(p, Direction::In) {
                        let _ = self.to_host.try_send(p.to_vec());
                    }
                    return;
                }
                TunnResult::WriteToTunnelV6(..) | TunnResult::Done => return,
                TunnResult::Err(e) => {
                    tracing::trace!("decapsulate from {from}: {e:?}");
                    return;
                }
            }
        }
    }

    /// A packet from the host: route by destination, filter, encrypt, send.
    async fn on_outbound(&mut self, ip: &[u8], out: &mut [u8]) {
        let Some((_, dst)) = packet::addresses(ip) else {
            return;
        };
        if dst == self.mesh_ip {
            return;
        }
        let Some(peer) = self.peers.route(dst) else {
            return;
        };
        if !self.filter.passes(ip, Direction::Out) {
            return;
        }
        if let TunnResult::WriteToNetwork(p) = peer.tunn.encapsulate(ip, out) {
            send(&self.socket, peer, p).await;
        }
    }

    /// WireGuard's timers: handshake retries, rekeys and keep-alives.
    ///
    /// A peer with persistent keep-alive and a known endpoint but no
    /// session yet starts its handshake at once, as WireGuard does when
    /// keep-alive is configured, instead of after the first interval; an
    /// initiation already in flight is left to boringtun's retry timer.
    async fn on_tick(&mut self, out: &mut [u8]) {
        for peer in self.peers.iter_mut() {
            let eager = peer.keepalive.is_some()
                && peer.endpoint.is_some()
                && peer.tunn.time_since_last_handshake().is_none();
            if eager {
                if let TunnResult::WriteToNetwork(p) =
                    peer.tunn.format_handshake_initiation(out, false)
                {
                    send(&self.socket, peer, p).await;
                }
            }
            if let TunnResult::WriteToNetwork(p) = peer.tunn.update_timers(out) {
                send(&self.socket, peer, p).await;
            }
        }
    }

    fn status(&self) -> Status {
        let wall_now = SystemTime::now();
        let mut peers: Vec<PeerStatus> = self
            .peers
            .iter()
            .map(|p| {
                let since = p.tunn.time_since_last_handshake();
                PeerStatus {
                    public_key: p.public_key.to_string(),
                    mesh_ip: p.mesh_ip,
                    endpoint: p.endpoint,
                    last_handshake: since
                        .and_then(|d| wall_now.checked_sub(d))
                        .map(|t| millis(t.duration_since(UNIX_EPOCH).unwrap_or_default())),
                    rx_bytes: p.rx_bytes,
                    tx_bytes: p.tx_bytes,
                    connected: since.is_some_and(|d| d < REJECT_AFTER),
                }
            })
            .collect();
        peers.sort_by_key(|p| p.mesh_ip);
        Status {
            public_key: self.own_key.to_string(),
            mesh_ip: self.mesh_ip,
            listen: self.listen,
            peers,
        }
    }
}

/// The firewall's time: milliseconds since the engine started.
fn clock(epoch: Instant) -> Timestamp {
    millis(epoch.elapsed())
}

fn millis(d: Duration) -> Timestamp {
    Timestamp::from_millis(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Sends a datagram to the peer's endpoint, if it has one yet.
async fn send(socket: &UdpSocket, peer: &mut Peer, datagram: &[u8]) {
    if let Some(endpoint) = peer.endpoint {
        match socket.send_to(datagram, endpoint).await {
            Ok(_) => peer.tx_bytes += datagram.len() as u64,
            Err(e) => tracing::debug!("udp send to {endpoint}: {e}"),
        }
    }
}

/// The firewall with its clock, and the flow log its verdicts go to; apart
/// from the peer table, since a packet's peer is borrowed while it is
/// filtered.
struct Filter {
    firewall: Firewall,
    /// The firewall's clock.
    epoch: Instant,
    /// The wall clock at `epoch`, ms since the Unix epoch (flow events
    /// carry wall-clock times).
    wall_epoch: i64,
    /// Every packet's verdict, for the network traffic log.
    flows: FlowLog,
}

impl Filter {
    /// Whether the firewall lets `ip` cross in `direction`; the verdict
    /// goes into the flow log.
    fn passes(&mut self, ip: &[u8], direction: Direction) -> bool {
        let Some(summary) = packet::summary(ip, direction) else {
            return false;
        };
        let now = clock(self.epoch);
        let allowed = self.firewall.check(&summary, now).verdict == Verdict::Accept;
        self.flows
            .packet(ip, &summary, allowed, self.wall_epoch + now.as_millis());
        allowed
    }

    /// Forgets idle firewall flows and ends idle logged ones.
    fn sweep(&mut self) {
        let now = clock(self.epoch);
        self.firewall.expire(now);
        self.flows.sweep(self.wall_epoch + now.as_millis());
    }
}

//! A seeded simulation of two peers' path machines over NATs, a lossy
//! direct path and a relay.
//!
//! Peers `A` and `B` each sit behind a NAT ([`Nat`]) and run a
//! [`PeerPaths`] for the other, fed the way a daemon feeds it: the other's
//! candidates (a private host address, which never works across the two
//! networks, and its server-reflexive address) arrive over signal after a
//! delay; every authenticated packet is reported with the path it came over;
//! the relay's availability follows the phase. Probes become WireGuard
//! messages: a handshake initiation (resent unchanged while it is in
//! flight, and answered once, over the path the first copy came in on) or a
//! keepalive; each peer also sends data on its selected path every
//! `data_interval`, which counts as authenticated traffic too.
//!
//! The direct network honours the NATs: a packet goes out from the
//! sender's mapping for that destination (one per peer for a cone NAT, one
//! per destination for a symmetric one), opens a pinhole there, and is let
//! in at the receiver only through a pinhole its NAT opened towards the
//! sender (by address for an address-restricted cone, by address and port
//! otherwise) within the mapping lifetime. Direct packets are lost with
//! probability `loss`, and not at all delivered while a phase blocks direct
//! traffic (both ways, or only towards one peer: a one-way direct path, on
//! which that peer goes to the relay and the other must follow by the
//! one-way rule, since it still hears the first); relayed ones are never
//! lost but slower. Handshake responses are reported as such, the way a
//! daemon does, so an answered path is proven both ways.
//!
//! The run goes through [`Phase`]s (direct open, blocked or one-way, relay
//! up or down, a NAT rebinding). After every step it checks the invariants of the
//! path machine on both sides:
//!
//! - the relay is selected only while it is usable;
//! - a selected direct address was signalled to that peer or proved itself
//!   with an authenticated packet;
//! - while the relay is usable, a selected direct address received an
//!   authenticated packet within the dead time;
//! - a selected relay is left only for a direct path or because it went away
//!   (no drop on upgrade).
//!
//! It also measures, per phase and peer, how long each was on the path the
//! phase calls for (direct when direct traffic can pass the two NATs, else
//! the relay when it is up) once `settle` has passed since the phase began;
//! the tests hold those figures to account.
//!
//! ```
//! use meshplane_core::connect::sim::{run, SimConfig};
//!
//! let config = SimConfig::default();
//! let report = run(1, &config).unwrap();
//! assert_eq!(report, run(1, &config).unwrap());
//! assert!(report.phases.iter().all(|p| p.right_ms == [p.settled_ms; 2]));
//! ```

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use rand::Rng;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{Path, PeerPaths, ProbeKind, Timers};
use crate::sim::SimFailure;
use crate::time::{Duration, Timestamp};

/// How long a NAT keeps a mapping and its pinholes without outbound traffic.
const MAPPING_LIFETIME: Duration = Duration::from_secs(30);
/// How long WireGuard waits for a handshake answer before a new initiation.
const REKEY_TIMEOUT: Duration = Duration::from_secs(5);
/// The port every peer's WireGuard socket is bound to.
const WG_PORT: u16 = 51820;

/// The NAT in front of a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Nat {
    /// One public port for every destination; inbound packets pass from an
    /// address the peer has sent to (address-restricted cone).
    AddressRestricted,
    /// One public port for every destination; inbound packets pass only
    /// from an address and port the peer has sent to.
    PortRestricted,
    /// A new public port for every destination, and inbound only from that
    /// destination: the server-reflexive address is useless to others.
    Symmetric,
}

impl Nat {
    /// Whether direct traffic can get through this NAT and `other` at all:
    /// a symmetric NAT hides the port the other side must send to, which
    /// only a NAT filtering by address alone lets through (the other side
    /// then learns the port from the first packet).
    pub fn direct_possible(self, other: Nat) -> bool {
        match (self, other) {
            (Nat::Symmetric, Nat::AddressRestricted) | (Nat::AddressRestricted, Nat::Symmetric) => {
                true
            }
            (Nat::Symmetric, _) | (_, Nat::Symmetric) => false,
            _ => true,
        }
    }
}

/// A stretch of the run with fixed network conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Phase {
    pub length: Duration,
    /// Whether UDP between the two networks passes at all.
    pub direct_open: bool,
    /// `Some(i)`: direct packets *to* peer `i` (0: `A`, 1: `B`) are dropped
    /// while the other way passes, a one-way direct path. The phase then
    /// calls for the relay.
    #[serde(default)]
    pub blocked_towards: Option<usize>,
    /// Whether both peers are connected to the relay.
    pub relay: bool,
    /// `A`'s NAT gives it a new public port as the phase starts (its
    /// mappings and pinholes are gone); `A` signals its new candidates
    /// after `stun_delay`.
    pub rebind_a: bool,
}

/// The shape of a simulation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SimConfig {
    pub timers: Timers,
    pub nat_a: Nat,
    pub nat_b: Nat,
    pub phases: Vec<Phase>,
    /// Chance that a direct packet is lost.
    pub loss: f64,
    /// One-way direct delay: uniform in this range (ms).
    pub direct_delay_ms: (i64, i64),
    /// One-way relayed delay: uniform in this range (ms).
    pub relay_delay_ms: (i64, i64),
    /// Signal delivery delay for candidates.
    pub signal_delay: Duration,
    /// How long a rebound peer takes to notice its new public address.
    pub stun_delay: Duration,
    /// Each peer sends a data packet on its selected path this often.
    pub data_interval: Duration,
    /// Time after a phase begins before the right path is required.
    pub settle: Duration,
}

impl Default for SimConfig {
    /// Two port-restricted cone NATs, direct open for a minute, blocked for
    /// a minute, open again: direct, relay, direct.
    fn default() -> Self {
        let phase = |direct_open| Phase {
            length: Duration::from_secs(60),
            direct_open,
            blocked_towards: None,
            relay: true,
            rebind_a: false,
        };
        SimConfig {
            timers: Timers::default(),
            nat_a: Nat::PortRestricted,
            nat_b: Nat::PortRestricted,
            phases: vec![phase(true), phase(false), phase(true)],
            loss: 0.0,
            direct_delay_ms: (10, 40),
            relay_delay_ms: (40, 90),
            signal_delay: Duration::from_millis(150),
            stun_delay: Duration::from_secs(1),
            data_interval: Duration::from_millis(250),
            settle: Duration::from_secs(12),
        }
    }
}

/// What one phase looked like from both peers (`[A, B]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseReport {
    /// Time of the phase after `settle`.
    pub settled_ms: i64,
    /// Of that, time spent on the path the phase calls for (all of it when
    /// the phase calls for nothing in particular).
    pub right_ms: [i64; 2],
    pub direct_ms: [i64; 2],
    pub relayed_ms: [i64; 2],
    pub nowhere_ms: [i64; 2],
    /// Changes of the selected path.
    pub switches: [u32; 2],
    /// From the phase's start to the first time on the path it calls for.
    pub first_right_ms: [Option<i64>; 2],
}

/// What happened in a run (equal for equal seeds and configs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimReport {
    pub seed: u64,
    pub steps: u64,
    pub phases: Vec<PhaseReport>,
    pub probes: [u64; 2],
    pub handshakes_completed: [u64; 2],
    pub data_sent: [u64; 2],
    pub data_delivered: [u64; 2],
    pub direct_lost: u64,
    /// Direct packets a NAT or a blocked network dropped.
    pub direct_refused: u64,
    /// Addresses a peer selected that it learned from traffic alone.
    pub learned_selected: [u64; 2],
}

/// Runs one simulation.
pub fn run(seed: u64, config: &SimConfig) -> Result<SimReport, SimFailure> {
    Sim::new(seed, config).run()
}

/// A WireGuard message between the peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Message {
    Initiation(u64),
    Response(u64),
    Keepalive,
    Data,
}

/// How a message travels.
#[derive(Debug, Clone, Copy)]
enum Via {
    Direct { src: SocketAddr, dst: SocketAddr },
    Relay,
}

#[derive(Debug, Clone)]
enum Event {
    Deliver {
        to: usize,
        via: Via,
        message: Message,
    },
    Candidates {
        to: usize,
        list: Vec<SocketAddr>,
    },
}

/// A peer's NAT: its public IP, mappings and pinholes.
#[derive(Debug)]
struct NatState {
    kind: Nat,
    public_ip: IpAddr,
    /// The cone mapping's public port.
    cone_port: u16,
    /// Symmetric mappings: destination to public port.
    per_destination: BTreeMap<SocketAddr, u16>,
    next_port: u16,
    /// (public port, remote) to the last outbound packet.
    pinholes: BTreeMap<(u16, SocketAddr), Timestamp>,
}

impl NatState {
    fn new(kind: Nat, public_ip: IpAddr) -> Self {
        NatState {
            kind,
            public_ip,
            cone_port: 40_000,
            per_destination: BTreeMap::new(),
            next_port: 40_001,
            pinholes: BTreeMap::new(),
        }
    }

    fn allocate(&mut self) -> u16 {
        self.next_port = self.next_port.wrapping_add(1).max(1024);
        self.next_port
    }

    /// The public source of a packet to `dst`, opening a pinhole for it.
    fn outbound(&mut self, dst: SocketAddr, now: Timestamp) -> SocketAddr {
        let port = match self.kind {
            Nat::Symmetric => match self.per_destination.get(&dst) {
                Some(&port) => port,
                None => {
                    let port = self.allocate();
                    self.per_destination.insert(dst, port);
                    port
                }
            },
            _ => self.cone_port,
        };
        self.pinholes.insert((port, dst), now);
        SocketAddr::new(self.public_ip, port)
    }

    /// The address a STUN server sees: for a symmetric NAT a mapping of its
    /// own, which nobody else can use.
    fn server_reflexive(&mut self, now: Timestamp) -> SocketAddr {
        let stun = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 250)), 3478);
        self.outbound(stun, now)
    }

    /// Whether a packet from `src` to our public `dst` gets in.
    fn admits(&self, dst: SocketAddr, src: SocketAddr, now: Timestamp) -> bool {
        if dst.ip() != self.public_ip {
            return false;
        }
        let fresh = |t: &Timestamp| now < *t + MAPPING_LIFETIME;
        self.pinholes
            .range(
                (
                    dst.port(),
                    SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
                )..,
            )
            .take_while(|((port, _), _)| *port == dst.port())
            .any(|((_, remote), t)| {
                fresh(t)
                    && match self.kind {
                        Nat::AddressRestricted => remote.ip() == src.ip(),
                        _ => *remote == src,
                    }
            })
    }

    fn rebind(&mut self) {
        self.cone_port = self.allocate();
        self.per_destination.clear();
        self.pinholes.clear();
    }
}

/// One peer: its NAT, its machine for the other, its WireGuard state.
#[derive(Debug)]
struct Peer {
    nat: NatState,
    host: SocketAddr,
    paths: PeerPaths,
    session: bool,
    /// The initiation in flight and when it was made.
    initiation: Option<(u64, Timestamp)>,
    /// The newest initiation answered (replays are ignored).
    answered: Option<u64>,
    /// Everything signalled to this peer.
    signalled: BTreeSet<SocketAddr>,
    /// Authenticated packets received per direct source.
    last_auth: BTreeMap<SocketAddr, Timestamp>,
    selected: Option<Path>,
    next_data: Timestamp,
}

struct Sim<'a> {
    seed: u64,
    config: &'a SimConfig,
    rng: ChaCha8Rng,
    now: Timestamp,
    step: u64,
    peers: [Peer; 2],
    queue: BinaryHeap<Reverse<(Timestamp, u64, usize)>>,
    events: BTreeMap<u64, Event>,
    next_event: u64,
    next_initiation: u64,
    phase: usize,
    phase_start: Timestamp,
    report: SimReport,
}

impl<'a> Sim<'a> {
    fn new(seed: u64, config: &'a SimConfig) -> Self {
        let start = Timestamp::from_secs(1_000_000);
        let peer = |kind, public: [u8; 4], host: [u8; 4]| Peer {
            nat: NatState::new(kind, IpAddr::from(public)),
            host: SocketAddr::from((host, WG_PORT)),
            paths: PeerPaths::new(config.timers, start),
            session: false,
            initiation: None,
            answered: None,
            signalled: BTreeSet::new(),
            last_auth: BTreeMap::new(),
            selected: None,
            next_data: start,
        };
        Sim {
            seed,
            config,
            rng: ChaCha8Rng::seed_from_u64(seed),
            now: start,
            step: 0,
            peers: [
                peer(config.nat_a, [198, 51, 100, 1], [10, 0, 0, 2]),
                peer(config.nat_b, [203, 0, 113, 1], [10, 0, 1, 2]),
            ],
            queue: BinaryHeap::new(),
            events: BTreeMap::new(),
            next_event: 0,
            next_initiation: 0,
            phase: 0,
            phase_start: start,
            report: SimReport {
                seed,
                phases: vec![PhaseReport::default(); config.phases.len()],
                ..SimReport::default()
            },
        }
    }

    fn fail(&self, message: String) -> SimFailure {
        SimFailure {
            seed: self.seed,
            step: self.step,
            at: self.now,
            message,
        }
    }

    fn schedule(&mut self, at: Timestamp, event: Event) {
        let id = self.next_event;
        self.next_event += 1;
        self.events.insert(id, event);
        self.queue.push(Reverse((at, id, 0)));
    }

    fn run(mut self) -> Result<SimReport, SimFailure> {
        let Some(first) = self.config.phases.first().copied() else {
            return Ok(self.report);
        };
        for side in 0..2 {
            self.signal_candidates(side);
        }
        self.enter_phase(first);
        loop {
            let phase_end = self.phase_start + self.config.phases[self.phase].length;
            let next = [
                self.queue.peek().map(|Reverse((t, _, _))| *t),
                self.peers[0].paths.poll_timeout(),
                self.peers[1].paths.poll_timeout(),
                Some(self.peers[0].next_data),
                Some(self.peers[1].next_data),
                Some(phase_end),
            ]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(phase_end)
            .max(self.now);
            self.account(next);
            self.now = next;
            self.step += 1;
            if self.now >= phase_end {
                self.phase += 1;
                let Some(phase) = self.config.phases.get(self.phase).copied() else {
                    self.report.steps = self.step;
                    return Ok(self.report);
                };
                self.phase_start = phase_end;
                self.enter_phase(phase);
            }
            while let Some(&Reverse((t, id, _))) = self.queue.peek() {
                if t > self.now {
                    break;
                }
                self.queue.pop();
                if let Some(event) = self.events.remove(&id) {
                    self.handle(event);
                }
            }
            for side in 0..2 {
                if self.peers[side].next_data <= self.now {
                    self.send_data(side);
                }
                self.send_probes(side);
            }
            self.check()?;
        }
    }

    /// Applies a phase's conditions as it begins.
    fn enter_phase(&mut self, phase: Phase) {
        if phase.rebind_a {
            self.peers[0].nat.rebind();
            let at = self.now + self.config.stun_delay;
            let list = self.candidates_of(0);
            self.schedule(
                at + self.config.signal_delay,
                Event::Candidates { to: 1, list },
            );
        }
        let now = self.now;
        for peer in &mut self.peers {
            peer.paths.handle_relay(phase.relay, now);
        }
    }

    fn candidates_of(&mut self, side: usize) -> Vec<SocketAddr> {
        let now = self.now;
        let peer = &mut self.peers[side];
        vec![peer.host, peer.nat.server_reflexive(now)]
    }

    fn signal_candidates(&mut self, side: usize) {
        let list = self.candidates_of(side);
        let at = self.now + self.config.signal_delay;
        self.schedule(at, Event::Candidates { to: 1 - side, list });
    }

    fn handle(&mut self, event: Event) {
        let now = self.now;
        match event {
            Event::Candidates { to, list } => {
                let peer = &mut self.peers[to];
                peer.signalled.extend(list.iter().copied());
                peer.paths.handle_candidates(&list, now);
            }
            Event::Deliver { to, via, message } => self.receive(to, via, message),
        }
    }

    fn receive(&mut self, to: usize, via: Via, message: Message) {
        let now = self.now;
        let phase = self.config.phases[self.phase];
        let from = match via {
            Via::Direct { src, dst } => {
                if !phase.direct_open
                    || phase.blocked_towards == Some(to)
                    || !self.peers[to].nat.admits(dst, src, now)
                {
                    self.report.direct_refused += 1;
                    return;
                }
                Path::Direct(src)
            }
            Via::Relay => {
                if !phase.relay {
                    return;
                }
                Path::Relay
            }
        };
        let peer = &mut self.peers[to];
        match message {
            Message::Initiation(id) => {
                if peer.answered.is_some_and(|last| id <= last) {
                    return;
                }
                peer.answered = Some(id);
                peer.session = true;
                peer.paths.handle_received(from, now);
                peer.paths.handle_session(true, now);
                self.send(to, from, Message::Response(id));
            }
            Message::Response(id) => {
                if peer.initiation.map(|(pending, _)| pending) != Some(id) {
                    return;
                }
                peer.initiation = None;
                peer.session = true;
                self.report.handshakes_completed[to] += 1;
                peer.paths.handle_handshake_response(from, now);
                peer.paths.handle_session(true, now);
            }
            Message::Keepalive | Message::Data => {
                if !peer.session {
                    return;
                }
                if message == Message::Data {
                    self.report.data_delivered[1 - to] += 1;
                }
                peer.paths.handle_received(from, now);
            }
        }
        if let Path::Direct(src) = from {
            let peer = &mut self.peers[to];
            let known = peer.signalled.contains(&src) || peer.last_auth.contains_key(&src);
            peer.last_auth.insert(src, now);
            if !known && peer.paths.selected() == Some(from) {
                self.report.learned_selected[to] += 1;
            }
        }
    }

    fn send(&mut self, side: usize, path: Path, message: Message) {
        let now = self.now;
        let phase = self.config.phases[self.phase];
        match path {
            Path::Direct(dst) => {
                let src = self.peers[side].nat.outbound(dst, now);
                if self.rng.gen_bool(self.config.loss) {
                    self.report.direct_lost += 1;
                    return;
                }
                let (lo, hi) = self.config.direct_delay_ms;
                let delay = self.rng.gen_range(lo..=hi.max(lo));
                let via = Via::Direct { src, dst };
                self.schedule(
                    now + Duration::from_millis(delay),
                    Event::Deliver {
                        to: 1 - side,
                        via,
                        message,
                    },
                );
            }
            Path::Relay => {
                if !phase.relay {
                    return;
                }
                let (lo, hi) = self.config.relay_delay_ms;
                let delay = self.rng.gen_range(lo..=hi.max(lo));
                self.schedule(
                    now + Duration::from_millis(delay),
                    Event::Deliver {
                        to: 1 - side,
                        via: Via::Relay,
                        message,
                    },
                );
            }
        }
    }

    fn send_probes(&mut self, side: usize) {
        let now = self.now;
        while let Some(probe) = self.peers[side].paths.poll_probe(now) {
            self.report.probes[side] += 1;
            let message = match probe.kind {
                ProbeKind::Keepalive => Message::Keepalive,
                ProbeKind::Handshake => {
                    // Resend the initiation in flight: the other side
                    // answers the first copy, over the fastest path.
                    let peer = &mut self.peers[side];
                    let id = match peer.initiation {
                        Some((id, made)) if now < made + REKEY_TIMEOUT => id,
                        _ => {
                            self.next_initiation += 1;
                            peer.initiation = Some((self.next_initiation, now));
                            self.next_initiation
                        }
                    };
                    Message::Initiation(id)
                }
            };
            self.send(side, probe.path, message);
        }
    }

    fn send_data(&mut self, side: usize) {
        let peer = &mut self.peers[side];
        peer.next_data = self.now + self.config.data_interval;
        if let (true, Some(path)) = (peer.session, peer.paths.selected()) {
            self.report.data_sent[side] += 1;
            self.send(side, path, Message::Data);
        }
    }

    /// What the current phase calls for, if anything.
    fn expected(&self) -> Option<bool> {
        let phase = self.config.phases[self.phase];
        if phase.direct_open
            && phase.blocked_towards.is_none()
            && self.config.nat_a.direct_possible(self.config.nat_b)
        {
            Some(true)
        } else if phase.relay {
            Some(false)
        } else {
            None
        }
    }

    /// Adds the time up to `next` to the phase's figures.
    fn account(&mut self, next: Timestamp) {
        let span = (next - self.now).as_millis();
        let settled_from = self.phase_start + self.config.settle;
        let settled = (next - settled_from.max(self.now)).as_millis().max(0);
        let expected = self.expected();
        let phase_start = self.phase_start;
        let now = self.now;
        let report = &mut self.report.phases[self.phase];
        report.settled_ms += settled;
        for (side, peer) in self.peers.iter().enumerate() {
            let selected = peer.paths.selected();
            let right = matches!(
                (expected, selected),
                (None, _) | (Some(true), Some(Path::Direct(_))) | (Some(false), Some(Path::Relay))
            );
            if right {
                report.right_ms[side] += settled;
                report.first_right_ms[side].get_or_insert((now - phase_start).as_millis());
            }
            match selected {
                Some(Path::Direct(_)) => report.direct_ms[side] += span,
                Some(Path::Relay) => report.relayed_ms[side] += span,
                None => report.nowhere_ms[side] += span,
            }
        }
    }

    fn check(&mut self) -> Result<(), SimFailure> {
        let relay = self.config.phases[self.phase].relay;
        let dead_after = self.config.timers.dead_after;
        for side in 0..2 {
            let peer = &self.peers[side];
            let selected = peer.paths.selected();
            let name = ["A", "B"][side];
            match selected {
                Some(Path::Relay) if !relay => {
                    return Err(self.fail(format!("{name} selected the relay while it is down")));
                }
                Some(Path::Direct(addr)) => {
                    let last = peer.last_auth.get(&addr);
                    if !peer.signalled.contains(&addr) && last.is_none() {
                        return Err(self.fail(format!("{name} selected unknown {addr}")));
                    }
                    if relay && last.is_none_or(|&t| self.now >= t + dead_after) {
                        return Err(self.fail(format!(
                            "{name} stays on {addr}, silent since {last:?}, with the relay up"
                        )));
                    }
                }
                _ => {}
            }
            if peer.selected == Some(Path::Relay) && relay && selected.is_none() {
                return Err(self.fail(format!("{name} dropped the relay for nothing")));
            }
            if selected != peer.selected {
                self.report.phases[self.phase].switches[side] += 1;
                self.peers[side].selected = selected;
            }
        }
        Ok(())
    }
}

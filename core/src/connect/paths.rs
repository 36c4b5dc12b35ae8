//! The path machine of one remote peer: direct or relayed, and when to probe.
//!
//! Rules (the timers are [`Timers`]):
//!
//! - **Punching.** New candidates are probed all at once, together with the
//!   relay when it is usable, and then every `punch_interval` for `fallback`:
//!   both peers do the same, so each one's probes open its own NAT for the
//!   other's.
//! - **Proof.** A direct path works once an authenticated WireGuard packet
//!   from the peer arrived over it, and stays alive while one arrives at
//!   least every `dead_after`. Only a working path is chosen.
//! - **Direct first.** A working direct path is always preferred to the
//!   relay, the moment it proves itself (the relay keeps carrying traffic
//!   until then: an upgrade never drops). Among working direct paths the
//!   selected one is kept while it lives (no flapping); when it dies the one
//!   that heard from the peer most recently takes over.
//! - **Fallback.** A new machine waits up to `fallback` for a direct path;
//!   after that the relay is selected whenever it is usable and no direct
//!   path works. A selected direct path that dies hands over to the relay at
//!   once, and every direct path is punched again.
//! - **Roaming.** An authenticated packet from an address the machine does
//!   not know (the peer moved, or its NAT gave it a new mapping) makes that
//!   address a path and the selected one at once: the packet is the proof.
//!   At most [`MAX_LEARNED`] such addresses are kept.
//! - **Probing.** The selected path and every working direct path are
//!   probed every `keepalive_interval` (which also holds the NAT mappings);
//!   while no direct path is selected, the others are probed every
//!   `reprobe_interval` after their punching time, so a direct path that
//!   starts working later (a firewall opened) is found.
//! - **Nowhere better.** A selected direct path that dies while the relay is
//!   not usable stays selected (sending there is the only chance) until
//!   something works.
//! - **One way.** Packets arriving over a direct path prove only that the
//!   way *to us* works. When the peer's traffic keeps arriving over the relay
//!   (two packets at least `one_way_spread` apart, within `one_way_window`)
//!   while a direct path has been selected for `one_way_after`, the peer
//!   does not hear us there (our outbound UDP is blocked, or its inbound):
//!   that path becomes *one-way*. It no longer works (the relay or another
//!   direct path takes over at once), its packets prove nothing, and its
//!   probes are handshake initiations even during a session, until a
//!   handshake response arrives over it
//!   ([`handle_handshake_response`](PeerPaths::handle_handshake_response)):
//!   the peer answered an initiation we sent there, so both ways work.
//!
//! ```
//! use meshplane_core::connect::{Path, PeerPaths, Probe, ProbeKind, Timers};
//! use meshplane_core::{Duration, Timestamp};
//!
//! let t0 = Timestamp::from_secs(100);
//! let mut peer = PeerPaths::new(Timers::default(), t0);
//! let a = "192.0.2.1:51820".parse().unwrap();
//! let b = "198.51.100.2:40000".parse().unwrap();
//! peer.handle_relay(true, t0);
//! peer.handle_candidates(&[a, b], t0);
//!
//! // Hole punching: both candidates and the relay at once, as handshakes.
//! let mut probes = Vec::new();
//! while let Some(p) = peer.poll_probe(t0) {
//!     probes.push(p);
//! }
//! assert_eq!(probes.len(), 3);
//! assert!(probes.iter().all(|p| p.kind == ProbeKind::Handshake));
//! assert_eq!(peer.selected(), None);
//!
//! // The handshake answer arrives from `b`: that path is proven and chosen.
//! peer.handle_received(Path::Direct(b), t0 + Duration::from_millis(40));
//! assert_eq!(peer.selected(), Some(Path::Direct(b)));
//!
//! // Nothing more from `b`: 6 s later the relay takes over.
//! let later = t0 + Duration::from_millis(6_040);
//! while peer.poll_probe(later).is_some() {}
//! assert_eq!(peer.selected(), Some(Path::Relay));
//! ```

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

use crate::time::{Duration, Timestamp};

/// The most remote candidates one peer keeps; the rest of a longer list is
/// ignored (a peer controls its list, so the work it causes is bounded).
pub const MAX_CANDIDATES: usize = 16;
/// The most addresses learned from traffic kept at once; the one heard from
/// longest ago goes first.
pub const MAX_LEARNED: usize = 8;

/// A way to send WireGuard packets to the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Path {
    /// UDP from the daemon's WireGuard socket to this address.
    Direct(SocketAddr),
    /// Through the relay both peers are connected to.
    Relay,
}

/// What to send as a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeKind {
    /// A handshake initiation (no session yet). The daemon may resend the
    /// initiation it has in flight rather than start a new one: the peer
    /// answers the first copy to arrive, over the fastest path.
    Handshake,
    /// A keepalive on the current session (no rekey per probe).
    Keepalive,
}

/// One packet the daemon sends to the peer now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Probe {
    pub path: Path,
    pub kind: ProbeKind,
}

/// How the peer is reached, for status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Connection {
    Direct(SocketAddr),
    Relayed,
}

/// The timers of the path machine. Every duration is at least 1 ms (smaller
/// values are raised), so a probe is never due twice at one instant.
///
/// Both peers should use the same timers: `dead_after` must exceed the
/// peer's `keepalive_interval` (by default it is three of them) or a quiet
/// but working path dies between two keepalives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Timers {
    /// Probe cadence on a direct path being punched (1 s).
    pub punch_interval: Duration,
    /// How long a new machine waits for a direct path before it selects the
    /// relay, and how long new candidates are punched (5 s).
    pub fallback: Duration,
    /// A direct path with no authenticated packet for this long is dead
    /// (6 s: three keepalives of the peer lost in a row).
    pub dead_after: Duration,
    /// Probe cadence on the selected path and on every working direct path
    /// (2 s; also holds NAT mappings open).
    pub keepalive_interval: Duration,
    /// Probe cadence on direct paths that do not work, after punching,
    /// while no direct path is selected (5 s).
    pub reprobe_interval: Duration,
    /// How long a direct path must have been selected before the peer's
    /// traffic over the relay makes it one-way (3 s): longer than the
    /// peer's keepalive interval, so what the peer sent over the relay
    /// before it moved to the direct path too does not count.
    pub one_way_after: Duration,
    /// Packets over the relay at least this far apart are the peer's
    /// traffic, not a single probe and its answer (1.5 s)...
    pub one_way_spread: Duration,
    /// ...when they fall within this window, counted from the first (5 s).
    pub one_way_window: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            punch_interval: Duration::from_secs(1),
            fallback: Duration::from_secs(5),
            dead_after: Duration::from_secs(6),
            keepalive_interval: Duration::from_secs(2),
            reprobe_interval: Duration::from_secs(5),
            one_way_after: Duration::from_secs(3),
            one_way_spread: Duration::from_millis(1_500),
            one_way_window: Duration::from_secs(5),
        }
    }
}

impl Timers {
    fn at_least_one_ms(self) -> Self {
        let clamp = |d: Duration| Duration::from_millis(d.as_millis().max(1));
        Timers {
            punch_interval: clamp(self.punch_interval),
            fallback: clamp(self.fallback),
            dead_after: clamp(self.dead_after),
            keepalive_interval: clamp(self.keepalive_interval),
            reprobe_interval: clamp(self.reprobe_interval),
            one_way_after: clamp(self.one_way_after),
            one_way_spread: clamp(self.one_way_spread),
            one_way_window: clamp(self.one_way_window),
        }
    }
}

/// One direct address of the peer.
#[derive(Debug, Clone)]
struct DirectPath {
    addr: SocketAddr,
    /// From the peer's candidates; otherwise learned from its traffic.
    signalled: bool,
    last_received: Option<Timestamp>,
    /// The peer does not hear us here: see the module documentation.
    one_way: bool,
    /// Probed every `punch_interval` until then.
    punch_until: Timestamp,
    next_probe: Timestamp,
}

impl DirectPath {
    /// Whether it works: not one-way, and an authenticated packet came
    /// over it within `dead_after`.
    fn alive(&self, now: Timestamp, dead_after: Duration) -> bool {
        !self.one_way && self.last_received.is_some_and(|t| now < t + dead_after)
    }
}

/// The path machine of one remote peer. See the module documentation for
/// the rules.
///
/// Time only moves forward: a `now` earlier than one already seen counts as
/// the latest one. Every method that takes `now` first applies what is due
/// by then (a dead path is dropped, the fallback ends), so after
/// [`poll_probe`](Self::poll_probe) at [`poll_timeout`](Self::poll_timeout)
/// [`selected`](Self::selected) is current.
#[derive(Debug, Clone)]
pub struct PeerPaths {
    timers: Timers,
    now: Timestamp,
    /// Signalled paths in the peer's order of preference, then learned ones.
    direct: Vec<DirectPath>,
    relay_available: bool,
    /// `None`: the relay is not probed now.
    relay_next_probe: Option<Timestamp>,
    session: bool,
    selected: Option<Path>,
    /// When `selected` last changed.
    selected_at: Timestamp,
    /// The first of the peer's packets over the relay in the current
    /// one-way window, while a direct path has been selected long enough.
    relay_streak: Option<Timestamp>,
    /// Until then a new machine waits for a direct path rather than relay.
    patience_until: Timestamp,
    /// The selected direct path died and was kept for want of a relay; its
    /// death has been handled (paths punched again).
    selected_dead: bool,
}

impl PeerPaths {
    /// A machine for a peer with no known path yet.
    pub fn new(timers: Timers, now: Timestamp) -> Self {
        let timers = timers.at_least_one_ms();
        PeerPaths {
            timers,
            now,
            direct: Vec::new(),
            relay_available: false,
            relay_next_probe: None,
            session: false,
            selected: None,
            selected_at: now,
            relay_streak: None,
            patience_until: now + timers.fallback,
            selected_dead: false,
        }
    }

    /// The remote's candidate addresses (replaces the previous set; order =
    /// preference). Unusable addresses (port 0, unspecified, multicast,
    /// broadcast) and duplicates are skipped, and only the first
    /// [`MAX_CANDIDATES`] are kept. A path that works is kept even when it
    /// is no longer in the list (it becomes a learned one); the others not
    /// in the list are forgotten. Every path that does not work is punched
    /// again, and the relay probed when usable and not selected.
    pub fn handle_candidates(&mut self, candidates: &[SocketAddr], now: Timestamp) {
        self.advance(now);
        let now = self.now;
        let mut old = std::mem::take(&mut self.direct);
        let mut direct = Vec::new();
        for &addr in candidates {
            if direct.len() == MAX_CANDIDATES {
                break;
            }
            if !usable(addr) || direct.iter().any(|p: &DirectPath| p.addr == addr) {
                continue;
            }
            let path = match old.iter().position(|p| p.addr == addr) {
                Some(i) => old.swap_remove(i),
                None => DirectPath {
                    addr,
                    signalled: true,
                    last_received: None,
                    one_way: false,
                    punch_until: now,
                    next_probe: now,
                },
            };
            direct.push(DirectPath {
                signalled: true,
                ..path
            });
        }
        // Working paths the peer no longer lists stay, as learned ones.
        let mut kept: Vec<DirectPath> = old
            .into_iter()
            .filter(|p| self.alive(p))
            .map(|p| DirectPath {
                signalled: false,
                ..p
            })
            .collect();
        kept.sort_by_key(|p| std::cmp::Reverse(p.last_received));
        kept.truncate(MAX_LEARNED);
        direct.extend(kept);
        self.direct = direct;
        self.punch_all();
        if self.relay_available && self.selected != Some(Path::Relay) {
            self.relay_next_probe = Some(now);
        }
        self.reselect();
    }

    /// Whether the relay path to this peer is usable (we are connected to
    /// the relay the peer uses).
    pub fn handle_relay(&mut self, available: bool, now: Timestamp) {
        self.advance(now);
        if available == self.relay_available {
            return;
        }
        self.relay_available = available;
        // A relay that comes while no direct path is in use is probed at
        // once, so a session over it is ready when it is selected.
        let on_direct = matches!(self.selected, Some(Path::Direct(_)));
        self.relay_next_probe = (available && !on_direct).then_some(self.now);
        self.reselect();
    }

    /// An *authenticated* WireGuard packet from this peer (handshake
    /// initiation that verified, or a data/keepalive packet that decrypted)
    /// arrived over `from`. A handshake response goes to
    /// [`handle_handshake_response`](Self::handle_handshake_response)
    /// instead (calling this for one is safe, but then it cannot lift the
    /// one-way mark of its path).
    pub fn handle_received(&mut self, from: Path, now: Timestamp) {
        self.receive(from, false, now);
    }

    /// An authenticated handshake response from this peer arrived over
    /// `from`. Like [`handle_received`](Self::handle_received), and more: it
    /// answers an initiation we sent on that path, so the peer hears us
    /// there and the path is no longer one-way.
    pub fn handle_handshake_response(&mut self, from: Path, now: Timestamp) {
        self.receive(from, true, now);
    }

    fn receive(&mut self, from: Path, answered: bool, now: Timestamp) {
        self.advance(now);
        let Path::Direct(addr) = from else {
            // The relay is chosen by availability and the fallback, not by
            // traffic: a packet over it proves nothing about direct paths,
            // but the peer's traffic there may say it does not hear us on
            // ours.
            self.relay_traffic();
            return;
        };
        let now = self.now;
        match self.direct.iter_mut().find(|p| p.addr == addr) {
            Some(path) => {
                if path.one_way && !answered {
                    return;
                }
                path.one_way = false;
                path.last_received = Some(now);
                self.reselect();
            }
            None => {
                self.learn(addr);
                self.select(Some(Path::Direct(addr)));
            }
        }
    }

    /// Whether a WireGuard session exists (the daemon knows: boringtun has a
    /// current session). Before a session exists probes are handshake
    /// initiations, after it keepalives (no rekey per probe). Losing the
    /// session probes the selected path at once, so a new handshake starts.
    pub fn handle_session(&mut self, established: bool, now: Timestamp) {
        self.advance(now);
        if established == self.session {
            return;
        }
        self.session = established;
        if !established {
            self.probe_selected_now();
        }
    }

    /// Next probe due at `now` (call until None). Each path gives at most
    /// one probe per instant: the selected path first, then the direct paths
    /// in order of preference, then the relay. A one-way path's probes are
    /// always handshake initiations (only an answer lifts the mark).
    pub fn poll_probe(&mut self, now: Timestamp) -> Option<Probe> {
        self.advance(now);
        let now = self.now;
        let kind = if self.session {
            ProbeKind::Keepalive
        } else {
            ProbeKind::Handshake
        };
        let selected_first = match self.selected {
            Some(Path::Direct(addr)) => self.direct.iter().position(|p| p.addr == addr),
            _ => None,
        };
        let order = selected_first
            .into_iter()
            .chain((0..self.direct.len()).filter(|&i| Some(i) != selected_first));
        for i in order {
            let path = &self.direct[i];
            if self.next_probe(path).is_some_and(|due| due <= now) {
                let interval = self.interval(path);
                let path = &mut self.direct[i];
                path.next_probe = now + interval;
                return Some(Probe {
                    path: Path::Direct(path.addr),
                    kind: if path.one_way {
                        ProbeKind::Handshake
                    } else {
                        kind
                    },
                });
            }
        }
        match self.relay_next_probe {
            Some(due) if self.relay_available && due <= now => {
                self.relay_next_probe = (self.selected == Some(Path::Relay))
                    .then_some(now + self.timers.keepalive_interval);
                Some(Probe {
                    path: Path::Relay,
                    kind,
                })
            }
            _ => None,
        }
    }

    /// When to call [`poll_probe`](Self::poll_probe) again at the latest
    /// (the next probe, the death of the selected path, the end of the
    /// fallback); `None` when nothing is pending.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let probes = self.direct.iter().filter_map(|p| self.next_probe(p));
        let relay = self.relay_next_probe.filter(|_| self.relay_available);
        let death = match self.selected {
            Some(Path::Direct(addr)) => self
                .direct
                .iter()
                .find(|p| p.addr == addr && self.alive(p))
                .and_then(|p| p.last_received)
                .map(|t| t + self.timers.dead_after),
            _ => None,
        };
        let fallback =
            (self.selected.is_none() && self.relay_available && self.now < self.patience_until)
                .then_some(self.patience_until);
        probes.chain(relay).chain(death).chain(fallback).min()
    }

    /// Where data packets to this peer go now (None: nowhere yet).
    pub fn selected(&self) -> Option<Path> {
        self.selected
    }

    /// How the peer is reached, for status (None: not yet).
    pub fn connection(&self) -> Option<Connection> {
        self.selected.map(|path| match path {
            Path::Direct(addr) => Connection::Direct(addr),
            Path::Relay => Connection::Relayed,
        })
    }

    /// Moves the clock forward and applies what became due.
    fn advance(&mut self, now: Timestamp) {
        self.now = self.now.max(now);
        self.reselect();
    }

    fn alive(&self, path: &DirectPath) -> bool {
        path.alive(self.now, self.timers.dead_after)
    }

    /// The working direct path that heard from the peer last (the earlier in
    /// preference order on a tie).
    fn best_alive(&self) -> Option<SocketAddr> {
        let mut best: Option<&DirectPath> = None;
        for path in self.direct.iter().filter(|p| self.alive(p)) {
            if best.is_none_or(|b| path.last_received > b.last_received) {
                best = Some(path);
            }
        }
        best.map(|p| p.addr)
    }

    /// Applies the selection rules to the current state.
    fn reselect(&mut self) {
        match self.selected {
            Some(Path::Direct(addr)) => {
                let path = self.direct.iter().find(|p| p.addr == addr);
                if path.is_some_and(|p| self.alive(p)) {
                    return;
                }
                if let Some(other) = self.best_alive() {
                    self.select(Some(Path::Direct(other)));
                } else if self.relay_available {
                    self.select(Some(Path::Relay));
                    self.punch_all();
                } else if path.is_none() {
                    self.select(None);
                } else if !self.selected_dead {
                    // Kept for want of anything better: look for a way again.
                    self.selected_dead = true;
                    self.punch_all();
                }
            }
            Some(Path::Relay) => {
                if let Some(addr) = self.best_alive() {
                    self.select(Some(Path::Direct(addr)));
                } else if !self.relay_available {
                    self.select(None);
                }
            }
            None => {
                if let Some(addr) = self.best_alive() {
                    self.select(Some(Path::Direct(addr)));
                } else if self.relay_available && self.now >= self.patience_until {
                    self.select(Some(Path::Relay));
                }
            }
        }
    }

    fn select(&mut self, path: Option<Path>) {
        if path == self.selected {
            return;
        }
        self.selected = path;
        self.selected_at = self.now;
        self.relay_streak = None;
        self.selected_dead = false;
        // The relay is probed for its own sake only while selected.
        self.relay_next_probe = match path {
            Some(Path::Relay) => Some(self.now),
            _ => None,
        };
        self.probe_selected_now();
    }

    /// An authenticated packet from the peer over the relay: the one-way
    /// rule of the module documentation.
    fn relay_traffic(&mut self) {
        let Some(Path::Direct(addr)) = self.selected else {
            return;
        };
        let now = self.now;
        if now < self.selected_at + self.timers.one_way_after {
            return;
        }
        let began = match self.relay_streak {
            Some(t) if now <= t + self.timers.one_way_window => t,
            _ => {
                self.relay_streak = Some(now);
                now
            }
        };
        if now < began + self.timers.one_way_spread {
            return;
        }
        if let Some(path) = self.direct.iter_mut().find(|p| p.addr == addr) {
            path.one_way = true;
            self.reselect();
        }
    }

    fn probe_selected_now(&mut self) {
        let now = self.now;
        match self.selected {
            Some(Path::Direct(addr)) => {
                if let Some(path) = self.direct.iter_mut().find(|p| p.addr == addr) {
                    path.next_probe = now;
                }
            }
            Some(Path::Relay) => self.relay_next_probe = Some(now),
            None => {}
        }
    }

    /// Punches every direct path that does not work, starting now.
    fn punch_all(&mut self) {
        let now = self.now;
        let until = now + self.timers.fallback;
        let dead_after = self.timers.dead_after;
        for path in &mut self.direct {
            if !path.alive(now, dead_after) {
                path.punch_until = until;
                path.next_probe = now;
            }
        }
    }

    /// Adds an address learned from an authenticated packet, dropping the
    /// learned path heard from longest ago beyond [`MAX_LEARNED`].
    fn learn(&mut self, addr: SocketAddr) {
        let learned = self.direct.iter().filter(|p| !p.signalled).count();
        if learned == MAX_LEARNED {
            let oldest = self
                .direct
                .iter()
                .enumerate()
                .filter(|(_, p)| !p.signalled)
                .min_by_key(|(_, p)| p.last_received)
                .map(|(i, _)| i);
            if let Some(i) = oldest {
                self.direct.remove(i);
            }
        }
        self.direct.push(DirectPath {
            addr,
            signalled: false,
            last_received: Some(self.now),
            one_way: false,
            punch_until: self.now,
            next_probe: self.now,
        });
    }

    /// When a direct path is probed next, if at all under the current
    /// selection: working paths always, paths being punched until the
    /// punching ends, the others only while no working direct path is in
    /// use.
    fn next_probe(&self, path: &DirectPath) -> Option<Timestamp> {
        let searching = !matches!(self.selected, Some(Path::Direct(_))) || self.selected_dead;
        (self.alive(path) || path.next_probe < path.punch_until || searching)
            .then_some(path.next_probe)
    }

    /// The probe cadence of a direct path in its current state.
    fn interval(&self, path: &DirectPath) -> Duration {
        if self.alive(path) {
            self.timers.keepalive_interval
        } else if self.now < path.punch_until {
            self.timers.punch_interval
        } else {
            self.timers.reprobe_interval
        }
    }
}

/// Whether a candidate address can be sent to at all.
fn usable(addr: SocketAddr) -> bool {
    let ip = addr.ip();
    let broadcast = matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
    addr.port() != 0 && !ip.is_unspecified() && !ip.is_multicast() && !broadcast
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Timestamp = Timestamp::from_secs(1_000);

    fn at(ms: i64) -> Timestamp {
        T0 + Duration::from_millis(ms)
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn a() -> SocketAddr {
        addr("192.0.2.1:51820")
    }

    fn b() -> SocketAddr {
        addr("198.51.100.2:40000")
    }

    fn c() -> SocketAddr {
        addr("203.0.113.3:41000")
    }

    fn drain(peer: &mut PeerPaths, now: Timestamp) -> Vec<Path> {
        std::iter::from_fn(|| peer.poll_probe(now))
            .map(|p| p.path)
            .collect()
    }

    /// Relay usable, candidates `a` and `b` known, all at T0.
    fn punching() -> PeerPaths {
        let mut peer = PeerPaths::new(Timers::default(), T0);
        peer.handle_relay(true, T0);
        peer.handle_candidates(&[a(), b()], T0);
        peer
    }

    #[test]
    fn new_candidates_are_punched_at_once_with_the_relay_then_every_second() {
        let mut peer = punching();
        assert_eq!(
            drain(&mut peer, T0),
            [Path::Direct(a()), Path::Direct(b()), Path::Relay]
        );
        assert_eq!(peer.poll_timeout(), Some(at(1_000)));
        assert_eq!(drain(&mut peer, at(999)), []);
        // The relay is probed once; the candidates at the punch cadence.
        assert_eq!(
            drain(&mut peer, at(1_000)),
            [Path::Direct(a()), Path::Direct(b())]
        );
        assert_eq!(drain(&mut peer, at(2_000)).len(), 2);
    }

    #[test]
    fn the_first_path_that_proves_itself_is_selected_and_kept() {
        let mut peer = punching();
        drain(&mut peer, T0);
        peer.handle_received(Path::Direct(b()), at(30));
        assert_eq!(peer.selected(), Some(Path::Direct(b())));
        assert_eq!(peer.connection(), Some(Connection::Direct(b())));
        // `a` works too, later: no switch.
        peer.handle_received(Path::Direct(a()), at(60));
        assert_eq!(peer.selected(), Some(Path::Direct(b())));
        // A packet over the relay changes nothing either.
        peer.handle_received(Path::Relay, at(70));
        assert_eq!(peer.selected(), Some(Path::Direct(b())));
    }

    #[test]
    fn without_a_direct_path_the_relay_is_selected_after_the_fallback_time() {
        let mut peer = punching();
        drain(&mut peer, T0);
        // Even a relay that answers waits for the fallback time.
        peer.handle_received(Path::Relay, at(50));
        for ms in (1_000..5_000).step_by(1_000) {
            drain(&mut peer, at(ms));
            assert_eq!(peer.selected(), None);
        }
        assert_eq!(peer.poll_timeout(), Some(at(5_000)));
        assert_eq!(
            drain(&mut peer, at(5_000)),
            [Path::Direct(a()), Path::Direct(b()), Path::Relay]
        );
        assert_eq!(peer.selected(), Some(Path::Relay));
        assert_eq!(peer.connection(), Some(Connection::Relayed));
    }

    #[test]
    fn the_fallback_counts_from_creation_not_from_the_latest_candidates() {
        let mut peer = punching();
        peer.handle_candidates(&[c()], at(4_000));
        drain(&mut peer, at(5_000));
        assert_eq!(peer.selected(), Some(Path::Relay));
    }

    #[test]
    fn a_relay_that_comes_after_the_fallback_time_is_selected_at_once() {
        let mut peer = PeerPaths::new(Timers::default(), T0);
        peer.handle_candidates(&[a()], T0);
        drain(&mut peer, at(7_000));
        assert_eq!(peer.selected(), None);
        peer.handle_relay(true, at(7_500));
        assert_eq!(peer.selected(), Some(Path::Relay));
        assert_eq!(drain(&mut peer, at(7_500)), [Path::Relay]);
    }

    #[test]
    fn while_relayed_direct_paths_are_reprobed_and_an_upgrade_is_immediate() {
        let mut peer = punching();
        drain(&mut peer, at(5_000));
        assert_eq!(peer.selected(), Some(Path::Relay));
        // Punching ended at 5 s; next probes of the candidates come 5 s
        // later, the relay gets keepalives every 2 s.
        assert_eq!(drain(&mut peer, at(7_000)), [Path::Relay]);
        assert_eq!(drain(&mut peer, at(9_000)), [Path::Relay]);
        assert_eq!(
            drain(&mut peer, at(10_000)),
            [Path::Direct(a()), Path::Direct(b())]
        );
        peer.handle_received(Path::Direct(a()), at(10_040));
        assert_eq!(peer.selected(), Some(Path::Direct(a())));
        // The new path is probed at once; the relay no longer.
        assert_eq!(drain(&mut peer, at(10_040)), [Path::Direct(a())]);
        assert_eq!(drain(&mut peer, at(12_040)), [Path::Direct(a())]);
    }

    #[test]
    fn a_dead_direct_path_hands_over_to_the_relay_at_the_dead_time() {
        let mut peer = punching();
        drain(&mut peer, T0);
        peer.handle_received(Path::Direct(a()), at(100));
        drain(&mut peer, at(100));
        drain(&mut peer, at(2_100));
        drain(&mut peer, at(4_100));
        assert_eq!(peer.poll_timeout(), Some(at(6_100)));
        drain(&mut peer, at(6_099));
        assert_eq!(peer.selected(), Some(Path::Direct(a())));
        // At the instant of death: the relay, and every path punched again.
        assert_eq!(
            drain(&mut peer, at(6_100)),
            [Path::Direct(a()), Path::Direct(b()), Path::Relay]
        );
        assert_eq!(peer.selected(), Some(Path::Relay));
        assert_eq!(
            drain(&mut peer, at(7_100)),
            [Path::Direct(a()), Path::Direct(b())]
        );
    }

    #[test]
    fn another_working_direct_path_takes_over_before_the_relay() {
        let mut peer = punching();
        peer.handle_received(Path::Direct(a()), at(100));
        peer.handle_received(Path::Direct(b()), at(200));
        peer.handle_received(Path::Direct(b()), at(3_000));
        assert_eq!(peer.selected(), Some(Path::Direct(a())));
        drain(&mut peer, at(6_100));
        assert_eq!(peer.selected(), Some(Path::Direct(b())));
    }

    #[test]
    fn without_a_relay_a_dead_path_stays_selected_and_everything_is_punched_again() {
        let mut peer = PeerPaths::new(Timers::default(), T0);
        peer.handle_candidates(&[a(), b()], T0);
        peer.handle_received(Path::Direct(a()), at(100));
        drain(&mut peer, at(100));
        drain(&mut peer, at(6_100));
        assert_eq!(peer.selected(), Some(Path::Direct(a())));
        // Punched every second for the fallback time, then every 5 s.
        for ms in [7_100, 8_100, 9_100, 10_100] {
            assert_eq!(
                drain(&mut peer, at(ms)),
                [Path::Direct(a()), Path::Direct(b())]
            );
        }
        assert_eq!(drain(&mut peer, at(11_100)).len(), 2);
        assert_eq!(drain(&mut peer, at(16_099)), []);
        assert_eq!(drain(&mut peer, at(16_100)).len(), 2);
        // The other path answers: it takes over.
        peer.handle_received(Path::Direct(b()), at(16_200));
        assert_eq!(peer.selected(), Some(Path::Direct(b())));
        // A relay arriving later does not displace a working direct path.
        peer.handle_relay(true, at(16_300));
        assert_eq!(peer.selected(), Some(Path::Direct(b())));
        assert_eq!(drain(&mut peer, at(16_300)), [Path::Direct(b())]);
    }

    #[test]
    fn a_relay_arriving_while_on_a_dead_path_takes_over() {
        let mut peer = PeerPaths::new(Timers::default(), T0);
        peer.handle_candidates(&[a()], T0);
        peer.handle_received(Path::Direct(a()), at(100));
        drain(&mut peer, at(20_000));
        assert_eq!(peer.selected(), Some(Path::Direct(a())));
        peer.handle_relay(true, at(20_000));
        assert_eq!(peer.selected(), Some(Path::Relay));
    }

    #[test]
    fn a_packet_from_a_new_address_selects_it_at_once() {
        let mut peer = punching();
        peer.handle_received(Path::Direct(a()), at(100));
        let roamed = addr("192.0.2.1:61000");
        peer.handle_received(Path::Direct(roamed), at(3_000));
        assert_eq!(peer.selected(), Some(Path::Direct(roamed)));
        assert_eq!(
            drain(&mut peer, at(3_000)).first(),
            Some(&Path::Direct(roamed))
        );
        // The old address keeps working too: no switch back.
        peer.handle_received(Path::Direct(a()), at(3_100));
        assert_eq!(peer.selected(), Some(Path::Direct(roamed)));
    }

    #[test]
    fn learned_addresses_are_bounded() {
        let mut peer = punching();
        for port in 0..(MAX_LEARNED as u16 * 3) {
            let from = SocketAddr::new(a().ip(), 20_000 + port);
            peer.handle_received(Path::Direct(from), at(i64::from(port)));
            assert_eq!(peer.selected(), Some(Path::Direct(from)));
        }
        assert_eq!(peer.direct.len(), 2 + MAX_LEARNED);
        assert!(peer.direct.iter().any(|p| p.addr == a()));
    }

    #[test]
    fn candidates_are_filtered_deduplicated_and_bounded() {
        let mut peer = PeerPaths::new(Timers::default(), T0);
        let mut list = vec![
            addr("0.0.0.0:51820"),
            addr("192.0.2.1:0"),
            addr("224.0.0.1:51820"),
            addr("255.255.255.255:51820"),
            addr("[::]:51820"),
            a(),
            a(),
        ];
        list.extend((0..40).map(|i| SocketAddr::new(b().ip(), 1_000 + i)));
        peer.handle_candidates(&list, T0);
        let paths = drain(&mut peer, T0);
        assert_eq!(paths.len(), MAX_CANDIDATES);
        assert_eq!(paths[0], Path::Direct(a()));
        assert_eq!(paths[1], Path::Direct(SocketAddr::new(b().ip(), 1_000)));
    }

    #[test]
    fn new_candidates_keep_working_paths_and_forget_the_others() {
        let mut peer = punching();
        peer.handle_received(Path::Direct(b()), at(100));
        peer.handle_candidates(&[c()], at(200));
        assert_eq!(peer.selected(), Some(Path::Direct(b())));
        let mut probed = drain(&mut peer, at(200));
        probed.sort_by_key(|p| format!("{p:?}"));
        // `a` never worked and is gone; `b` works and stays; `c` is punched.
        assert!(!probed.contains(&Path::Direct(a())));
        assert!(probed.contains(&Path::Direct(b())));
        assert!(probed.contains(&Path::Direct(c())));
        // Once `b` is dead and gone from the list, the relay takes over.
        drain(&mut peer, at(6_100));
        assert_eq!(peer.selected(), Some(Path::Relay));
        // The relay is already probed on its keepalive cadence.
        peer.handle_candidates(&[c()], at(6_200));
        assert_eq!(drain(&mut peer, at(6_200)), [Path::Direct(c())]);
    }

    #[test]
    fn unproven_paths_rest_while_a_direct_path_works() {
        let mut peer = punching();
        peer.handle_received(Path::Direct(a()), at(100));
        for ms in (100..30_000).step_by(100) {
            peer.handle_received(Path::Direct(a()), at(ms));
            for path in drain(&mut peer, at(ms)) {
                if ms >= 5_000 {
                    assert_eq!(path, Path::Direct(a()), "at {ms}");
                }
            }
        }
    }

    #[test]
    fn probes_are_handshakes_until_a_session_exists() {
        let mut peer = punching();
        assert_eq!(
            peer.poll_probe(T0).map(|p| p.kind),
            Some(ProbeKind::Handshake)
        );
        peer.handle_received(Path::Direct(a()), at(50));
        peer.handle_session(true, at(50));
        let probe = peer.poll_probe(at(50)).unwrap();
        assert_eq!(
            probe,
            Probe {
                path: Path::Direct(a()),
                kind: ProbeKind::Keepalive
            }
        );
        assert_eq!(
            peer.poll_probe(at(1_000)).map(|p| p.kind),
            Some(ProbeKind::Keepalive)
        );
        // Losing the session asks for a handshake on the selected path now.
        peer.handle_received(Path::Direct(a()), at(1_500));
        drain(&mut peer, at(1_500));
        peer.handle_session(false, at(1_600));
        assert_eq!(
            peer.poll_probe(at(1_600)),
            Some(Probe {
                path: Path::Direct(a()),
                kind: ProbeKind::Handshake
            })
        );
    }

    #[test]
    fn losing_the_relay_while_relayed_leaves_nothing_selected() {
        let mut peer = punching();
        drain(&mut peer, at(5_000));
        assert_eq!(peer.selected(), Some(Path::Relay));
        peer.handle_relay(false, at(5_500));
        assert_eq!(peer.selected(), None);
        assert!(!drain(&mut peer, at(10_000)).contains(&Path::Relay));
        // Back: selected at once, the fallback is long over.
        peer.handle_relay(true, at(11_000));
        assert_eq!(peer.selected(), Some(Path::Relay));
    }

    #[test]
    fn losing_the_relay_keeps_a_working_direct_path() {
        let mut peer = punching();
        peer.handle_received(Path::Direct(a()), at(100));
        peer.handle_relay(false, at(200));
        assert_eq!(peer.selected(), Some(Path::Direct(a())));
    }

    #[test]
    fn time_never_runs_backwards() {
        let mut peer = punching();
        peer.handle_received(Path::Direct(a()), at(100));
        drain(&mut peer, at(6_100));
        assert_eq!(peer.selected(), Some(Path::Relay));
        // A late call stamped before the death does not revive `a`.
        peer.handle_received(Path::Direct(b()), at(50));
        assert_eq!(peer.selected(), Some(Path::Direct(b())));
        assert!(peer.poll_timeout() >= Some(at(6_100)));
    }

    #[test]
    fn zero_timers_are_raised_so_probing_ends() {
        let zero = Duration::from_millis(0);
        let timers = Timers {
            punch_interval: zero,
            fallback: zero,
            dead_after: zero,
            keepalive_interval: zero,
            reprobe_interval: zero,
            one_way_after: zero,
            one_way_spread: zero,
            one_way_window: zero,
        };
        let mut peer = PeerPaths::new(timers, T0);
        peer.handle_relay(true, T0);
        peer.handle_candidates(&[a(), b()], T0);
        assert!(drain(&mut peer, T0).len() <= 3);
        assert!(peer.poll_timeout() > Some(T0));
    }

    /// `a` selected at 100 ms and kept alive by a session's packets every
    /// 500 ms up to `until`.
    fn direct_on_a(until: i64) -> PeerPaths {
        let mut peer = punching();
        peer.handle_session(true, at(100));
        for ms in (100..=until).step_by(500) {
            peer.handle_received(Path::Direct(a()), at(ms));
            drain(&mut peer, at(ms));
        }
        assert_eq!(peer.selected(), Some(Path::Direct(a())));
        peer
    }

    #[test]
    fn the_peers_traffic_over_the_relay_makes_a_settled_direct_path_one_way() {
        let mut peer = direct_on_a(3_100);
        peer.handle_received(Path::Relay, at(3_200));
        peer.handle_received(Path::Relay, at(4_000));
        assert_eq!(peer.selected(), Some(Path::Direct(a())));
        // The second packet 1.5 s after the first: the peer does not hear
        // us on `a`. The relay takes over at once.
        peer.handle_received(Path::Relay, at(4_700));
        assert_eq!(peer.selected(), Some(Path::Relay));
        assert_eq!(peer.connection(), Some(Connection::Relayed));
        // What comes over `a` proves nothing now, however often.
        for ms in (4_800..20_000).step_by(500) {
            peer.handle_received(Path::Direct(a()), at(ms));
            assert_eq!(peer.selected(), Some(Path::Relay), "at {ms}");
        }
        // Its probes are handshakes despite the session; `b` gets keepalives.
        let probes: Vec<Probe> = std::iter::from_fn(|| peer.poll_probe(at(20_000))).collect();
        assert!(probes.contains(&Probe {
            path: Path::Direct(a()),
            kind: ProbeKind::Handshake
        }));
        assert!(probes.contains(&Probe {
            path: Path::Direct(b()),
            kind: ProbeKind::Keepalive
        }));
        // A handshake answered over `a` proves both ways: direct again.
        peer.handle_handshake_response(Path::Direct(a()), at(20_050));
        assert_eq!(peer.selected(), Some(Path::Direct(a())));
        assert_eq!(
            peer.poll_probe(at(20_050)),
            Some(Probe {
                path: Path::Direct(a()),
                kind: ProbeKind::Keepalive
            })
        );
    }

    #[test]
    fn relay_traffic_soon_after_the_switch_to_direct_counts_for_nothing() {
        let mut peer = direct_on_a(3_000);
        // What the peer sent over the relay before it moved too.
        peer.handle_received(Path::Relay, at(500));
        peer.handle_received(Path::Relay, at(2_500));
        peer.handle_received(Path::Relay, at(3_099));
        assert_eq!(peer.selected(), Some(Path::Direct(a())));
        // Settled: a window starts at 3.2 s; 0.8 s later is too soon.
        peer.handle_received(Path::Relay, at(3_200));
        peer.handle_received(Path::Relay, at(4_000));
        assert_eq!(peer.selected(), Some(Path::Direct(a())));
    }

    #[test]
    fn relay_packets_further_apart_than_the_window_are_single_probes() {
        let relayed = |relay_at: &[i64]| {
            let mut peer = direct_on_a(3_100);
            for ms in (3_600..25_000).step_by(100) {
                if ms % 500 == 100 {
                    peer.handle_received(Path::Direct(a()), at(ms));
                }
                if relay_at.contains(&ms) {
                    peer.handle_received(Path::Relay, at(ms));
                }
                drain(&mut peer, at(ms));
                if peer.selected() == Some(Path::Relay) {
                    return true;
                }
            }
            false
        };
        assert!(!relayed(&[5_000, 10_100, 15_200, 20_300]));
        // Within the window they are traffic.
        assert!(relayed(&[5_000, 10_000]));
    }

    #[test]
    fn a_one_way_path_hands_over_to_another_working_direct_path() {
        let mut peer = direct_on_a(3_100);
        peer.handle_received(Path::Direct(b()), at(3_150));
        peer.handle_received(Path::Relay, at(3_200));
        peer.handle_received(Path::Relay, at(4_700));
        assert_eq!(peer.selected(), Some(Path::Direct(b())));
        // A response over the relay lifts nothing; one over `a` does, but
        // `b` works and stays.
        peer.handle_handshake_response(Path::Relay, at(4_800));
        peer.handle_received(Path::Direct(a()), at(4_900));
        assert_eq!(peer.selected(), Some(Path::Direct(b())));
        peer.handle_handshake_response(Path::Direct(a()), at(5_000));
        assert_eq!(peer.selected(), Some(Path::Direct(b())));
        // `b` dies first now: `a` works both ways and takes over.
        peer.handle_received(Path::Direct(a()), at(8_000));
        drain(&mut peer, at(9_150));
        assert_eq!(peer.selected(), Some(Path::Direct(a())));
    }

    #[test]
    fn without_a_usable_relay_a_one_way_path_stays_selected_and_is_punched() {
        let mut peer = direct_on_a(3_100);
        peer.handle_relay(false, at(3_150));
        peer.handle_received(Path::Relay, at(3_200));
        peer.handle_received(Path::Relay, at(4_700));
        // Nowhere better: `a` stays, every path punched with handshakes.
        assert_eq!(peer.selected(), Some(Path::Direct(a())));
        let probes: Vec<Probe> = std::iter::from_fn(|| peer.poll_probe(at(4_700))).collect();
        assert!(probes.contains(&Probe {
            path: Path::Direct(a()),
            kind: ProbeKind::Handshake
        }));
        assert!(probes.iter().any(|p| p.path == Path::Direct(b())));
    }

    #[test]
    fn nothing_pending_without_paths() {
        let peer = PeerPaths::new(Timers::default(), T0);
        assert_eq!(peer.poll_timeout(), None);
        assert_eq!(peer.selected(), None);
        assert_eq!(peer.connection(), None);
    }
}

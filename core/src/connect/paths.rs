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
//! - **Roaming.** An authenticated packet from an address the machine has
//!   never seen (the peer moved, or its NAT gave it a new mapping) makes that
//!   address a path and the selected one at once: the packet is the proof.
//! - **Probing.** The selected path and every working direct path are
//!   probed every `keepalive_interval` (which also holds the NAT mappings);
//!   while no direct path is selected, the others are probed every
//!   `reprobe_interval` after their punching time, so a direct path that
//!   starts working later (a firewall opened) is found.
//! - **Nowhere better.** A selected direct path that dies while the relay is
//!   not usable stays selected (sending there is the only chance) until
//!   something works.
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
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            punch_interval: Duration::from_secs(1),
            fallback: Duration::from_secs(5),
            dead_after: Duration::from_secs(6),
            keepalive_interval: Duration::from_secs(2),
            reprobe_interval: Duration::from_secs(5),
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
    /// Probed every `punch_interval` until then.
    punch_until: Timestamp,
    next_probe: Timestamp,
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
        self.relay_next_probe = available.then_some(self.now);
        self.reselect();
    }

    /// An *authenticated* WireGuard packet from this peer (handshake
    /// response/initiation that verified, or a data/keepalive packet that
    /// decrypted) arrived over `from`.
    pub fn handle_received(&mut self, from: Path, now: Timestamp) {
        self.advance(now);
        let Path::Direct(addr) = from else {
            // The relay is chosen by availability and the fallback, not by
            // traffic: a packet over it proves nothing about direct paths.
            return;
        };
        let now = self.now;
        match self.direct.iter_mut().find(|p| p.addr == addr) {
            Some(path) => {
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
    /// in order of preference, then the relay.
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
            if self.probing(path) && path.next_probe <= now {
                let interval = self.interval(path);
                let path = &mut self.direct[i];
                path.next_probe = now + interval;
                return Some(Probe {
                    path: Path::Direct(path.addr),
                    kind,
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
        let probes = self
            .direct
            .iter()
            .filter(|p| self.probing(p))
            .map(|p| p.next_probe);
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
        path.last_received
            .is_some_and(|t| self.now < t + self.timers.dead_after)
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
        self.selected_dead = false;
        // The relay is probed for its own sake only while selected.
        self.relay_next_probe = match path {
            Some(Path::Relay) => Some(self.now),
            _ => None,
        };
        self.probe_selected_now();
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
            if path.last_received.is_none_or(|t| now >= t + dead_after) {
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
            punch_until: self.now,
            next_probe: self.now,
        });
    }

    /// Whether a direct path is probed at all now.
    fn probing(&self, path: &DirectPath) -> bool {
        if self.alive(path) {
            return true;
        }
        if self.now < path.punch_until {
            return true;
        }
        // After punching, paths that do not work are tried again now and
        // then, unless a working direct path is in use.
        !matches!(self.selected, Some(Path::Direct(_))) || self.selected_dead
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

//! Properties of the path machine under any interleaving of candidates,
//! authenticated packets, relay and session changes and time: the selected
//! path is always one that may be used, a dead direct path never outlives
//! the dead time while the relay is usable, a working direct path always
//! wins, and probing is finite at every instant. The peer's traffic over the
//! relay may make a direct path one-way; the test does not redo that rule
//! (the unit tests hold it to its figures) but counts every path that could
//! be one-way as possibly not working until a handshake answered over it,
//! and checks that a settled direct path always gives way to such traffic.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use meshplane_core::connect::{
    Candidate, CandidateKind, Connection, Path, PeerPaths, ProbeKind, Timers, MAX_CANDIDATES,
    MAX_LEARNED,
};
use meshplane_core::{Duration, Timestamp};
use proptest::prelude::*;

/// Addresses 0..4 may be signalled; 4..6 only ever send (learned paths).
const POOL: usize = 6;
const SIGNALLED: usize = 4;

fn pool(i: usize) -> SocketAddr {
    SocketAddr::from(([192, 0, 2, 10 + i as u8], 51820))
}

#[derive(Debug, Clone)]
enum Op {
    Candidates(Vec<usize>),
    Relay(bool),
    ReceiveDirect(usize),
    ReceiveRelay,
    /// A handshake response over a direct path (`Some`) or the relay.
    ReceiveResponse(Option<usize>),
    Session(bool),
    Poll,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => proptest::collection::vec(0..SIGNALLED, 0..6).prop_map(Op::Candidates),
        1 => any::<bool>().prop_map(Op::Relay),
        4 => (0..POOL).prop_map(Op::ReceiveDirect),
        2 => Just(Op::ReceiveRelay),
        1 => proptest::option::of(0..POOL).prop_map(Op::ReceiveResponse),
        1 => any::<bool>().prop_map(Op::Session),
        4 => Just(Op::Poll),
    ]
}

/// Steps of (time advance in ms, operation); advances straddle every timer.
fn script() -> impl Strategy<Value = Vec<(i64, Op)>> {
    proptest::collection::vec(
        (prop_oneof![3 => 0i64..1_500, 1 => 0i64..9_000], op()),
        1..120,
    )
}

/// The defaults half the time, otherwise any timers from 1 ms to 10 s.
fn timers() -> impl Strategy<Value = Timers> {
    let ms = || (1i64..10_000).prop_map(Duration::from_millis);
    prop_oneof![
        Just(Timers::default()),
        ((ms(), ms(), ms(), ms(), ms()), (ms(), ms(), ms())).prop_map(
            |(
                (punch_interval, fallback, dead_after, keepalive_interval, reprobe_interval),
                (one_way_after, one_way_spread, one_way_window),
            )| Timers {
                punch_interval,
                fallback,
                dead_after,
                keepalive_interval,
                reprobe_interval,
                one_way_after,
                one_way_spread,
                one_way_window,
            }
        ),
    ]
}

/// What the test knows independently of the machine.
#[derive(Debug)]
struct Model {
    timers: Timers,
    /// When the machine was made (the fallback counts from then).
    start: Timestamp,
    relay: bool,
    session: bool,
    candidates: Vec<SocketAddr>,
    last_received: BTreeMap<SocketAddr, Timestamp>,
    /// Paths that may have been made one-way: every path in use or heard
    /// from when the peer's traffic came over the relay, until a handshake
    /// response over it.
    suspect: BTreeSet<SocketAddr>,
}

impl Model {
    /// Heard from within the dead time (it may still be one-way).
    fn alive(&self, addr: SocketAddr, now: Timestamp) -> bool {
        self.last_received
            .get(&addr)
            .is_some_and(|&t| now < t + self.timers.dead_after)
    }

    /// Surely working: heard from, and not possibly one-way.
    fn works(&self, addr: SocketAddr, now: Timestamp) -> bool {
        self.alive(addr, now) && !self.suspect.contains(&addr)
    }

    fn any_works(&self, now: Timestamp) -> bool {
        self.last_received.keys().any(|&a| self.works(a, now))
    }

    /// The peer's traffic came over the relay while `before` was selected.
    fn relay_traffic(&mut self, before: Option<Path>, now: Timestamp) {
        let heard: Vec<SocketAddr> = self
            .last_received
            .keys()
            .copied()
            .filter(|&a| self.alive(a, now))
            .collect();
        self.suspect.extend(heard);
        if let Some(Path::Direct(addr)) = before {
            self.suspect.insert(addr);
        }
    }
}

fn check(
    peer: &PeerPaths,
    model: &Model,
    before: Option<Path>,
    before_alive: bool,
    op: &Op,
    now: Timestamp,
) -> Result<(), TestCaseError> {
    let (start, timers) = (model.start, &model.timers);
    let selected = peer.selected();
    match selected {
        Some(Path::Relay) => {
            prop_assert!(model.relay, "relay selected while unusable");
            prop_assert!(
                !model.any_works(now),
                "relay selected over a working direct path"
            );
        }
        Some(Path::Direct(addr)) => {
            prop_assert!(
                model.candidates.contains(&addr) || model.last_received.contains_key(&addr),
                "{addr} is neither a candidate nor proven"
            );
            if model.relay {
                prop_assert!(
                    model.alive(addr, now),
                    "stayed on dead {addr} with the relay usable"
                );
            }
            if !model.alive(addr, now) {
                prop_assert!(!model.any_works(now), "on dead {addr} over a working one");
            }
        }
        None => {
            prop_assert!(
                !model.any_works(now),
                "nothing selected with a working path"
            );
            prop_assert!(
                !(model.relay && now >= start + timers.fallback),
                "relay usable after the fallback time but not selected"
            );
        }
    }
    // No flapping: a selected direct path that still worked when the
    // operation came is left only for an address that just proved itself,
    // or for the relay or another working path when the peer's traffic over
    // the relay says it does not hear us on it.
    if let Some(Path::Direct(old)) = before {
        if before_alive && selected != before {
            match op {
                Op::ReceiveDirect(i) | Op::ReceiveResponse(Some(i)) => {
                    prop_assert_eq!(selected, Some(Path::Direct(pool(*i))));
                }
                Op::ReceiveRelay | Op::ReceiveResponse(None) => match selected {
                    Some(Path::Relay) => {}
                    Some(Path::Direct(other)) => prop_assert!(model.alive(other, now)),
                    None => return Err(TestCaseError::fail(format!("left {old} for nothing"))),
                },
                _ => return Err(TestCaseError::fail(format!("left working {old} on {op:?}"))),
            }
        }
    }
    // An upgrade never drops: from the relay only to a direct path, unless
    // the relay went away.
    if before == Some(Path::Relay) && model.relay {
        prop_assert!(selected.is_some(), "relay dropped without a replacement");
    }
    prop_assert_eq!(
        peer.connection(),
        selected.map(|p| match p {
            Path::Direct(a) => Connection::Direct(a),
            Path::Relay => Connection::Relayed,
        })
    );
    // The daemon is woken in time for the death of the selected path and
    // for the end of the fallback.
    let timeout = peer.poll_timeout();
    if let (Some(Path::Direct(addr)), true) = (selected, model.relay) {
        let death = model.last_received[&addr] + timers.dead_after;
        prop_assert!(
            timeout.is_some_and(|t| t <= death),
            "{timeout:?} after death {death:?}"
        );
    }
    if selected.is_none() && model.relay {
        prop_assert!(timeout.is_some_and(|t| t <= start + timers.fallback));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_interleaving_keeps_the_invariants(script in script(), timers in timers()) {
        let start = Timestamp::from_secs(10_000);
        let mut now = start;
        let mut peer = PeerPaths::new(timers, now);
        let mut model = Model {
            timers,
            start,
            relay: false,
            session: false,
            candidates: Vec::new(),
            last_received: BTreeMap::new(),
            suspect: BTreeSet::new(),
        };
        for (dt, op) in &script {
            now = now + Duration::from_millis(*dt);
            let before = peer.selected();
            let before_alive = matches!(before, Some(Path::Direct(a)) if model.works(a, now));
            match op {
                Op::Candidates(list) => {
                    let list: Vec<SocketAddr> = list.iter().map(|&i| pool(i)).collect();
                    peer.handle_candidates(&list, now);
                    model.candidates = list;
                }
                Op::Relay(on) => {
                    peer.handle_relay(*on, now);
                    model.relay = *on;
                }
                Op::ReceiveDirect(i) => {
                    peer.handle_received(Path::Direct(pool(*i)), now);
                    model.last_received.insert(pool(*i), now);
                }
                Op::ReceiveRelay => {
                    model.relay_traffic(before, now);
                    peer.handle_received(Path::Relay, now);
                }
                Op::ReceiveResponse(None) => {
                    model.relay_traffic(before, now);
                    peer.handle_handshake_response(Path::Relay, now);
                }
                Op::ReceiveResponse(Some(i)) => {
                    peer.handle_handshake_response(Path::Direct(pool(*i)), now);
                    model.last_received.insert(pool(*i), now);
                    model.suspect.remove(&pool(*i));
                }
                Op::Session(on) => {
                    peer.handle_session(*on, now);
                    model.session = *on;
                }
                Op::Poll => {
                    let mut seen = Vec::new();
                    while let Some(probe) = peer.poll_probe(now) {
                        prop_assert!(!seen.contains(&probe.path), "{:?} probed twice at one instant", probe.path);
                        prop_assert!(seen.len() <= MAX_CANDIDATES + MAX_LEARNED);
                        // Keepalives during a session, except handshakes on
                        // a path that may be one-way.
                        let one_way = matches!(probe.path, Path::Direct(a) if model.suspect.contains(&a));
                        match probe.kind {
                            ProbeKind::Keepalive => prop_assert!(model.session),
                            ProbeKind::Handshake => prop_assert!(!model.session || one_way, "{:?}", probe),
                        }
                        match probe.path {
                            Path::Relay => prop_assert!(model.relay, "probe on an unusable relay"),
                            Path::Direct(addr) => prop_assert!(
                                model.candidates.contains(&addr) || model.last_received.contains_key(&addr),
                                "probe to unknown {addr}"
                            ),
                        }
                        seen.push(probe.path);
                    }
                    prop_assert!(peer.poll_timeout().is_none_or(|t| t > now), "a probe is still due");
                }
            }
            check(&peer, &model, before, before_alive, op, now)?;
        }
    }

    #[test]
    fn the_peers_relay_traffic_moves_a_settled_direct_path_to_the_relay(
        after in 1i64..10_000,
        spread in 1i64..3_000,
        extra in 0i64..5_000,
        settled_for in 0i64..5_000,
        session in any::<bool>(),
    ) {
        let timers = Timers {
            one_way_after: Duration::from_millis(after),
            one_way_spread: Duration::from_millis(spread),
            one_way_window: Duration::from_millis(spread + extra),
            ..Timers::default()
        };
        let start = Timestamp::from_secs(10_000);
        let at = |ms: i64| start + Duration::from_millis(ms);
        let a = pool(0);
        let mut peer = PeerPaths::new(timers, start);
        peer.handle_relay(true, start);
        peer.handle_candidates(&[a, pool(1)], start);
        peer.handle_session(session, start);
        peer.handle_received(Path::Direct(a), start);
        prop_assert_eq!(peer.selected(), Some(Path::Direct(a)));
        // Settled on `a`, heard from it often and just before each relayed
        // packet.
        let first = after + settled_for;
        for t in (0..first).step_by(500) {
            peer.handle_received(Path::Direct(a), at(t));
        }
        for t in [first, first + spread] {
            peer.handle_received(Path::Direct(a), at(t));
            prop_assert_eq!(peer.selected(), Some(Path::Direct(a)));
            peer.handle_received(Path::Relay, at(t));
        }
        prop_assert_eq!(peer.selected(), Some(Path::Relay));
        let last = first + spread;
        peer.handle_received(Path::Direct(a), at(last + 1));
        prop_assert_eq!(peer.selected(), Some(Path::Relay));
        let probe = std::iter::from_fn(|| peer.poll_probe(at(last + 1))).find(|p| p.path == Path::Direct(a));
        prop_assert_eq!(probe.map(|p| p.kind), Some(ProbeKind::Handshake));
        peer.handle_handshake_response(Path::Direct(a), at(last + 2));
        prop_assert_eq!(peer.selected(), Some(Path::Direct(a)));
    }

    #[test]
    fn candidate_text_round_trips(
        kind in prop_oneof![Just(CandidateKind::Host), Just(CandidateKind::ServerReflexive), Just(CandidateKind::Relay)],
        addr in any::<SocketAddr>(),
        related in any::<SocketAddr>(),
    ) {
        let candidate = match kind {
            CandidateKind::Host => Candidate::host(addr),
            CandidateKind::ServerReflexive => Candidate::server_reflexive(addr, related),
            CandidateKind::Relay => Candidate::relay(addr, related),
        };
        // Scope ids and flow labels of IPv6 socket addresses are not part
        // of the text.
        let plain = |a: SocketAddr| SocketAddr::new(a.ip(), a.port());
        let want = Candidate { addr: plain(addr), related: candidate.related.map(plain), ..candidate };
        prop_assert_eq!(candidate.to_string().parse::<Candidate>(), Ok(want));
    }

    #[test]
    fn candidate_parsing_never_panics(text in "(candidate:)?[0-9a-z+/ .:%-]{0,80}") {
        let _ = text.parse::<Candidate>();
    }
}

//! ICE connectivity checks (RFC 8445 §7), sans I/O: what a daemon sends
//! and answers so that a NetBird client's ICE agent (pion) accepts a direct
//! path to it.
//!
//! NetBird's clients use a direct path only once their ICE agent has
//! checked it: they send STUN binding requests to our candidates, keyed by
//! the credentials (`ufrag:pwd`) of our signal offer, and expect
//! authenticated answers; and the *controlling* side nominates the pair the
//! two use. Which side controls is NetBird's rule: the peer whose WireGuard
//! key (base64 text) sorts higher. So [`IceAgent`]:
//!
//! - answers every check for our username fragment whose MESSAGE-INTEGRITY
//!   verifies with our password (NetBird's agent then finds its pairs
//!   working, and nominates one when it controls);
//! - sends checks to the candidates of each peer it was given credentials
//!   for, every [`CHECK_INTERVAL`] at first and every [`CHECK_SLOW`] after
//!   [`CHECK_FAST_FOR`] without an answer. When we control, the first
//!   address to answer is nominated: its checks carry USE-CANDIDATE (the
//!   controlled agent selects a pair whose own check succeeded and that was
//!   nominated, RFC 8445 §7.3.1.5). The answered address alone is then
//!   checked every [`KEEPALIVE`] until it goes [`ANSWER_LOST`] without an
//!   answer, when every candidate is checked again.
//!
//! Only verified answers count ([`Received::Answered`]): they are keyed by
//! the peer's password, which travelled in sealed signal bodies, so a
//! forged datagram cannot pass for one. The daemon treats them as proof of
//! the path, as it does authenticated WireGuard packets.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand_core::{OsRng, RngCore};

use crate::stun::{self, IceRole, TransactionId};

/// Check cadence toward a peer with no answered address.
pub const CHECK_INTERVAL: Duration = Duration::from_millis(500);
/// How long the fast cadence lasts after new credentials or candidates.
pub const CHECK_FAST_FOR: Duration = Duration::from_secs(10);
/// Check cadence after that, until something answers.
pub const CHECK_SLOW: Duration = Duration::from_secs(5);
/// Check cadence on the answered address (pion's agents in NetBird give up
/// on a pair after 6 s without traffic).
pub const KEEPALIVE: Duration = Duration::from_secs(2);
/// An answered address that has not answered for this long is dropped.
pub const ANSWER_LOST: Duration = Duration::from_secs(7);
/// The most candidates checked per peer.
pub const MAX_CANDIDATES: usize = 16;
/// The most peers checked; others' credentials are ignored.
pub const MAX_PEERS: usize = 4096;
/// The most checks waiting for their answer; older ones go first.
pub const MAX_PENDING: usize = 1024;
/// How long a check waits for its answer.
const PENDING_FOR: Duration = Duration::from_secs(5);
/// PRIORITY of our checks: a peer-reflexive candidate's (type preference
/// 110, local preference 65535, component 1; RFC 8445 §5.1.2).
pub const CHECK_PRIORITY: u32 = (110 << 24) | (65_535 << 8) | (256 - 1);
/// Username fragment and password lengths, as NetBird's agents make them.
const UFRAG_LEN: usize = 16;
const PWD_LEN: usize = 32;

/// ICE credentials: a username fragment and a password, exchanged in
/// signal offers and answers as `ufrag:pwd`.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub ufrag: String,
    pub pwd: String,
}

impl Credentials {
    /// Fresh random credentials (letters only, 16 and 32 long as NetBird's).
    pub fn random() -> Self {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        let pick = |n: usize| -> String {
            (0..n)
                .map(|_| char::from(ALPHABET[(OsRng.next_u32() as usize) % ALPHABET.len()]))
                .collect()
        };
        Credentials {
            ufrag: pick(UFRAG_LEN),
            pwd: pick(PWD_LEN),
        }
    }

    /// The `ufrag:pwd` of a signal offer; `None` unless both halves are
    /// there and within RFC 8445's lengths (4–256 and 22–256 characters).
    pub fn parse(text: &str) -> Option<Self> {
        let (ufrag, pwd) = text.split_once(':')?;
        let fits = |s: &str, min: usize| (min..=256).contains(&s.len()) && !s.contains(':');
        (fits(ufrag, 4) && fits(pwd, 22)).then(|| Credentials {
            ufrag: ufrag.to_string(),
            pwd: pwd.to_string(),
        })
    }
}

impl fmt::Display for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.ufrag, self.pwd)
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The password never shows.
        write!(f, "Credentials({}:…)", self.ufrag)
    }
}

/// What a STUN datagram meant to the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received<K> {
    /// A verified check: send this answer back to its sender.
    Answer(Vec<u8>),
    /// The verified answer to one of our checks: `peer` hears us at
    /// `addr`; `new` when no address of the peer answered before (or since
    /// the last one was lost).
    Answered {
        peer: K,
        addr: SocketAddr,
        new: bool,
    },
    /// Not a check or an answer of ours (discovery's answers, a check for
    /// other credentials, a forgery): the caller may pass it on.
    NotOurs,
}

/// One peer we check.
#[derive(Debug)]
struct Remote {
    credentials: Credentials,
    controlling: bool,
    candidates: Vec<SocketAddr>,
    /// The address that answered (nominated, when we control).
    answered: Option<SocketAddr>,
    last_answer: Option<Instant>,
    /// Since when checks are sent without an answer.
    checking_since: Instant,
    next_check: Instant,
}

#[derive(Debug)]
struct Pending<K> {
    peer: K,
    to: SocketAddr,
    sent: Instant,
}

/// The checks of one daemon toward the peers that need them. See the module
/// documentation.
#[derive(Debug)]
pub struct IceAgent<K> {
    local: Credentials,
    tie_breaker: u64,
    peers: BTreeMap<K, Remote>,
    pending: HashMap<TransactionId, Pending<K>>,
}

impl<K: Ord + Clone> IceAgent<K> {
    /// An agent answering checks for `local`.
    pub fn new(local: Credentials) -> Self {
        IceAgent {
            local,
            tie_breaker: OsRng.next_u64(),
            peers: BTreeMap::new(),
            pending: HashMap::new(),
        }
    }

    /// Our credentials, for the offers.
    pub fn local(&self) -> &Credentials {
        &self.local
    }

    /// The credentials of `peer`'s offer or answer, and whether we control
    /// the checks with it. Credentials that changed (the peer started a new
    /// ICE session) drop the answered address and check afresh.
    pub fn set_remote(
        &mut self,
        peer: K,
        credentials: Credentials,
        controlling: bool,
        now: Instant,
    ) {
        let full = self.peers.len() >= MAX_PEERS;
        match self.peers.get_mut(&peer) {
            Some(remote) if remote.credentials == credentials => {
                remote.controlling = controlling;
            }
            Some(remote) => {
                remote.credentials = credentials;
                remote.controlling = controlling;
                remote.answered = None;
                remote.last_answer = None;
                remote.checking_since = now;
                remote.next_check = now;
            }
            None if full => {}
            None => {
                self.peers.insert(
                    peer,
                    Remote {
                        credentials,
                        controlling,
                        candidates: Vec::new(),
                        answered: None,
                        last_answer: None,
                        checking_since: now,
                        next_check: now,
                    },
                );
            }
        }
    }

    /// The candidate addresses of `peer` (replacing the previous ones; the
    /// first [`MAX_CANDIDATES`]). Ignored for a peer with no credentials.
    pub fn set_candidates(&mut self, peer: &K, candidates: &[SocketAddr], now: Instant) {
        let Some(remote) = self.peers.get_mut(peer) else {
            return;
        };
        let candidates: Vec<SocketAddr> = candidates.iter().copied().take(MAX_CANDIDATES).collect();
        if candidates == remote.candidates {
            return;
        }
        remote.candidates = candidates;
        if remote.answered.is_none() {
            remote.checking_since = now;
            remote.next_check = now;
        }
    }

    /// Stops checking `peer`.
    pub fn forget(&mut self, peer: &K) {
        self.peers.remove(peer);
        self.pending.retain(|_, p| p.peer != *peer);
    }

    /// Whether checks go to `peer`.
    pub fn checks(&self, peer: &K) -> bool {
        self.peers.contains_key(peer)
    }

    /// A STUN datagram from `from`.
    pub fn handle(&mut self, packet: &[u8], from: SocketAddr, now: Instant) -> Received<K> {
        if stun::parse_ice_request(packet, &self.local.ufrag, &self.local.pwd).is_some() {
            return match stun::ice_response(packet, from, &self.local.pwd) {
                Some(answer) => Received::Answer(answer),
                None => Received::NotOurs,
            };
        }
        let Some(id) = stun::ice_response_id(packet) else {
            return Received::NotOurs;
        };
        let Some((peer, to)) = self.pending.get(&id).map(|p| (p.peer.clone(), p.to)) else {
            return Received::NotOurs;
        };
        let Some(remote) = self.peers.get_mut(&peer) else {
            return Received::NotOurs;
        };
        if to != from || stun::parse_ice_response(packet, &remote.credentials.pwd).is_none() {
            return Received::NotOurs;
        }
        self.pending.remove(&id);
        let new = remote.answered.is_none();
        if new {
            remote.answered = Some(from);
            // Nominate (or confirm) it at once.
            remote.next_check = now;
        }
        if remote.answered == Some(from) {
            remote.last_answer = Some(now);
        }
        Received::Answered {
            peer,
            addr: from,
            new,
        }
    }

    /// The checks due at `now`, each to send to its address.
    pub fn poll_transmit(&mut self, now: Instant) -> Vec<(SocketAddr, Vec<u8>)> {
        self.pending
            .retain(|_, p| now.saturating_duration_since(p.sent) < PENDING_FOR);
        let mut out = Vec::new();
        for (peer, remote) in &mut self.peers {
            if remote.next_check > now {
                continue;
            }
            let lost = remote
                .last_answer
                .is_some_and(|t| now.saturating_duration_since(t) >= ANSWER_LOST);
            if lost {
                remote.answered = None;
                remote.last_answer = None;
                remote.checking_since = now;
            }
            let (targets, nominate, next) = match remote.answered {
                Some(addr) => (vec![addr], remote.controlling, KEEPALIVE),
                None => {
                    let fast =
                        now.saturating_duration_since(remote.checking_since) < CHECK_FAST_FOR;
                    (
                        remote.candidates.clone(),
                        false,
                        if fast { CHECK_INTERVAL } else { CHECK_SLOW },
                    )
                }
            };
            remote.next_check = now + next;
            let role = if remote.controlling {
                IceRole::Controlling(self.tie_breaker)
            } else {
                IceRole::Controlled(self.tie_breaker)
            };
            for to in targets {
                if self.pending.len() >= MAX_PENDING {
                    // The oldest goes: its answer is the least likely.
                    if let Some(oldest) = self
                        .pending
                        .iter()
                        .min_by_key(|(_, p)| p.sent)
                        .map(|(id, _)| *id)
                    {
                        self.pending.remove(&oldest);
                    }
                }
                let Some((id, request)) = stun::ice_request(
                    &remote.credentials.ufrag,
                    &self.local.ufrag,
                    &remote.credentials.pwd,
                    CHECK_PRIORITY,
                    role,
                    nominate,
                ) else {
                    continue;
                };
                self.pending.insert(
                    id,
                    Pending {
                        peer: peer.clone(),
                        to,
                        sent: now,
                    },
                );
                out.push((to, request));
            }
        }
        out
    }

    /// When [`poll_transmit`](Self::poll_transmit) has something next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.peers.values().map(|r| r.next_check).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "192.0.2.1:51820";
    const B: &str = "192.0.2.2:51820";

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// Two agents, `a` controlling: delivers every datagram due at `now`
    /// between them (an answer to each check), returning the checks `b`
    /// received as `(use_candidate, controlling)`.
    fn exchange(
        a: &mut IceAgent<&'static str>,
        b: &mut IceAgent<&'static str>,
        now: Instant,
    ) -> Vec<(bool, bool)> {
        let mut seen = Vec::new();
        for (to, check) in a.poll_transmit(now) {
            assert_eq!(to, addr(B));
            let parsed = stun::parse_ice_request(&check, &b.local.ufrag, &b.local.pwd).unwrap();
            seen.push((
                parsed.use_candidate,
                matches!(parsed.role, Some(IceRole::Controlling(_))),
            ));
            let Received::Answer(answer) = b.handle(&check, addr(A), now) else {
                panic!("a check goes unanswered");
            };
            assert!(matches!(
                a.handle(&answer, addr(B), now),
                Received::Answered { peer: "b", addr: a, .. } if a == addr(B)
            ));
        }
        for (to, check) in b.poll_transmit(now) {
            assert_eq!(to, addr(A));
            let Received::Answer(answer) = a.handle(&check, addr(B), now) else {
                panic!("a check goes unanswered");
            };
            assert!(matches!(
                b.handle(&answer, addr(A), now),
                Received::Answered { .. }
            ));
        }
        seen
    }

    fn pair(now: Instant) -> (IceAgent<&'static str>, IceAgent<&'static str>) {
        let mut a = IceAgent::new(Credentials::random());
        let mut b = IceAgent::new(Credentials::random());
        a.set_remote("b", b.local().clone(), true, now);
        a.set_candidates(&"b", &[addr(B)], now);
        b.set_remote("a", a.local().clone(), false, now);
        b.set_candidates(&"a", &[addr(A)], now);
        (a, b)
    }

    #[test]
    fn the_controlling_side_nominates_the_first_answered_address() {
        let t0 = Instant::now();
        let (mut a, mut b) = pair(t0);
        // First round: a plain check, answered.
        assert_eq!(exchange(&mut a, &mut b, t0), [(false, true)]);
        // Answered: the nomination goes out at once, then every keepalive.
        assert_eq!(a.poll_timeout(), Some(t0));
        assert_eq!(exchange(&mut a, &mut b, t0), [(true, true)]);
        assert_eq!(a.poll_timeout(), Some(t0 + KEEPALIVE));
        assert!(a.poll_transmit(t0 + KEEPALIVE / 2).is_empty());
        assert_eq!(exchange(&mut a, &mut b, t0 + KEEPALIVE), [(true, true)]);
    }

    #[test]
    fn an_address_that_stops_answering_is_dropped_and_all_are_checked_again() {
        let t0 = Instant::now();
        let (mut a, mut b) = pair(t0);
        exchange(&mut a, &mut b, t0);
        exchange(&mut a, &mut b, t0);
        // No answers any more.
        let mut t = t0;
        let mut nominations = 0;
        while t < t0 + ANSWER_LOST + KEEPALIVE {
            t = a.poll_timeout().unwrap();
            for (_, check) in a.poll_transmit(t) {
                let parsed = stun::parse_ice_request(&check, &b.local.ufrag, &b.local.pwd).unwrap();
                nominations += usize::from(parsed.use_candidate);
            }
        }
        assert!(nominations >= 2);
        // After the loss, plain checks at the fast cadence.
        let t = a.poll_timeout().unwrap();
        let checks = a.poll_transmit(t);
        assert_eq!(checks.len(), 1);
        let parsed = stun::parse_ice_request(&checks[0].1, &b.local.ufrag, &b.local.pwd).unwrap();
        assert!(!parsed.use_candidate);
        assert_eq!(a.poll_timeout(), Some(t + CHECK_INTERVAL));
    }

    #[test]
    fn forged_and_misdirected_answers_do_not_count() {
        let t0 = Instant::now();
        let (mut a, b) = pair(t0);
        let checks = a.poll_transmit(t0);
        let (_, check) = &checks[0];
        // An answer keyed by another password.
        let forged = stun::ice_response(check, addr(A), "another password of 22+ c").unwrap();
        assert_eq!(a.handle(&forged, addr(B), t0), Received::NotOurs);
        // The right answer from another address.
        let answer = stun::ice_response(check, addr(A), &b.local.pwd).unwrap();
        assert_eq!(
            a.handle(&answer, addr("192.0.2.3:1"), t0),
            Received::NotOurs
        );
        // A check keyed by the wrong password is not answered.
        let (_, wrong) = stun::ice_request(
            &a.local.ufrag,
            "x",
            "not the password at all",
            1,
            IceRole::Controlled(1),
            false,
        )
        .unwrap();
        assert_eq!(a.handle(&wrong, addr(B), t0), Received::NotOurs);
        // Checks slow down after the fast period without an answer.
        let later = t0 + CHECK_FAST_FOR;
        assert_eq!(a.poll_transmit(later).len(), 1);
        assert_eq!(a.poll_timeout(), Some(later + CHECK_SLOW));
    }

    #[test]
    fn new_remote_credentials_start_over() {
        let t0 = Instant::now();
        let (mut a, mut b) = pair(t0);
        exchange(&mut a, &mut b, t0);
        exchange(&mut a, &mut b, t0);
        let b2 = IceAgent::<&str>::new(Credentials::random());
        a.set_remote("b", b2.local().clone(), true, t0);
        let checks = a.poll_transmit(t0);
        assert_eq!(checks.len(), 1);
        let parsed = stun::parse_ice_request(&checks[0].1, &b2.local.ufrag, &b2.local.pwd).unwrap();
        assert!(!parsed.use_candidate, "no nomination before an answer");
        a.forget(&"b");
        assert_eq!(a.poll_timeout(), None);
    }

    #[test]
    fn credentials_parse_as_offers_carry_them() {
        let c = Credentials::random();
        assert_eq!(Credentials::parse(&c.to_string()), Some(c.clone()));
        assert!(!format!("{c:?}").contains(&c.pwd));
        for bad in [
            "",
            "ufrag",
            "abc:0123456789012345678901",
            "ufrag:short",
            "a:b:c",
        ] {
            assert_eq!(Credentials::parse(bad), None, "{bad}");
        }
    }
}

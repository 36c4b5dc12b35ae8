//! One address a peer advertises, and its ICE SDP text form.
//!
//! NetBird's clients send each of their ICE candidates in its own signal
//! `CANDIDATE` body, as the text of RFC 8445 / RFC 5245 section 15.1:
//!
//! ```text
//! <foundation> 1 udp <priority> <ip> <port> typ host|srflx|relay [raddr <ip> rport <port>] [<extension> <value>]...
//! ```
//!
//! [`Candidate`]'s `Display` writes exactly that (without the optional
//! `candidate:` prefix, as NetBird's ICE agent writes it); `FromStr` reads it
//! with or without the prefix, ignores extension attributes (NetBird adds
//! e.g. `candidate-id`), and refuses what a WireGuard peer cannot use: TCP
//! candidates, components other than 1, host names instead of IP addresses
//! (mDNS candidates), and peer-reflexive candidates (which are learned from
//! traffic, never signalled).
//!
//! ```
//! use meshplane_core::connect::{Candidate, CandidateKind};
//!
//! let c: Candidate = "candidate:2130706431 1 udp 2130706431 192.0.2.7 51820 typ host".parse().unwrap();
//! assert_eq!((c.kind, c.addr), (CandidateKind::Host, "192.0.2.7:51820".parse().unwrap()));
//!
//! let srflx = Candidate::server_reflexive("198.51.100.4:40001".parse().unwrap(), "0.0.0.0:51820".parse().unwrap());
//! let text = srflx.to_string();
//! assert!(text.ends_with(" 1 udp 1694498815 198.51.100.4 40001 typ srflx raddr 0.0.0.0 rport 51820"));
//! assert_eq!(text.parse::<Candidate>().unwrap(), srflx);
//! ```

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::error::{ErrorCode, Kind};

/// The longest candidate text accepted; real ones are under 200 bytes.
const MAX_TEXT_LEN: usize = 1024;
/// The longest foundation RFC 8445 allows.
const MAX_FOUNDATION_LEN: usize = 32;
/// RFC 8445 section 5.1.2.1: the local preference of a host with one address.
const LOCAL_PREFERENCE: u32 = 65535;
/// WireGuard uses one component, like the RTP component of a media stream.
const COMPONENT: u16 = 1;

/// How a peer learned an address of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CandidateKind {
    /// An address of one of the peer's interfaces.
    Host,
    /// The peer's address as a STUN server saw it (its NAT's public mapping).
    ServerReflexive,
    /// An address allocated on a TURN relay.
    Relay,
}

impl CandidateKind {
    /// The SDP `typ` token.
    pub fn as_str(self) -> &'static str {
        match self {
            CandidateKind::Host => "host",
            CandidateKind::ServerReflexive => "srflx",
            CandidateKind::Relay => "relay",
        }
    }

    /// RFC 8445 section 5.1.2.2's recommended type preference: a direct
    /// interface beats a NAT mapping beats a relay.
    fn type_preference(self) -> u32 {
        match self {
            CandidateKind::Host => 126,
            CandidateKind::ServerReflexive => 100,
            CandidateKind::Relay => 0,
        }
    }
}

/// One address a peer advertises to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Candidate {
    pub kind: CandidateKind,
    /// Where the other peer sends to.
    pub addr: SocketAddr,
    /// The base the address was derived from (`raddr`/`rport`): the local
    /// socket for a server-reflexive or relay candidate. NetBird peers read
    /// it (a server-reflexive candidate whose port differs from its base
    /// makes them try the base port too); `None` for host candidates.
    pub related: Option<SocketAddr>,
}

impl Candidate {
    /// A host candidate: one of the peer's interface addresses.
    pub fn host(addr: SocketAddr) -> Self {
        Candidate {
            kind: CandidateKind::Host,
            addr,
            related: None,
        }
    }

    /// A server-reflexive candidate: `addr` as STUN saw it, for the local
    /// socket `base`.
    pub fn server_reflexive(addr: SocketAddr, base: SocketAddr) -> Self {
        Candidate {
            kind: CandidateKind::ServerReflexive,
            addr,
            related: Some(base),
        }
    }

    /// A relay candidate: `addr` allocated on a TURN relay for the local
    /// socket `base`.
    pub fn relay(addr: SocketAddr, base: SocketAddr) -> Self {
        Candidate {
            kind: CandidateKind::Relay,
            addr,
            related: Some(base),
        }
    }

    /// The RFC 8445 priority: `2^24 * type preference + 2^8 * local
    /// preference + (256 - component)`. Higher is preferred; sorting remote
    /// candidates by it descending gives [`PeerPaths::handle_candidates`]
    /// its preference order.
    ///
    /// [`PeerPaths::handle_candidates`]: super::PeerPaths::handle_candidates
    pub fn priority(&self) -> u32 {
        (self.kind.type_preference() << 24) + (LOCAL_PREFERENCE << 8) + (256 - u32::from(COMPONENT))
    }

    /// A foundation: equal for candidates of the same kind from the same IP
    /// (what RFC 8445 asks of it), as a CRC-32 in decimal so it stays within
    /// the 32 ice-chars the grammar allows.
    pub fn foundation(&self) -> String {
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(self.kind.as_str().as_bytes());
        hasher.update(self.addr.ip().to_string().as_bytes());
        hasher.update(b"udp");
        hasher.finalize().to_string()
    }
}

impl fmt::Display for Candidate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {COMPONENT} udp {} {} {} typ {}",
            self.foundation(),
            self.priority(),
            self.addr.ip(),
            self.addr.port(),
            self.kind.as_str()
        )?;
        if let Some(related) = self.related {
            write!(f, " raddr {} rport {}", related.ip(), related.port())?;
        }
        Ok(())
    }
}

/// Why a candidate text was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CandidateError {
    #[error("invalid ICE candidate: longer than {MAX_TEXT_LEN} bytes")]
    TooLong,
    #[error("invalid ICE candidate: missing {0}")]
    Missing(&'static str),
    #[error("invalid ICE candidate: bad foundation {0:?}")]
    Foundation(String),
    #[error("invalid ICE candidate: component {0:?} is not 1")]
    Component(String),
    #[error("invalid ICE candidate: transport {0:?} is not udp")]
    Transport(String),
    #[error("invalid ICE candidate: bad priority {0:?}")]
    Priority(String),
    #[error("invalid ICE candidate: {0:?} is not an IP address")]
    Address(String),
    #[error("invalid ICE candidate: bad port {0:?}")]
    Port(String),
    #[error("invalid ICE candidate: expected \"typ\", found {0:?}")]
    ExpectedTyp(String),
    #[error("invalid ICE candidate: type {0:?} is not host, srflx or relay")]
    Type(String),
    #[error("invalid ICE candidate: bad related address ({0})")]
    Related(&'static str),
}

impl ErrorCode for CandidateError {
    fn code(&self) -> &'static str {
        "invalid_candidate"
    }

    fn kind(&self) -> Kind {
        Kind::InvalidArgument
    }
}

impl FromStr for Candidate {
    type Err = CandidateError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.len() > MAX_TEXT_LEN {
            return Err(CandidateError::TooLong);
        }
        let text = text.strip_prefix("candidate:").unwrap_or(text);
        let mut tokens = text.split_ascii_whitespace();
        let mut next = |what: &'static str| tokens.next().ok_or(CandidateError::Missing(what));

        let foundation = next("foundation")?;
        if foundation.len() > MAX_FOUNDATION_LEN
            || !foundation
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
        {
            return Err(CandidateError::Foundation(foundation.to_owned()));
        }
        let component = next("component")?;
        if component.parse::<u16>() != Ok(COMPONENT) {
            return Err(CandidateError::Component(component.to_owned()));
        }
        let transport = next("transport")?;
        if !transport.eq_ignore_ascii_case("udp") {
            return Err(CandidateError::Transport(transport.to_owned()));
        }
        let priority = next("priority")?;
        if priority.parse::<u32>().is_err() {
            return Err(CandidateError::Priority(priority.to_owned()));
        }
        let ip = parse_ip(next("address")?)?;
        let port = parse_port(next("port")?)?;
        let typ = next("typ")?;
        if typ != "typ" {
            return Err(CandidateError::ExpectedTyp(typ.to_owned()));
        }
        let kind = match next("candidate type")? {
            "host" => CandidateKind::Host,
            "srflx" => CandidateKind::ServerReflexive,
            "relay" => CandidateKind::Relay,
            other => return Err(CandidateError::Type(other.to_owned())),
        };
        // What follows is an optional related address, then extension
        // attributes, which carry nothing a path needs.
        let related = match tokens.next() {
            Some("raddr") => {
                let ip = tokens
                    .next()
                    .ok_or(CandidateError::Related("missing raddr value"))?;
                let ip = parse_ip(ip)
                    .map_err(|_| CandidateError::Related("raddr is not an IP address"))?;
                if tokens.next() != Some("rport") {
                    return Err(CandidateError::Related("raddr without rport"));
                }
                let port = tokens
                    .next()
                    .ok_or(CandidateError::Related("missing rport value"))?;
                let port = parse_port(port).map_err(|_| CandidateError::Related("bad rport"))?;
                Some(SocketAddr::new(ip, port))
            }
            _ => None,
        };
        Ok(Candidate {
            kind,
            addr: SocketAddr::new(ip, port),
            related,
        })
    }
}

/// An IP literal; an IPv6 zone (`fe80::1%eth0`) is dropped, as it means
/// nothing on the other peer.
fn parse_ip(text: &str) -> Result<IpAddr, CandidateError> {
    let without_zone = text.split_once('%').map_or(text, |(ip, _)| ip);
    without_zone
        .parse()
        .map_err(|_| CandidateError::Address(text.to_owned()))
}

fn parse_port(text: &str) -> Result<u16, CandidateError> {
    text.parse()
        .map_err(|_| CandidateError::Port(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn every_kind_round_trips_for_ipv4_and_ipv6() {
        let base = addr("0.0.0.0:51820");
        for c in [
            Candidate::host(addr("192.168.1.20:51820")),
            Candidate::host(addr("[2001:db8::7]:51820")),
            Candidate::server_reflexive(addr("203.0.113.9:40001"), base),
            Candidate::server_reflexive(addr("[2001:db8::9]:51820"), addr("[::]:51820")),
            Candidate::relay(addr("198.51.100.1:3478"), base),
        ] {
            let text = c.to_string();
            assert_eq!(text.parse::<Candidate>(), Ok(c), "{text}");
            assert_eq!(format!("candidate:{text}").parse::<Candidate>(), Ok(c));
        }
    }

    #[test]
    fn the_text_is_what_netbird_peers_write() {
        let host = Candidate::host(addr("192.168.1.20:51820"));
        assert_eq!(
            host.to_string(),
            format!(
                "{} 1 udp 2130706431 192.168.1.20 51820 typ host",
                host.foundation()
            )
        );
        let v6 = Candidate::host(addr("[2001:db8::7]:51820"));
        assert!(v6.to_string().contains(" 2001:db8::7 51820 typ host"));
        let relay = Candidate::relay(addr("198.51.100.1:3478"), addr("10.0.0.2:51820"));
        assert!(relay
            .to_string()
            .ends_with(" 1 udp 16777215 198.51.100.1 3478 typ relay raddr 10.0.0.2 rport 51820"));
    }

    #[test]
    fn priorities_follow_rfc_8445_type_preferences() {
        let base = addr("0.0.0.0:1");
        let host = Candidate::host(addr("10.0.0.1:1")).priority();
        let srflx = Candidate::server_reflexive(addr("10.0.0.1:1"), base).priority();
        let relay = Candidate::relay(addr("10.0.0.1:1"), base).priority();
        assert_eq!((host, srflx, relay), (2130706431, 1694498815, 16777215));
    }

    #[test]
    fn foundations_depend_on_kind_and_ip_only() {
        let a = Candidate::host(addr("10.0.0.1:1"));
        assert_eq!(
            a.foundation(),
            Candidate::host(addr("10.0.0.1:2")).foundation()
        );
        assert_ne!(
            a.foundation(),
            Candidate::host(addr("10.0.0.2:1")).foundation()
        );
        let srflx = Candidate::server_reflexive(addr("10.0.0.1:1"), addr("0.0.0.0:1"));
        assert_ne!(a.foundation(), srflx.foundation());
        assert!(a.foundation().len() <= MAX_FOUNDATION_LEN);
    }

    #[test]
    fn netbird_texts_with_extensions_zones_and_odd_case_parse() {
        let c: Candidate =
            "3470617372 1 UDP 1694498815 203.0.113.9 40001 typ srflx raddr 0.0.0.0 rport 51820 generation 0 candidate-id candidate:xyz"
                .parse()
                .unwrap();
        assert_eq!(
            c,
            Candidate::server_reflexive(addr("203.0.113.9:40001"), addr("0.0.0.0:51820"))
        );
        let c: Candidate = "candidate:1 1 udp 2130706431 fe80::1%eth0 51820 typ host network-id 1"
            .parse()
            .unwrap();
        assert_eq!(c, Candidate::host(addr("[fe80::1]:51820")));
        // A priority NetBird raised for a forwarded port is still a priority.
        let c: Candidate = "1 1 udp 1694499815 203.0.113.9 40001 typ srflx"
            .parse()
            .unwrap();
        assert_eq!(c.related, None);
    }

    #[test]
    fn bad_texts_say_what_is_wrong() {
        let cases: &[(&str, CandidateError)] = &[
            ("", CandidateError::Missing("foundation")),
            ("candidate:", CandidateError::Missing("foundation")),
            ("1 1 udp 5 10.0.0.1", CandidateError::Missing("port")),
            (
                "1 1 udp 5 10.0.0.1 9 typ",
                CandidateError::Missing("candidate type"),
            ),
            (
                "f-x 1 udp 5 10.0.0.1 9 typ host",
                CandidateError::Foundation("f-x".into()),
            ),
            (
                "1 2 udp 5 10.0.0.1 9 typ host",
                CandidateError::Component("2".into()),
            ),
            (
                "1 1 tcp 5 10.0.0.1 9 typ host tcptype passive",
                CandidateError::Transport("tcp".into()),
            ),
            (
                "1 1 udp 99999999999 10.0.0.1 9 typ host",
                CandidateError::Priority("99999999999".into()),
            ),
            (
                "1 1 udp 5 abcd.local 9 typ host",
                CandidateError::Address("abcd.local".into()),
            ),
            (
                "1 1 udp 5 10.0.0.1 65536 typ host",
                CandidateError::Port("65536".into()),
            ),
            (
                "1 1 udp 5 10.0.0.1 9 type host",
                CandidateError::ExpectedTyp("type".into()),
            ),
            (
                "1 1 udp 5 10.0.0.1 9 typ prflx",
                CandidateError::Type("prflx".into()),
            ),
            (
                "1 1 udp 5 10.0.0.1 9 typ srflx raddr",
                CandidateError::Related("missing raddr value"),
            ),
            (
                "1 1 udp 5 10.0.0.1 9 typ srflx raddr x rport 1",
                CandidateError::Related("raddr is not an IP address"),
            ),
            (
                "1 1 udp 5 10.0.0.1 9 typ srflx raddr 0.0.0.0 9",
                CandidateError::Related("raddr without rport"),
            ),
            (
                "1 1 udp 5 10.0.0.1 9 typ srflx raddr 0.0.0.0 rport",
                CandidateError::Related("missing rport value"),
            ),
            (
                "1 1 udp 5 10.0.0.1 9 typ srflx raddr 0.0.0.0 rport -1",
                CandidateError::Related("bad rport"),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(text.parse::<Candidate>().as_ref(), Err(want), "{text}");
        }
        let long = format!("1 1 udp 5 10.0.0.1 9 typ host {}", "x ".repeat(600));
        assert_eq!(long.parse::<Candidate>(), Err(CandidateError::TooLong));
        let err = "1 1 udp 5 10.0.0.1 9 typ prflx"
            .parse::<Candidate>()
            .unwrap_err();
        assert_eq!(err.code(), "invalid_candidate");
        assert_eq!(err.kind(), Kind::InvalidArgument);
        assert_eq!(
            err.to_string(),
            "invalid ICE candidate: type \"prflx\" is not host, srflx or relay"
        );
    }
}

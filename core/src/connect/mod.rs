//! Connect from anywhere: which way WireGuard packets to a remote peer go.
//!
//! A daemon reaches each remote peer either **directly** (UDP to one of the
//! peer's addresses, after punching holes through both NATs) or through the
//! **relay** both are connected to. This module decides which, per remote
//! peer, without doing any I/O:
//!
//! - [`PeerPaths`] is the path machine of one remote peer. The daemon feeds
//!   it the peer's candidate addresses (from signal), whether the relay path
//!   is usable, every *authenticated* WireGuard packet from the peer with the
//!   path it came over, and whether a WireGuard session exists. It answers
//!   with probes to send ([`PeerPaths::poll_probe`]), when to call again
//!   ([`PeerPaths::poll_timeout`]) and where data goes now
//!   ([`PeerPaths::selected`]).
//! - [`Candidate`] is one address a peer advertises, in the ICE SDP text
//!   form NetBird's clients exchange in signal `CANDIDATE` bodies.
//!
//! Only authenticated packets count as proof that a path works: a forged UDP
//! datagram cannot move a peer's traffic anywhere, because the daemon calls
//! [`PeerPaths::handle_received`] only after WireGuard verified the packet,
//! or for the answer to an ICE connectivity check whose integrity verified
//! with the peer's ICE password (NetBird's clients hold an idle path with
//! those checks rather than WireGuard keep-alives).

mod candidate;
mod paths;
#[cfg(feature = "sim")]
pub mod sim;

pub use candidate::{Candidate, CandidateError, CandidateKind};
pub use paths::{
    Connection, Path, PeerPaths, Probe, ProbeKind, Timers, MAX_CANDIDATES, MAX_LEARNED,
};

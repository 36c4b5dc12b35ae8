//! Routes on the peer: which routing peer carries each routed network
//! ([`select`]), and which forwarded packets a routing peer lets through
//! ([`forward`]).
//!
//! Both are decisions every shell must take the same way, so they live here,
//! without I/O and with time as an argument; the daemon supplies what it
//! observes (which routing peers answer, over which path, how fast) and
//! applies the result (WireGuard allowed IPs, kernel routes, forwarding).

pub mod forward;
pub mod select;

//! What the map's routes do on this host: the exit node's policy routing
//! ([`exit`], Linux) and the mark that keeps this peer's own underlay
//! sockets out of the tunnel ([`mark`]).

#[cfg(target_os = "linux")]
pub mod exit;
pub mod exit_node;
pub mod mark;

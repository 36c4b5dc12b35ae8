//! What the map's routes do on this host: the exit node ([`exit_node`],
//! applied through policy routing by [`exit`] on Linux), the addresses of
//! domain routes ([`domains`]), and the mark that keeps this peer's own
//! underlay sockets out of the tunnel ([`mark`]).

pub mod domains;
#[cfg(target_os = "linux")]
pub mod exit;
pub mod exit_node;
pub mod mark;

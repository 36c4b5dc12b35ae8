//! # meshplane (daemon crate)
//!
//! The peer side of meshplane. This crate holds the data plane: a
//! WireGuard engine ([`wg::Engine`]) that carries IP packets between this
//! peer and the peers of its network map over one UDP socket, filtered by
//! the map's firewall rules as decided by
//! [`meshplane_core::firewall`]; and two ways to attach it to the host:
//!
//! - [`kernel_tun`] (Linux, privileged): a kernel TUN interface with the
//!   mesh address, so every program on the host can use the mesh;
//! - [`netstack`] (no privileges): a userspace TCP/IP stack on smoltcp that
//!   gives this process's own services TCP connect/listen on the mesh IP,
//!   and answers ICMP echo. For the host's programs, the daemon forwards
//!   peers' connections to the host's loopback ([`forward`]), serves a
//!   SOCKS5 proxy into the mesh ([`socks`]) and pings peers ([`ping`]).
//!
//! The daemon around it ([`service::Daemon`], run by `meshplane daemon`
//! from [`cli`]) keeps its key and settings in a state directory
//! ([`state`]), logs in to the management server over sealed gRPC
//! ([`management`]), follows the Sync stream and applies every map
//! ([`link`]), finds where its peers are and how to reach them
//! ([`connect`]: candidates, signal, relay), and answers the CLI on a Unix
//! socket ([`control`]).
//! Maps arrive as protobuf messages and are used as the core's own type,
//! [`meshplane_core::netmap::PeerMap`] ([`meshplane_proto::map`] converts).
//!
//! The engine knows nothing of the management protocol: whoever receives
//! the network map turns it into a [`wg::NetworkUpdate`]
//! ([`wg::NetworkUpdate::from_map`] does it for a `PeerMap`) and hands
//! it to [`wg::Engine::update`], as often as maps arrive.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use meshplane::key::PrivateKey;
//! use meshplane::netstack::Netstack;
//! use meshplane::wg::{Engine, EngineConfig, NetworkUpdate};
//!
//! let (engine, tunnel) = Engine::start(EngineConfig {
//!     private_key: PrivateKey::generate(),
//!     listen: "0.0.0.0:51820".parse().unwrap(),
//!     mesh_ip: "100.64.0.1".parse().unwrap(),
//! })
//! .await?;
//! let stack = Netstack::start("100.64.0.1/10".parse().unwrap(), tunnel);
//! engine.update(NetworkUpdate::default()).await;
//! let listener = stack.listen(8080)?;
//! # Ok(()) }
//! ```

pub mod cli;
pub mod connect;
pub mod control;
pub mod expose;
pub mod expose_cli;
pub mod flows;
pub mod forward;
#[cfg(target_os = "linux")]
pub mod kernel_tun;
pub mod key;
pub mod link;
pub mod management;
pub mod netstack;
pub mod packet;
pub mod ping;
pub mod proxy_peer;
pub mod routing;
pub mod service;
pub mod setup_key;
pub mod socks;
pub mod state;
pub mod wg;

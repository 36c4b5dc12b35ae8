//! # meshplane (daemon crate)
//!
//! The peer side of meshplane, in folders whose dependencies run one way:
//!
//! - [`engine`]: the data plane. A WireGuard engine ([`engine::wg::Engine`])
//!   carries IP packets between this peer and the peers of its network map
//!   over one UDP socket, filtered by the map's firewall rules as decided by
//!   [`meshplane_core::firewall`], and attaches to the host in one of two
//!   ways: [`engine::kernel_tun`] (Linux, privileged), a kernel TUN
//!   interface every program on the host can use; or [`engine::netstack`]
//!   (no privileges), a userspace TCP/IP stack on smoltcp, with peers'
//!   connections forwarded to the host's loopback ([`engine::forward`]).
//!   It knows nothing of the management protocol: it is fed
//!   [`engine::wg::NetworkUpdate`]s built from the core's map types
//!   ([`engine::wg::NetworkUpdate::from_map`]).
//! - [`mgmt`]: the sealed gRPC client of the management server, setup
//!   keys, and the reporting of the engine's flow log. Maps arrive as
//!   protobuf messages and are used as the core's own type,
//!   [`meshplane_core::netmap::PeerMap`] ([`meshplane_proto::map`]
//!   converts).
//! - [`connect`]: where peers are and how to reach them (candidates, the
//!   signal exchange, the relay), on top of `engine` and `mgmt`.
//! - [`routing`]: routes and networks: which routing peer carries each
//!   routed network ([`meshplane_core::routing`] decides), applied to the
//!   engine (allowed IPs, the route filter) and to the host (kernel routes;
//!   forwarding and masquerade on a routing peer); on top of `engine`.
//! - [`link`]: one live link to the mesh, composing them: it follows the
//!   Sync stream and applies every map (through `routing`).
//! - [`dns`]: in kernel TUN mode, a resolver on the mesh IP that answers the
//!   mesh's names from the map and forwards the rest, and the host's
//!   resolver pointed at it; the link hands it every map.
//! - [`control`]: the Unix socket between the CLI and the daemon (its
//!   messages, the client side and the serving side).
//! - [`cli`]: the `meshplane` commands.
//!
//! Around them, the daemon itself ([`service::Daemon`]) keeps its key and
//! settings in a state directory ([`state`]), reports what posture checks
//! need to know about its host ([`meta`]), serves `meshplane expose`
//! sessions ([`expose`]) and a SOCKS5 proxy into the mesh in netstack mode
//! ([`socks`]), and serves Prometheus metrics read from its status
//! ([`metrics`]); [`proxy_peer`] is the reverse proxy's own peer.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use meshplane::key::PrivateKey;
//! use meshplane::engine::netstack::Netstack;
//! use meshplane::engine::wg::{Engine, EngineConfig, NetworkUpdate};
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
pub mod dns;
pub mod engine;
pub mod expose;
pub mod key;
pub mod link;
pub mod meta;
pub mod metrics;
pub mod mgmt;
pub mod proxy_peer;
pub mod routing;
pub mod service;
pub mod socks;
pub mod state;

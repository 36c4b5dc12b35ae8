//! The reverse proxy of meshplane's exposed services.
//!
//! A peer that runs `netbird expose` makes a local port reachable at
//! `https://<name>.<proxy domain>`. This crate is the HTTP side of that: it
//! terminates TLS, picks the service by the `Host` header, puts the visitor
//! through the service's PIN / password / SSO gate and then streams the
//! request to the service's target over the mesh. It knows nothing of the
//! mesh itself: the embedding daemon hands it a [`Dialer`] that opens
//! connections through the WireGuard netstack, and a watch channel carrying
//! the current table of [`Service`]s from the management server.

mod backend;
mod body;
mod dialer;
mod fetch;
mod forward;
mod gate;
mod hasher;
mod host;
mod login;
mod metrics;
mod oidc;
mod pages;
mod ratelimit;
mod server;
mod service;
mod session;
mod tls;

pub use dialer::{Conn, Dialer, TcpDialer};
pub use oidc::{OidcConfig, DEFAULT_GROUPS_CLAIM};
pub use server::{Config, Proxy, ProxyError};
pub use service::Service;
pub use session::{SessionError, COOKIE_NAME, SESSION_TTL};
pub use tls::{Tls, TlsError};

/// The path prefix the proxy answers itself on a protected service (login
/// form, SSO start and callback); never forwarded to such a backend.
pub const RESERVED_PREFIX: &str = "/.meshplane/";

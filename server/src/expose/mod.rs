//! Peer expose on the management server: `meshplane expose` publishes a
//! peer's local HTTP service through the account's reverse proxy for as
//! long as its session lives.
//!
//! - [`sessions`]: each server's table of sessions (the core's), in memory
//!   alone on SQLite, a replica of the stored ones on PostgreSQL so that
//!   every server sharing the database serves the same ones; its reaper,
//!   audit and change notices;
//! - [`rpc`]: CreateExpose / RenewExpose / StopExpose for the exposing peer,
//!   whose sender [`senders`] checks;
//! - [`watch`](mod@watch): WatchServices, the proxy's stream of the services it serves;
//! - [`domains`]: the custom domains services may live under. The REST
//!   routes listing services and managing domains are the REST API's
//!   (`/api/reverse-proxies`).
//!
//! What the proxy may reach follows from the active sessions alone (the
//! core's `expose::grants`); the Sync streams apply it through
//! [`Expose::granted`].

mod domains;
mod rpc;
mod senders;
mod sessions;
mod watch;

pub use domains::CustomDomain;
pub use rpc::{create, renew, stop};
pub use sessions::{Expose, ExposeConfig};
pub use watch::watch;

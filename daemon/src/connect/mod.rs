//! Connect from anywhere: the tasks that let peers reach each other
//! through NATs and firewalls, around the engine's per-peer path machines.
//!
//! - [`discovery`] finds this peer's candidates (host addresses and the
//!   server-reflexive address STUN reports for the engine's own socket);
//! - [`signal`] sends them to the map's peers over the management server's
//!   signal service and hands the peers' candidates to the engine;
//! - [`ice`] answers and sends the ICE connectivity checks NetBird's clients
//!   make before they use a direct path;
//! - [`relay`] keeps the relay connection that carries a peer's WireGuard
//!   datagrams when no direct path works.
//!
//! The engine ([`crate::engine::wg`]) decides per peer which path its packets take.

pub mod discovery;
pub mod ice;
pub mod relay;
pub mod signal;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::Arc;

use meshplane_core::connect::Candidate;
use meshplane_proto::ice::{Credentials, IceAgent};
use meshplane_proto::v1::RelayConfig;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tonic::codegen::http::Uri;

use crate::engine::wg::{Engine, Underlay};
use crate::key::{PrivateKey, PublicKey};
use crate::mgmt::client::{Management, Session};

/// What [`Connect::start`] needs.
#[derive(Debug)]
pub struct ConnectConfig<'a> {
    /// The management server.
    pub management: &'a Management,
    pub key: &'a PrivateKey,
    /// The logged-in session, whose connection signal shares.
    pub session: &'a Session,
    /// The relay management named at login, if any.
    pub relay: Option<RelayConfig>,
    pub engine: Arc<Engine>,
    pub underlay: Underlay,
    pub mesh_ip: Ipv4Addr,
    /// The keys of the map's peers.
    pub peers: watch::Receiver<BTreeSet<PublicKey>>,
    /// Announce no candidates: peers reach us over the relay only.
    pub relay_only: bool,
}

/// The running tasks; dropping it stops them.
#[derive(Debug)]
pub struct Connect {
    relay_url: Option<String>,
    candidates: watch::Receiver<Vec<Candidate>>,
    signal_connected: watch::Receiver<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Connect {
    pub fn start(config: ConnectConfig<'_>) -> Connect {
        let Underlay {
            socket,
            stun,
            relay_out,
            relay_in,
            path_lost,
        } = config.underlay;
        let wg_port = socket.local_addr().map_or(0, |a| a.port());
        let mut tasks = Vec::new();
        let (candidates, announced) = watch::channel(Vec::new());
        // One set of ICE credentials for the daemon's run: NetBird's
        // clients keep an ICE session with the credentials of the first
        // offer, and later offers without a session id do not replace them.
        let credentials = Credentials::random();
        let mut ice = None;
        if config.relay_only {
            // No discovery and no checks: nothing to announce, ever.
            drop(stun);
        } else {
            let (to_discovery, discovery_stun) = mpsc::channel(DISCOVERY_QUEUE);
            let (commands, ice_commands) = mpsc::channel(ice::COMMAND_QUEUE);
            ice = Some(commands);
            let checks = ice::Ice {
                socket: Arc::clone(&socket),
                stun,
                discovery: to_discovery,
                commands: ice_commands,
                agent: IceAgent::new(credentials.clone()),
                engine: Arc::clone(&config.engine),
            };
            tasks.push(tokio::spawn(checks.run()));
            let discovery = discovery::Discovery {
                socket,
                stun: discovery_stun,
                path_lost,
                server: stun_server(config.management.url()),
                mesh_ip: config.mesh_ip,
                candidates,
            };
            tasks.push(tokio::spawn(discovery.run()));
        }
        let relay = config
            .relay
            .and_then(|r| Some((r.urls.first()?.clone(), r)));
        let relay_url = relay.as_ref().map(|(url, _)| url.clone());
        if let Some((url, relay_config)) = relay {
            let relay = relay::Relay {
                url,
                config: relay_config,
                management: config.management.clone(),
                key: config.key.clone(),
                engine: Arc::clone(&config.engine),
                outbound: relay_out,
                inbound: relay_in,
                retry: None,
                network: announced.clone(),
            };
            tasks.push(tokio::spawn(relay.run()));
        }
        let (connected, signal_connected) = watch::channel(false);
        let signal = signal::Signal {
            client: config.session.signal_client(),
            engine: config.engine,
            candidates: announced.clone(),
            peers: config.peers,
            relay_url: relay_url.clone(),
            wg_port,
            connected,
            local: config.key.public_key(),
            credentials,
            ice,
        };
        tasks.push(tokio::spawn(signal.run()));
        Connect {
            relay_url,
            candidates: announced,
            signal_connected,
            tasks,
        }
    }

    /// The relay this peer connects to.
    pub fn relay_url(&self) -> Option<&str> {
        self.relay_url.as_deref()
    }

    /// Whether the signal stream is open now.
    pub fn signal_connected(&self) -> bool {
        *self.signal_connected.borrow()
    }

    /// The candidates announced now.
    pub fn candidates(&self) -> Vec<Candidate> {
        self.candidates.borrow().clone()
    }
}

impl Drop for Connect {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// STUN datagrams waiting for discovery (it reads a few a minute).
const DISCOVERY_QUEUE: usize = 16;

/// The STUN server: the management server's host, at its port (UDP).
fn stun_server(url: &str) -> String {
    let uri = url.parse::<Uri>().ok();
    let host = uri
        .as_ref()
        .and_then(Uri::host)
        .unwrap_or("127.0.0.1")
        .to_string();
    let default_port = match uri.as_ref().and_then(Uri::scheme_str) {
        Some("https") => 443,
        _ => 80,
    };
    let port = uri.and_then(|u| u.port_u16()).unwrap_or(default_port);
    format!("{host}:{port}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stun_goes_to_the_management_host_and_port() {
        assert_eq!(stun_server("http://127.0.0.1:33073"), "127.0.0.1:33073");
        assert_eq!(
            stun_server("https://mesh.example.com"),
            "mesh.example.com:443"
        );
        assert_eq!(stun_server("http://[::1]:8080"), "[::1]:8080");
    }
}

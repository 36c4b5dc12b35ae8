//! The ICE task: answers and sends the connectivity checks NetBird's
//! clients need before they use a direct path to this peer
//! ([`meshplane_proto::ice`] decides what; this task does the I/O).
//!
//! Every STUN datagram of the engine's socket comes here first. Checks for
//! our credentials are answered from the same socket (NetBird's agents
//! check the address WireGuard will use); answers to our own checks are
//! counted; the rest (the server's answers to discovery) goes on to
//! [`super::discovery`]. The signal task names the peers to check (the
//! NetBird clients among the map's peers, with the credentials of their
//! offers and their candidates) through [`Command`]s.

use std::net::SocketAddr;
use std::sync::Arc;

use meshplane_proto::ice::{Credentials, IceAgent, Received};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::engine::wg::Engine;
use crate::key::PublicKey;

/// Commands queued for the task; past this many, a command is dropped (the
/// peer's next offer or candidate repeats it).
pub const COMMAND_QUEUE: usize = 1024;

/// What the signal task tells the ICE task.
#[derive(Debug)]
pub enum Command {
    /// A NetBird peer's offer or answer: its credentials, and whether we
    /// control the checks (NetBird's rule: the higher key, as base64 text).
    Remote {
        peer: PublicKey,
        credentials: Credentials,
        controlling: bool,
    },
    /// The peer's candidate addresses so far.
    Candidates {
        peer: PublicKey,
        addrs: Vec<SocketAddr>,
    },
    /// The peer left the map.
    Forget(PublicKey),
}

/// Whether this peer controls the checks with `remote`: NetBird's rule,
/// which both sides apply alike.
pub fn controlling(local: &PublicKey, remote: &PublicKey) -> bool {
    local.to_string() > remote.to_string()
}

/// What the ICE task needs.
#[derive(Debug)]
pub struct Ice {
    /// The engine's socket, shared with WireGuard.
    pub socket: Arc<UdpSocket>,
    /// Every STUN datagram that arrived on it.
    pub stun: mpsc::Receiver<(SocketAddr, Vec<u8>)>,
    /// Where the datagrams that are not ICE go (discovery).
    pub discovery: mpsc::Sender<(SocketAddr, Vec<u8>)>,
    pub commands: mpsc::Receiver<Command>,
    pub agent: IceAgent<PublicKey>,
    /// Told of every newly answered address ([`Engine::checked`]).
    pub engine: Arc<Engine>,
}

impl Ice {
    /// Runs until the engine's STUN channel closes.
    pub async fn run(mut self) {
        loop {
            let wake = self.agent.poll_timeout();
            tokio::select! {
                received = self.stun.recv() => {
                    let Some((from, packet)) = received else {
                        return;
                    };
                    self.on_stun(from, packet).await;
                }
                Some(command) = self.commands.recv() => self.on_command(command),
                () = sleep_until(wake) => {}
            }
            for (to, check) in self.agent.poll_transmit(Instant::now().into_std()) {
                if let Err(e) = self.socket.send_to(&check, to).await {
                    tracing::debug!("ice check to {to}: {e}");
                }
            }
        }
    }

    async fn on_stun(&mut self, from: SocketAddr, packet: Vec<u8>) {
        match self.agent.handle(&packet, from, Instant::now().into_std()) {
            Received::Answer(answer) => {
                if let Err(e) = self.socket.send_to(&answer, from).await {
                    tracing::debug!("ice answer to {from}: {e}");
                }
            }
            Received::Answered { peer, addr, new } => {
                tracing::debug!("ice: {peer} answers at {addr}");
                let _ = self.engine.checked(peer, addr, new).await;
            }
            Received::NotOurs => {
                // Discovery reads a few a minute; a flood is dropped.
                let _ = self.discovery.try_send((from, packet));
            }
        }
    }

    fn on_command(&mut self, command: Command) {
        let now = Instant::now().into_std();
        match command {
            Command::Remote {
                peer,
                credentials,
                controlling,
            } => {
                tracing::debug!(
                    "ice: checks with {peer} ({})",
                    if controlling {
                        "controlling"
                    } else {
                        "controlled"
                    }
                );
                self.agent.set_remote(peer, credentials, controlling, now);
            }
            Command::Candidates { peer, mut addrs } => {
                // Only addresses the socket can reach: NetBird's clients
                // also announce IPv6 ones, which an IPv4 socket cannot.
                let v6 = self.socket.local_addr().is_ok_and(|a| a.is_ipv6());
                addrs.retain(|a| v6 || a.is_ipv4());
                self.agent.set_candidates(&peer, &addrs, now);
            }
            Command::Forget(peer) => self.agent.forget(&peer),
        }
    }
}

async fn sleep_until(wake: Option<std::time::Instant>) {
    match wake {
        Some(at) => tokio::time::sleep_until(Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_higher_key_as_text_controls() {
        let a: PublicKey = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
            .parse()
            .unwrap();
        let b: PublicKey = "BAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
            .parse()
            .unwrap();
        // Text order, not byte order: '+' and '/' sort before letters.
        let plus: PublicKey = "+AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
            .parse()
            .unwrap();
        assert!(controlling(&b, &a));
        assert!(!controlling(&a, &b));
        assert!(controlling(&a, &plus));
        assert!(plus.0 > a.0, "byte order would say otherwise");
    }
}

//! Candidate discovery: the addresses other peers may reach this peer's
//! WireGuard socket at.
//!
//! - **host**: every IPv4 address of this host's interfaces that are up,
//!   except loopback and the mesh address itself (the socket listens on all
//!   of them, at one port);
//! - **server-reflexive**: the address the management server sees the
//!   socket's STUN binding requests come from, i.e. the public side of the
//!   NAT mapping WireGuard's own packets use. The requests leave from the
//!   engine's socket ([`Underlay::socket`]) to the management host at the
//!   management port (UDP), and the engine hands the answers back
//!   ([`Underlay::stun`]).
//!
//! Discovery runs again every [`REDISCOVER`] (every [`RETRY`] while STUN
//! gets no answer, e.g. while UDP is blocked), as soon as the host's
//! addresses change (the network changed: a NAT mapping may be new too),
//! and when a peer's direct path died (perhaps our NAT changed its public
//! address).
//!
//! [`Underlay::socket`]: crate::engine::wg::Underlay::socket
//! [`Underlay::stun`]: crate::engine::wg::Underlay::stun

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use meshplane_core::connect::Candidate;
use meshplane_proto::stun;
use nix::ifaddrs::getifaddrs;
use nix::net::if_::InterfaceFlags;
use tokio::net::{lookup_host, UdpSocket};
use tokio::sync::{mpsc, watch, Notify};
use tokio::time::{sleep, timeout, Instant};

/// How often the server-reflexive address is asked for again.
pub const REDISCOVER: Duration = Duration::from_secs(25);
/// How soon discovery runs again when STUN got no answer.
pub const RETRY: Duration = Duration::from_secs(5);
/// How often the host's addresses are looked at for a change.
const WATCH_ADDRESSES: Duration = Duration::from_secs(2);
/// How long one STUN request waits for its answer.
const STUN_WAIT: Duration = Duration::from_millis(800);
/// Requests per discovery round (UDP loses packets).
const STUN_TRIES: usize = 3;
/// At most this many host candidates are announced.
const MAX_HOST: usize = 8;

/// What discovery needs.
#[derive(Debug)]
pub struct Discovery {
    /// The engine's socket, shared with WireGuard.
    pub socket: Arc<UdpSocket>,
    /// STUN messages that arrived on it.
    pub stun: mpsc::Receiver<(SocketAddr, Vec<u8>)>,
    /// Rung by the engine when a direct path died.
    pub path_lost: Arc<Notify>,
    /// The STUN server: `host:port` of the management server.
    pub server: String,
    /// This peer's mesh address, never a candidate.
    pub mesh_ip: Ipv4Addr,
    /// Where the current candidates are published.
    pub candidates: watch::Sender<Vec<Candidate>>,
}

impl Discovery {
    /// Runs until the candidates' receivers are all gone.
    pub async fn run(mut self) {
        let Ok(local) = self.socket.local_addr() else {
            return;
        };
        let port = local.port();
        loop {
            let hosts = host_addresses(self.mesh_ip);
            let reflexive = self.reflexive().await;
            let found = candidates(&hosts, reflexive, port);
            self.candidates.send_if_modified(|current| {
                let changed = *current != found;
                if changed {
                    tracing::info!(
                        "candidates: {}",
                        found
                            .iter()
                            .map(|c| c.addr.to_string())
                            .collect::<Vec<_>>()
                            .join(" ")
                    );
                    *current = found;
                }
                changed
            });
            if self.candidates.is_closed() {
                return;
            }
            // Until the next round: the periodic one, or a network change.
            let next = Instant::now()
                + if reflexive.is_some() {
                    REDISCOVER
                } else {
                    RETRY
                };
            while Instant::now() < next {
                tokio::select! {
                    () = sleep(WATCH_ADDRESSES.min(next - Instant::now())) => {}
                    () = self.path_lost.notified() => break,
                }
                if host_addresses(self.mesh_ip) != hosts {
                    break;
                }
            }
        }
    }

    /// Asks the server which address our socket's requests come from.
    async fn reflexive(&mut self) -> Option<SocketAddr> {
        let server = match lookup_host(&self.server).await {
            Ok(mut addrs) => addrs.find(SocketAddr::is_ipv4)?,
            Err(e) => {
                tracing::debug!("stun server {}: {e}", self.server);
                return None;
            }
        };
        // Answers to earlier rounds are stale.
        while self.stun.try_recv().is_ok() {}
        for _ in 0..STUN_TRIES {
            let (id, request) = stun::binding_request();
            if let Err(e) = self.socket.send_to(&request, server).await {
                tracing::debug!("stun request to {server}: {e}");
                return None;
            }
            let deadline = Instant::now() + STUN_WAIT;
            while let Ok(Some((from, answer))) = timeout(
                deadline.saturating_duration_since(Instant::now()),
                self.stun.recv(),
            )
            .await
            {
                if from != server {
                    continue;
                }
                if let Some((got, mapped)) = stun::parse_binding_response(&answer) {
                    if got == id {
                        return Some(mapped);
                    }
                }
            }
        }
        tracing::debug!("no stun answer from {server}");
        None
    }
}

/// The candidates to announce: host addresses at our port, then the
/// server-reflexive address unless it is one of them (no NAT in between).
fn candidates(
    hosts: &BTreeSet<Ipv4Addr>,
    reflexive: Option<SocketAddr>,
    port: u16,
) -> Vec<Candidate> {
    let base = |ip: Ipv4Addr| SocketAddr::from((ip, port));
    let mut all: Vec<Candidate> = hosts
        .iter()
        .take(MAX_HOST)
        .map(|ip| Candidate::host(base(*ip)))
        .collect();
    if let Some(mapped) = reflexive {
        if !all.iter().any(|c| c.addr == mapped) {
            let local = match mapped.ip() {
                IpAddr::V4(ip) if hosts.contains(&ip) => base(ip),
                _ => hosts
                    .iter()
                    .next()
                    .map_or(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)), |ip| {
                        base(*ip)
                    }),
            };
            all.push(Candidate::server_reflexive(mapped, local));
        }
    }
    all
}

/// This host's IPv4 addresses that other hosts may reach: interfaces that
/// are up, not loopback, not the mesh address.
fn host_addresses(mesh_ip: Ipv4Addr) -> BTreeSet<Ipv4Addr> {
    let Ok(interfaces) = getifaddrs() else {
        return BTreeSet::new();
    };
    interfaces
        .filter(|i| {
            i.flags.contains(InterfaceFlags::IFF_UP)
                && !i.flags.contains(InterfaceFlags::IFF_LOOPBACK)
        })
        .filter_map(|i| i.address?.as_sockaddr_in().map(|a| a.ip()))
        .filter(|ip| *ip != mesh_ip && !ip.is_loopback() && !ip.is_unspecified())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshplane_core::connect::CandidateKind;

    #[test]
    fn reflexive_address_follows_the_host_addresses_unless_it_is_one() {
        let hosts: BTreeSet<Ipv4Addr> = [Ipv4Addr::new(192, 168, 1, 5)].into();
        let nat: SocketAddr = "203.0.113.7:40000".parse().unwrap();
        let found = candidates(&hosts, Some(nat), 51820);
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].kind, CandidateKind::Host);
        assert_eq!(found[0].addr, "192.168.1.5:51820".parse().unwrap());
        assert_eq!(found[1].kind, CandidateKind::ServerReflexive);
        assert_eq!(found[1].addr, nat);
        // No NAT: the server saw a host address, announced once.
        let direct: SocketAddr = "192.168.1.5:51820".parse().unwrap();
        assert_eq!(candidates(&hosts, Some(direct), 51820).len(), 1);
    }

    #[test]
    fn host_addresses_leave_out_loopback_and_the_mesh_ip() {
        let all = host_addresses(Ipv4Addr::new(100, 64, 0, 1));
        assert!(all.iter().all(|ip| !ip.is_loopback()));
        assert!(!all.contains(&Ipv4Addr::new(100, 64, 0, 1)));
    }
}

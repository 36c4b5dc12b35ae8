//! The userspace network stack (`--netstack`): smoltcp on top of the
//! engine's [`Tunnel`], for hosts where the daemon may not create a TUN
//! interface.
//!
//! It gives the daemon's own services TCP on the mesh IP —
//! [`Netstack::connect`] and [`Netstack::listen`] hand out [`TcpStream`]s
//! that implement tokio's `AsyncRead`/`AsyncWrite` — answers ICMP echo
//! requests to its address, so peers can ping it, and pings peers
//! ([`Dialer::ping`]).
//!
//! smoltcp has no wildcard listen, so connections to ports nobody listens
//! on are offered to whoever took [`Netstack::unclaimed`] (the daemon's
//! forwarder to the host's loopback): the driver holds such a SYN and
//! hands out an [`Unclaimed`] that completes the handshake or resets it.
//!
//! One driver task owns the interface's clock: it feeds packets from the
//! tunnel into smoltcp, sends what smoltcp emits, and sleeps until smoltcp's
//! next timer, a new packet, or a stream's wake-up. Streams lock the shared
//! state only to copy bytes in or out of their socket buffers.

mod device;
mod icmp;
mod tcp;
mod unclaimed;

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use ipnet::Ipv4Net;
use rand_core::{OsRng, RngCore};
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::socket::tcp::{Socket as TcpSocket, State as TcpState};
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr};
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;

use crate::engine::wg::Tunnel;
use device::Queues;
pub use icmp::Echo;
pub use tcp::{TcpListener, TcpStream};
pub use unclaimed::{Unclaimed, UnclaimedConnections};

/// How long the driver sleeps when smoltcp has no timer pending.
const IDLE: Duration = Duration::from_secs(1);
/// Inbound packets taken from the tunnel per poll.
const BATCH: usize = 256;
/// Local ports for outgoing connections.
const EPHEMERAL: std::ops::RangeInclusive<u16> = 49_152..=65_535;

/// State shared by the driver and every stream.
#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Wakes the driver: a stream queued data or freed receive window.
    wake: Notify,
    epoch: std::time::Instant,
}

struct State {
    iface: Interface,
    sockets: SocketSet<'static>,
    device: Queues,
    address: Ipv4Addr,
    /// The mesh: every address the stack can reach, besides `routed`.
    network: Ipv4Net,
    /// The prefixes of the routes this peer uses ([`RoutedPrefixes`]).
    routed: Vec<Ipv4Net>,
    next_port: u16,
    /// Sockets whose stream is gone, removed once they have closed.
    closing: Vec<SocketHandle>,
    /// How many [`TcpListener`]s listen on each port.
    listened: HashMap<u16, usize>,
    /// Where SYNs to ports nobody listens on go (see [`unclaimed`]).
    unclaimed: Option<mpsc::Sender<Unclaimed>>,
    /// Those SYNs, by (remote end, local port), until accepted or refused.
    held: HashMap<(SocketAddrV4, u16), Vec<u8>>,
    /// The stack was dropped: nothing more will move.
    stopped: bool,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves smoltcp's state usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn now(&self) -> smoltcp::time::Instant {
        let micros = i64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(i64::MAX);
        smoltcp::time::Instant::from_micros(micros)
    }
}

impl State {
    /// Runs smoltcp and drops the sockets that have finished closing.
    fn poll(&mut self, now: smoltcp::time::Instant) {
        self.iface.poll(now, &mut self.device, &mut self.sockets);
        let sockets = &mut self.sockets;
        self.closing.retain(|&h| {
            let done = matches!(
                sockets.get::<TcpSocket>(h).state(),
                TcpState::Closed | TcpState::TimeWait
            );
            if done {
                sockets.remove(h);
            }
            !done
        });
    }

    /// Lets smoltcp send more: it emits at most one segment per socket per
    /// poll, so without this a bulk sender hands the tunnel one packet per
    /// driver round, and the engine can batch nothing. Stops when a round
    /// emits nothing or [`BATCH`] packets wait.
    fn egress_burst(&mut self, now: smoltcp::time::Instant) {
        while self.device.tx.len() < BATCH {
            let before = self.device.tx.len();
            self.iface
                .poll_egress(now, &mut self.device, &mut self.sockets);
            if self.device.tx.len() == before {
                break;
            }
        }
    }

    /// Whether a new connection from this stack to `remote` may start.
    fn check_reachable(&self, remote: Ipv4Addr) -> io::Result<()> {
        if self.stopped {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the network stack has stopped",
            ));
        }
        let routed = self.routed.iter().any(|n| n.contains(&remote));
        if !(self.network.contains(&remote) || routed) || remote == self.address {
            return Err(io::Error::new(
                io::ErrorKind::NetworkUnreachable,
                format!("{remote} is not a peer address in {}", self.network),
            ));
        }
        Ok(())
    }

    fn ephemeral_port(&mut self) -> u16 {
        let port = self.next_port;
        self.next_port = if port == *EPHEMERAL.end() {
            *EPHEMERAL.start()
        } else {
            port + 1
        };
        port
    }
}

/// A running userspace stack on one mesh address. Dropping it stops the
/// driver; streams still open then make no more progress.
#[derive(Debug)]
pub struct Netstack {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Netstack {
    /// Starts the stack on `address` (the mesh IP with the mesh prefix, so
    /// every peer is on-link) over an engine's tunnel.
    pub fn start(address: Ipv4Net, tunnel: Tunnel) -> Netstack {
        let mut device = Queues::default();
        let epoch = std::time::Instant::now();
        let mut config = Config::new(HardwareAddress::Ip);
        config.random_seed = OsRng.next_u64();
        let mut iface = Interface::new(config, &mut device, smoltcp::time::Instant::ZERO);
        iface.update_ip_addrs(|addrs| {
            // A fresh interface has room for its one address.
            let _ = addrs.push(IpCidr::new(
                IpAddress::Ipv4(address.addr()),
                address.prefix_len(),
            ));
        });
        // Routed prefixes are off-link: smoltcp needs a route to send to
        // them at all. Over an IP-medium link the gateway names no next hop
        // (the engine routes by destination), and which addresses may be
        // dialled is decided by `check_reachable`.
        let _ = iface.routes_mut().add_default_ipv4_route(address.addr());
        let span = u32::from(*EPHEMERAL.end() - *EPHEMERAL.start()) + 1;
        let first = *EPHEMERAL.start() + (OsRng.next_u32() % span) as u16;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                iface,
                sockets: SocketSet::new(Vec::new()),
                device,
                address: address.addr(),
                network: address.trunc(),
                routed: Vec::new(),
                next_port: first,
                closing: Vec::new(),
                listened: HashMap::new(),
                unclaimed: None,
                held: HashMap::new(),
                stopped: false,
            }),
            wake: Notify::new(),
            epoch,
        });
        let task = tokio::spawn(drive(Arc::clone(&shared), tunnel));
        Netstack { shared, task }
    }

    pub fn address(&self) -> Ipv4Addr {
        self.shared.state().address
    }

    /// Opens a TCP connection from this stack's address to `remote`.
    /// Waits for the handshake as long as SYNs go unanswered (a peer that
    /// is absent or filtered never answers), so callers put a timeout on
    /// it; a refused connection (RST) fails at once.
    pub async fn connect(&self, remote: SocketAddrV4) -> io::Result<TcpStream> {
        TcpStream::connect(Arc::clone(&self.shared), remote).await
    }

    /// Listens for TCP connections on `port` of this stack's address.
    pub fn listen(&self, port: u16) -> io::Result<TcpListener> {
        TcpListener::bind(Arc::clone(&self.shared), port)
    }

    /// A handle that opens connections and pings from other tasks, for as
    /// long as the stack runs (afterwards they fail).
    /// The handle that tells the stack which routed prefixes it may reach.
    pub fn routed_prefixes(&self) -> RoutedPrefixes {
        RoutedPrefixes {
            shared: Arc::clone(&self.shared),
        }
    }

    pub fn dialer(&self) -> Dialer {
        Dialer {
            shared: Arc::clone(&self.shared),
        }
    }

    /// From now on, connection attempts to ports that no [`TcpListener`]
    /// listens on come out of the returned receiver instead of being reset
    /// at once. A receiver taken earlier ends. Up to 128 attempts wait for
    /// their answer at once; later ones are dropped (the peer retries its
    /// SYN), as with a full backlog.
    pub fn unclaimed(&self) -> UnclaimedConnections {
        let (tx, rx) = mpsc::channel(unclaimed::HELD);
        self.shared.state().unclaimed = Some(tx);
        UnclaimedConnections::new(rx)
    }
}

impl Drop for Netstack {
    /// Stops the driver and closes every socket, so that streams and
    /// connects still waiting fail instead of hanging.
    fn drop(&mut self) {
        self.task.abort();
        let mut st = self.shared.state();
        st.stopped = true;
        st.unclaimed = None;
        for (_, socket) in st.sockets.iter_mut() {
            if let smoltcp::socket::Socket::Tcp(s) = socket {
                s.abort();
            }
        }
    }
}

/// Opens connections and pings over a running [`Netstack`] (from
/// [`Netstack::dialer`]); cheap to clone.
#[derive(Debug, Clone)]
pub struct Dialer {
    shared: Arc<Shared>,
}

/// Which addresses outside the mesh the stack may connect to: the prefixes
/// of the routes this peer uses (the engine carries them to their routing
/// peers), kept current by [`crate::routing`].
#[derive(Debug, Clone)]
pub struct RoutedPrefixes {
    shared: Arc<Shared>,
}

impl RoutedPrefixes {
    /// Replaces the routed prefixes.
    pub fn set(&self, prefixes: &[Ipv4Net]) {
        self.shared.state().routed = prefixes.to_vec();
    }
}

impl Dialer {
    /// As [`Netstack::connect`]. Fails at once with `NetworkUnreachable`
    /// for an address outside the mesh, and with `NotConnected` once the
    /// stack has stopped.
    pub async fn connect(&self, remote: SocketAddrV4) -> io::Result<TcpStream> {
        TcpStream::connect(Arc::clone(&self.shared), remote).await
    }

    /// Sends one ICMP echo request with sequence number `seq` to `to` and
    /// waits up to `wait` for the answer; `None` when none came.
    pub async fn ping(&self, to: Ipv4Addr, seq: u16, wait: Duration) -> io::Result<Option<Echo>> {
        icmp::ping(Arc::clone(&self.shared), to, seq, wait).await
    }
}

/// The driver loop; ends when the engine closes the tunnel.
async fn drive(shared: Arc<Shared>, mut tunnel: Tunnel) {
    loop {
        let (outgoing, delay) = {
            let mut st = shared.state();
            let now = shared.now();
            st.poll(now);
            st.egress_burst(now);
            let outgoing: Vec<Vec<u8>> = st.device.tx.drain(..).collect();
            let State { iface, sockets, .. } = &mut *st;
            let delay = iface
                .poll_delay(now, sockets)
                .map_or(IDLE, |d| Duration::from_micros(d.total_micros()));
            (outgoing, delay)
        };
        for packet in outgoing {
            if tunnel.outbound.send(packet).await.is_err() {
                return;
            }
        }
        tokio::select! {
            packet = tunnel.inbound.recv() => {
                let Some(packet) = packet else { return };
                let mut st = shared.state();
                unclaimed::admit(&mut st, &shared, packet);
                while st.device.rx.len() < BATCH {
                    match tunnel.inbound.try_recv() {
                        Ok(p) => unclaimed::admit(&mut st, &shared, p),
                        Err(_) => break,
                    }
                }
            }
            _ = shared.wake.notified() => {}
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

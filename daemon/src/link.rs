//! A live link to the mesh: the WireGuard engine, the front-end that
//! attaches it to the host, and the task that follows the management
//! server's Sync stream, applies every map to the engine and reconnects
//! with backoff when the stream drops; the tasks that find where peers are
//! ([`crate::connect`]: candidate discovery, the signal exchange, the relay
//! connection); in kernel TUN mode, the peer's resolver ([`crate::dns`]),
//! which follows every map too; and, once asked ([`Link::report_flows`]),
//! the task that reports the engine's flow events.

use std::collections::BTreeSet;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use ipnet::Ipv4Net;
use meshplane_core::connect::Candidate;
use meshplane_core::netmap::PeerMap;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::connect::{Connect, ConnectConfig};
use crate::dns::{DnsReport, PeerDns, PeerDnsConfig};
use crate::engine::forward::Forwarder;
use crate::engine::netstack::Netstack;
use crate::engine::wg::{Engine, EngineConfig, Status, Underlay};
use crate::key::{PrivateKey, PublicKey};
use crate::meta::{self, Mesh, Meta};
use crate::mgmt::client::{
    reconnect_backoff, HeldMap, Management, ManagementError, MapStream, Session,
};
use crate::routing::{underlay_addresses, HostConfig, Routes, RoutesReport};

/// How the engine is attached to the host.
#[derive(Debug)]
enum Frontend {
    Netstack(Netstack),
    #[cfg(target_os = "linux")]
    Kernel(crate::engine::kernel_tun::KernelTun),
}

/// Starts the engine and attaches it: a kernel TUN interface named
/// `kernel` when given (privileged) and the interface can be created, the
/// userspace stack otherwise.
async fn attach(
    kernel: Option<&str>,
    config: EngineConfig,
    address: Ipv4Net,
) -> io::Result<(Engine, Underlay, Frontend)> {
    #[cfg(target_os = "linux")]
    if let Some(name) = kernel {
        let (engine, tunnel, underlay) = Engine::start_with_underlay(config.clone()).await?;
        // Before any packet: an exit node must not route the tunnel into
        // itself.
        crate::routing::mark::mark(&*underlay.socket);
        match crate::engine::kernel_tun::KernelTun::start(name, address, tunnel) {
            Ok(tun) => return Ok((engine, underlay, Frontend::Kernel(tun))),
            Err(e) => {
                tracing::warn!("kernel TUN {name}: {e}; using the userspace network stack");
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = kernel;
    let (engine, tunnel, underlay) = Engine::start_with_underlay(config).await?;
    Ok((
        engine,
        underlay,
        Frontend::Netstack(Netstack::start(address, tunnel)),
    ))
}

/// What the Sync task learns, for `status`.
#[derive(Debug, Default)]
pub struct SyncState {
    pub connected: bool,
    /// Why the last session ended, while not connected.
    pub last_error: Option<String>,
    pub map: Option<PeerMap>,
}

/// This peer as the server registered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub peer_id: String,
    pub address: Ipv4Net,
    pub fqdn: String,
}

/// A running link; dropping it stops the Sync task and the engine.
#[derive(Debug)]
pub struct Link {
    pub management: Management,
    pub identity: Identity,
    engine: Arc<Engine>,
    frontend: Frontend,
    /// In netstack mode: peers' connections to this peer's ports reach the
    /// host's loopback.
    _forward: Option<Forwarder>,
    sync: Arc<Mutex<SyncState>>,
    task: JoinHandle<()>,
    /// Discovery, signal and relay.
    connect: Connect,
    /// This peer's key, for the flow reporter's own session.
    key: PrivateKey,
    /// The flow reporter, once started.
    reporter: Option<JoinHandle<()>>,
    /// The peer's resolver, in kernel TUN mode.
    dns: Option<Arc<PeerDns>>,
    /// Sends changes of this host's meta ([`crate::meta::report`]).
    meta_reporter: JoinHandle<()>,
    /// Routes and networks: chosen on every map and reachability change.
    routes: Arc<Routes>,
    /// Chooses routing peers again when a peer's reachability changes.
    failover: JoinHandle<()>,
}

/// Why a link could not be brought up.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error(transparent)]
    Management(#[from] ManagementError),
    #[error("the server gave an invalid address {0:?}")]
    Address(String),
    #[error("cannot start the WireGuard engine: {0}")]
    Engine(io::Error),
}

/// How a link attaches to the host and reaches its peers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkOptions {
    /// A kernel TUN interface to create (privileged); the userspace stack
    /// when `None` or when it cannot be created.
    pub kernel: Option<String>,
    /// In netstack mode: whether connections from peers reach the host's
    /// loopback services ([`Forwarder`]); the reverse-proxy peer says no,
    /// since nothing on its host is meant for the mesh.
    pub forward_to_host: bool,
    /// Announce no candidates and discover none: peers reach this one over
    /// the relay only (unless they are reachable directly themselves).
    pub relay_only: bool,
    /// In kernel TUN mode: the state directory that keeps the host's
    /// resolver configuration while the peer's resolver is the host's;
    /// `None` leaves the host's resolver alone (`--no-host-dns`).
    pub host_dns: Option<PathBuf>,
}

impl Link {
    /// Logs in at `server` (registering with `setup_key` when given), starts
    /// the engine and the connect tasks and begins following the Sync
    /// stream.
    pub async fn up(
        server: &Management,
        setup_key: &str,
        key: PrivateKey,
        options: &LinkOptions,
    ) -> Result<Link, LinkError> {
        let mut session = Session::connect(server, &key).await?;
        // Before login there is no mesh address to leave out yet, nor a
        // list of process paths to look for.
        let first = tokio::task::spawn_blocking(|| meta::collect(&Mesh::default(), &[]))
            .await
            .unwrap_or_default();
        let login = session.login(setup_key, first).await?;
        let address: Ipv4Net = login
            .address
            .parse()
            .map_err(|_| LinkError::Address(login.address.clone()))?;
        let config = EngineConfig {
            private_key: key.clone(),
            listen: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
            mesh_ip: address.addr(),
        };
        let (engine, underlay, frontend) = attach(options.kernel.as_deref(), config, address)
            .await
            .map_err(LinkError::Engine)?;
        let forward = match &frontend {
            Frontend::Netstack(stack) if options.forward_to_host => Some(Forwarder::start(stack)),
            Frontend::Netstack(_) => None,
            #[cfg(target_os = "linux")]
            Frontend::Kernel(_) => None,
        };
        let dns = match &frontend {
            Frontend::Netstack(_) => None,
            #[cfg(target_os = "linux")]
            Frontend::Kernel(tun) => Some(Arc::new(PeerDns::new(PeerDnsConfig {
                mesh_ip: address.addr(),
                interface: tun.name().to_string(),
                host_state_dir: options.host_dns.clone(),
            }))),
        };
        let mesh = Mesh {
            ip: Some(address.addr()),
            interface: match &frontend {
                Frontend::Netstack(_) => None,
                #[cfg(target_os = "linux")]
                Frontend::Kernel(tun) => Some(tun.name().to_string()),
            },
        };
        let meta = Meta::new(mesh, login.process_check_paths.clone());
        let meta_reporter = tokio::spawn(meta::report(meta.clone(), server.clone(), key.clone()));
        let engine = Arc::new(engine);
        let host = match &frontend {
            #[cfg(target_os = "linux")]
            Frontend::Kernel(tun) => {
                let mut urls = vec![server.url()];
                if let Some(relay) = &login.relay {
                    urls.extend(relay.urls.iter().map(String::as_str));
                }
                Some(HostConfig {
                    interface: tun.name().to_string(),
                    underlay: underlay_addresses(&urls).await,
                })
            }
            Frontend::Netstack(_) => None,
        };
        let stack = match &frontend {
            Frontend::Netstack(stack) => Some(stack.routed_prefixes()),
            #[cfg(target_os = "linux")]
            Frontend::Kernel(_) => None,
        };
        let routes = Arc::new(Routes::new(
            Arc::clone(&engine),
            login.peer_id.as_str().into(),
            address,
            host,
            stack,
        ));
        let failover = routes.follow();
        let sync = Arc::new(Mutex::new(SyncState::default()));
        let (peers, peer_keys) = watch::channel(BTreeSet::new());
        let connect = Connect::start(ConnectConfig {
            management: server,
            key: &key,
            session: &session,
            relay: login.relay.clone(),
            engine: Arc::clone(&engine),
            underlay,
            mesh_ip: address.addr(),
            peers: peer_keys,
            relay_only: options.relay_only,
        });
        let follower = Follower {
            management: server.clone(),
            key: key.clone(),
            routes: Arc::clone(&routes),
            sync: Arc::clone(&sync),
            peers,
            dns: dns.clone(),
            meta,
            held: Mutex::default(),
        };
        let task = tokio::spawn(follower.run(session));
        Ok(Link {
            management: server.clone(),
            identity: Identity {
                peer_id: login.peer_id,
                address,
                fqdn: login.fqdn,
            },
            engine,
            frontend,
            _forward: forward,
            sync,
            task,
            connect,
            key,
            reporter: None,
            dns,
            meta_reporter,
            routes,
            failover,
        })
    }

    /// The routes part of `status`.
    pub fn routes(&self) -> RoutesReport {
        self.routes.report()
    }

    /// Removes what the link set up on the host besides its interface
    /// (forwarding, the nftables table, kernel routes); call before
    /// dropping it.
    pub async fn shutdown(&self) {
        self.task.abort();
        self.failover.abort();
        self.routes.shutdown().await;
    }

    /// Reports the engine's flow events to the server every `every`
    /// ([`crate::mgmt::flow_report::report`]), replacing an earlier reporter.
    pub fn report_flows(&mut self, every: Duration) {
        let task = tokio::spawn(crate::mgmt::flow_report::report(
            self.management.clone(),
            self.key.clone(),
            self.engine.flows(),
            every,
        ));
        if let Some(old) = self.reporter.replace(task) {
            old.abort();
        }
    }

    /// `netstack`, or `kernel <interface>`.
    pub fn mode(&self) -> String {
        match &self.frontend {
            Frontend::Netstack(_) => "netstack".to_string(),
            #[cfg(target_os = "linux")]
            Frontend::Kernel(tun) => format!("kernel {}", tun.name()),
        }
    }

    /// The userspace stack, in netstack mode: this process's own TCP
    /// connect/listen on the mesh IP.
    pub fn netstack(&self) -> Option<&Netstack> {
        match &self.frontend {
            Frontend::Netstack(stack) => Some(stack),
            #[cfg(target_os = "linux")]
            Frontend::Kernel(_) => None,
        }
    }

    pub async fn engine_status(&self) -> Option<Status> {
        self.engine.status().await.ok()
    }

    /// The relay this peer uses, when the server named one.
    pub fn relay_url(&self) -> Option<&str> {
        self.connect.relay_url()
    }

    /// Whether the signal stream is open now.
    pub fn signal_connected(&self) -> bool {
        self.connect.signal_connected()
    }

    /// The candidates this peer announces now.
    pub fn candidates(&self) -> Vec<Candidate> {
        self.connect.candidates()
    }

    pub fn sync_state(&self) -> MutexGuard<'_, SyncState> {
        lock(&self.sync)
    }

    /// The peer's resolver, while it runs.
    pub fn dns_report(&self) -> Option<DnsReport> {
        self.dns.as_ref().and_then(|dns| dns.report())
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.task.abort();
        self.meta_reporter.abort();
        self.failover.abort();
        if let Some(reporter) = &self.reporter {
            reporter.abort();
        }
        // Now, not when the aborted task lets go of it: `down` returns
        // with the host's resolver given back.
        if let Some(dns) = &self.dns {
            dns.close();
        }
    }
}

fn lock(m: &Mutex<SyncState>) -> MutexGuard<'_, SyncState> {
    // The state is plain data; a panic elsewhere leaves it usable.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The Sync task's parts.
struct Follower {
    management: Management,
    key: PrivateKey,
    /// Applies each map to the engine, with the routes chosen for it.
    routes: Arc<Routes>,
    sync: Arc<Mutex<SyncState>>,
    /// The keys of the current map's peers, for the signal task.
    peers: watch::Sender<BTreeSet<PublicKey>>,
    dns: Option<Arc<PeerDns>>,
    /// This host's meta, reported at login and sync.
    meta: Arc<Meta>,
    /// The map the last stream left, named by the next so that it starts
    /// with a delta.
    held: Mutex<Option<HeldMap>>,
}

impl Follower {
    /// Follows the stream, starting with the session `up` logged in with;
    /// after a drop, waits (with backoff), logs in again and re-syncs.
    async fn run(self, first: Session) {
        let mut session = Some(first);
        let mut backoff = reconnect_backoff();
        loop {
            let (got_map, result) = self.follow(session.take()).await;
            let reason = match result {
                Ok(()) => "the server closed the stream".to_string(),
                Err(e) => e.to_string(),
            };
            tracing::warn!("management stream ended: {reason}");
            {
                let mut state = lock(&self.sync);
                state.connected = false;
                state.last_error = Some(reason);
            }
            if got_map {
                backoff.reset();
            }
            tokio::time::sleep(backoff.next_delay()).await;
        }
    }

    /// One session: its Sync stream until it ends. Says whether any map
    /// arrived (the session worked, so the backoff starts over).
    async fn follow(&self, session: Option<Session>) -> (bool, Result<(), ManagementError>) {
        let mut session = match session {
            Some(s) => s,
            None => match self.login().await {
                Ok(s) => s,
                Err(e) => return (false, Err(e)),
            },
        };
        let held = self
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let mut stream = match session.sync(self.meta.for_request().await, held).await {
            Ok(s) => s,
            Err(e) => return (false, Err(e)),
        };
        let (got_map, result) = self.apply_maps(&mut session, &mut stream).await;
        *self.held.lock().unwrap_or_else(PoisonError::into_inner) = stream.into_held();
        (got_map, result)
    }

    /// Applies each map `stream` brings until it ends.
    async fn apply_maps(
        &self,
        session: &mut Session,
        stream: &mut MapStream,
    ) -> (bool, Result<(), ManagementError>) {
        let mut got_map = false;
        loop {
            let map = match session.next_map(stream).await {
                Ok(Some((map, paths))) => {
                    self.meta.set_paths(paths);
                    map
                }
                Ok(None) => return (got_map, Ok(())),
                Err(e) => return (got_map, Err(e)),
            };
            let Ok(update) = self.routes.apply_map(map.clone()).await else {
                return (got_map, Ok(()));
            };
            if let Some(dns) = &self.dns {
                dns.apply(&map);
            }
            let keys: BTreeSet<PublicKey> = update.peers.iter().map(|p| p.public_key).collect();
            self.peers.send_if_modified(|current| {
                let changed = *current != keys;
                *current = keys;
                changed
            });
            {
                let mut state = lock(&self.sync);
                state.connected = true;
                state.last_error = None;
                state.map = Some(map);
            }
            got_map = true;
        }
    }

    async fn login(&self) -> Result<Session, ManagementError> {
        let mut session = Session::connect(&self.management, &self.key).await?;
        let login = session.login("", self.meta.for_request().await).await?;
        self.meta.set_paths(login.process_check_paths);
        Ok(session)
    }
}

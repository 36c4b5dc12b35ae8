//! DNS on the peer: a resolver on the peer's mesh IP, port 53, UDP and
//! TCP, that answers the mesh's names from the map ([`zone`]), forwards
//! match domains to their nameserver groups and everything else to a
//! primary group or the host's original nameservers ([`upstream`]), and
//! the host's resolver pointed at it ([`host`]).
//!
//! [`PeerDns`] follows the maps: the first map with DNS management on
//! starts the resolver and configures the host, later maps swap the
//! answers at once, a map with DNS management off stops the resolver and
//! gives the host back its configuration, as does [`PeerDns::close`] on
//! `down`. It needs the mesh IP on a kernel interface, so it runs in
//! kernel TUN mode only.

pub mod host;
pub mod server;
pub mod upstream;
pub mod zone;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, PoisonError};

use meshplane_core::netmap::PeerMap;
use serde::{Deserialize, Serialize};

use self::host::{HostMode, HostSettings, ResolvConf};
use self::server::{Answers, Server};
use self::upstream::Upstreams;
use self::zone::Zones;

/// The DNS port the resolver listens on.
pub const DNS_PORT: u16 = 53;

/// Where and how the peer's resolver runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerDnsConfig {
    /// The peer's mesh IP, on `interface`.
    pub mesh_ip: Ipv4Addr,
    /// The kernel TUN interface (for systemd-resolved's per-link DNS).
    pub interface: String,
    /// The state directory that keeps the host's original resolv.conf;
    /// `None` leaves the host untouched (`--no-host-dns`).
    pub host_state_dir: Option<PathBuf>,
}

/// The DNS state in `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsReport {
    /// Where the resolver listens (UDP and TCP).
    pub listen: SocketAddr,
    /// The zones answered from the map.
    pub zones: Vec<String>,
    /// Match domains and the nameservers they go to.
    pub match_domains: Vec<MatchDomainReport>,
    /// The primary nameserver group's nameservers (every other name).
    pub primary: Vec<SocketAddr>,
    /// The host's original nameservers (every other name without a
    /// primary group).
    pub host_upstream: Vec<SocketAddr>,
    pub host: HostMode,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatchDomainReport {
    pub domain: String,
    pub nameservers: Vec<SocketAddr>,
}

/// The resolver and the host's configuration, following the maps.
#[derive(Debug)]
pub struct PeerDns {
    config: PeerDnsConfig,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Set by [`PeerDns::close`]: a map arriving later changes nothing.
    closed: bool,
    running: Option<Running>,
}

/// A running resolver and what it did to the host.
#[derive(Debug)]
struct Running {
    server: Server,
    host: Host,
    /// The host's nameservers from before we touched it.
    host_upstream: Vec<SocketAddr>,
    /// What the host was last told, so an unchanged map changes nothing.
    applied: Option<HostSettings>,
}

/// How the host's resolver is configured, with what restoring needs.
#[derive(Debug)]
enum Host {
    Resolved { interface: String },
    ResolvConf { conf: ResolvConf, original: String },
    Untouched,
}

impl Host {
    fn mode(&self) -> HostMode {
        match self {
            Host::Resolved { .. } => HostMode::SystemdResolved,
            Host::ResolvConf { .. } => HostMode::ResolvConf,
            Host::Untouched => HostMode::Untouched,
        }
    }

    fn apply(&self, settings: &HostSettings) -> Result<(), host::HostError> {
        match self {
            Host::Resolved { interface } => host::resolved_apply(interface, settings),
            Host::ResolvConf { conf, original } => {
                conf.install(&host::render(original, settings, conf.backup()))
            }
            Host::Untouched => Ok(()),
        }
    }

    fn restore(&self) -> Result<(), host::HostError> {
        match self {
            Host::Resolved { interface } => host::resolved_revert(interface),
            Host::ResolvConf { conf, .. } => conf.restore().map(|_| ()),
            Host::Untouched => Ok(()),
        }
    }
}

impl PeerDns {
    pub fn new(config: PeerDnsConfig) -> PeerDns {
        PeerDns {
            config,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Follows one map (called with every map; must run inside the tokio
    /// runtime, which the resolver's tasks join).
    pub fn apply(&self, map: &PeerMap) {
        let mut state = self.lock();
        if state.closed {
            return;
        }
        if !map.dns.service_enable {
            if let Some(running) = state.running.take() {
                tracing::info!("DNS management switched off: resolver stopped");
                self.stop(running);
            }
            return;
        }
        if state.running.is_none() {
            match self.start() {
                Ok(running) => state.running = Some(running),
                Err(e) => {
                    tracing::warn!("DNS resolver on {}:{DNS_PORT}: {e}", self.config.mesh_ip);
                    return;
                }
            }
        }
        let Some(running) = state.running.as_mut() else {
            return;
        };
        let upstreams = Upstreams::from_map(&map.dns, running.host_upstream.clone());
        let answers = Answers {
            zones: Zones::from_map(&map.dns),
            upstreams,
        };
        let settings = self.host_settings(map, &answers);
        running.server.set(answers);
        if running.applied.as_ref() != Some(&settings) {
            match running.host.apply(&settings) {
                Ok(()) => running.applied = Some(settings),
                Err(e) => tracing::warn!("host DNS configuration: {e}"),
            }
        }
    }

    /// Starts the resolver and finds the host's original nameservers.
    fn start(&self) -> std::io::Result<Running> {
        let own = [IpAddr::V4(self.config.mesh_ip)];
        let (host, host_upstream) = match &self.config.host_state_dir {
            Some(dir) => {
                let conf = ResolvConf::host(dir);
                let original = conf.original().map_err(std::io::Error::other)?;
                if host::uses_resolved(&original) {
                    let host = Host::Resolved {
                        interface: self.config.interface.clone(),
                    };
                    (host, host::resolved_uplinks(&own))
                } else {
                    let upstream = host::nameservers(&original, &own);
                    (Host::ResolvConf { conf, original }, upstream)
                }
            }
            None => {
                let text = std::fs::read_to_string(host::RESOLV_CONF).unwrap_or_default();
                (Host::Untouched, host::nameservers(&text, &own))
            }
        };
        let listen = SocketAddr::from((self.config.mesh_ip, DNS_PORT));
        let server = Server::start(listen, Answers::default())?;
        tracing::info!(
            "DNS resolver on {listen}; host configuration: {}; host nameservers: {host_upstream:?}",
            host.mode()
        );
        Ok(Running {
            server,
            host,
            host_upstream,
            applied: None,
        })
    }

    /// What the host is told for a map: our resolver; the zones as search
    /// and routing domains; the match domains as routing domains, and as
    /// search domains where their group says so; every name when a
    /// primary group exists.
    fn host_settings(&self, map: &PeerMap, answers: &Answers) -> HostSettings {
        let zones: Vec<String> = answers.zones.apexes().map(zone::text).collect();
        let mut search = zones.clone();
        let mut routing = zones;
        for group in &map.dns.nameserver_groups {
            for domain in &group.domains {
                let domain = domain.trim_end_matches('.').to_ascii_lowercase();
                if !routing.contains(&domain) {
                    routing.push(domain.clone());
                }
                if group.search_domains_enabled && !search.contains(&domain) {
                    search.push(domain);
                }
            }
        }
        HostSettings {
            nameserver: self.config.mesh_ip,
            search,
            routing,
            default_route: !answers.upstreams.primary.is_empty(),
        }
    }

    fn stop(&self, running: Running) {
        if let Err(e) = running.host.restore() {
            tracing::warn!("restoring the host's DNS configuration: {e}");
        }
        drop(running.server);
    }

    /// Stops the resolver and gives the host back its configuration; maps
    /// arriving later change nothing.
    pub fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        if let Some(running) = state.running.take() {
            self.stop(running);
        }
    }

    /// The DNS state, while the resolver runs.
    pub fn report(&self) -> Option<DnsReport> {
        let state = self.lock();
        let running = state.running.as_ref()?;
        let answers = running.server.answers();
        let text = zone::text;
        Some(DnsReport {
            listen: running.server.local_addr(),
            zones: answers.zones.apexes().map(text).collect(),
            match_domains: answers
                .upstreams
                .matches
                .iter()
                .map(|m| MatchDomainReport {
                    domain: text(&m.domain),
                    nameservers: m.nameservers.clone(),
                })
                .collect(),
            primary: answers.upstreams.primary.clone(),
            host_upstream: running.host_upstream.clone(),
            host: running.host.mode(),
        })
    }
}

impl Drop for PeerDns {
    fn drop(&mut self) {
        self.close();
    }
}

/// At daemon start: writes back a resolv.conf backup a crashed daemon left
/// in `state_dir`, if the file is still the one it wrote.
pub fn recover_host(state_dir: &std::path::Path) {
    match ResolvConf::host(state_dir).restore() {
        Ok(true) => tracing::info!("restored the host's resolv.conf left by an earlier run"),
        Ok(false) => {}
        Err(e) => tracing::warn!("restoring the host's resolv.conf: {e}"),
    }
}

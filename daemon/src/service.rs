//! The daemon's state: down, or up with one [`Link`]. `up`, `down` and
//! `status` from the control socket act on it one at a time. At start it
//! comes back up by itself when the last `up` was not followed by `down`.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use meshplane_core::expose::KeepAliveConfig;
use tokio::sync::Mutex;

use crate::control::{PeerReport, Reply, Request, StatusReport, UpInfo};
use crate::engine::netstack::{Dialer, Echo, Netstack};
use crate::expose::Exposes;
use crate::key::PrivateKey;
use crate::link::{Link, LinkOptions};
use crate::mgmt::client::{reconnect_backoff, Management};
use crate::routing::RoutesReport;
use crate::state::{Settings, StateDir};

/// How long `expose` waits for the management stream of a daemon that is
/// up but still connecting.
const EXPOSE_CONNECT_GRACE: Duration = Duration::from_secs(5);

/// The long-running daemon.
#[derive(Debug)]
pub struct Daemon {
    state: StateDir,
    /// How links attach: the kernel TUN interface (privileged, not
    /// `--netstack`) or the userspace stack, and `--relay-only`.
    options: LinkOptions,
    link: Mutex<Option<Link>>,
    /// Active `meshplane expose` sessions, stopped before the link goes.
    exposes: Exposes,
    keepalive: KeepAliveConfig,
    /// How often flow events are reported (`--flow-report-secs`).
    flow_report: Duration,
}

impl Daemon {
    pub fn new(state: StateDir, kernel: Option<String>) -> Daemon {
        let host_dns = Some(state.path().to_path_buf());
        Daemon {
            state,
            options: LinkOptions {
                kernel,
                forward_to_host: true,
                relay_only: false,
                host_dns,
            },
            link: Mutex::new(None),
            exposes: Exposes::default(),
            keepalive: KeepAliveConfig::default(),
            flow_report: crate::mgmt::flow_report::DEFAULT_REPORT_EVERY,
        }
    }

    /// Reaches peers over the relay only (`--relay-only`).
    pub fn with_relay_only(mut self, relay_only: bool) -> Daemon {
        self.options.relay_only = relay_only;
        self
    }

    /// Leaves the host's resolver configuration alone (`--no-host-dns`);
    /// the peer's resolver still answers on the mesh IP.
    pub fn with_host_dns(mut self, on: bool) -> Daemon {
        if !on {
            self.options.host_dns = None;
        }
        self
    }

    /// Reports flow events every `period` instead of the default 10 s
    /// (`--flow-report-secs`).
    pub fn with_flow_report(mut self, period: Duration) -> Daemon {
        self.flow_report = period;
        self
    }

    /// Renews expose sessions every `period` instead of the default 30 s
    /// (`--expose-renew-secs`, for tests with a short server TTL).
    pub fn with_expose_renew(mut self, period: meshplane_core::Duration) -> Daemon {
        self.keepalive.renew_period = period;
        self
    }

    pub(crate) fn exposes(&self) -> &Exposes {
        &self.exposes
    }

    pub(crate) fn keepalive(&self) -> KeepAliveConfig {
        self.keepalive
    }

    /// The management server and this peer's key, when the daemon is up and
    /// its management stream connected (what an expose session needs).
    /// Right after `up` the stream may still be connecting: `meshplane up
    /// && meshplane expose 8080` should work, so a link that is up waits
    /// up to [`EXPOSE_CONNECT_GRACE`] for it; a daemon that is down fails at
    /// once.
    pub(crate) async fn expose_target(&self) -> Option<(Management, PrivateKey)> {
        let deadline = tokio::time::Instant::now() + EXPOSE_CONNECT_GRACE;
        loop {
            {
                let link = self.link.lock().await;
                let link = link.as_ref()?;
                if link.sync_state().connected {
                    let key = self.state.private_key().ok()?;
                    return Some((link.management.clone(), key));
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Before the daemon exits: stops every active expose session and the
    /// link, so the host gets back what the link changed (routes, policy
    /// rules, forwarding, masquerade, its resolver configuration); the
    /// saved settings stay, so the next start comes back up.
    pub async fn shutdown(&self) {
        self.exposes.stop_all().await;
        if let Some(link) = self.link.lock().await.take() {
            link.shutdown().await;
        }
    }

    pub async fn handle(&self, request: Request) -> Reply {
        match request {
            Request::Up {
                management_url,
                management_ca,
                setup_key,
            } => match self.up(management_url, management_ca, setup_key).await {
                Ok(info) => Reply::Up(info),
                Err(e) => Reply::Error(e),
            },
            Request::Down => match self.down().await {
                Ok(()) => Reply::Down,
                Err(e) => Reply::Error(e),
            },
            Request::Status => match self.status().await {
                Ok(report) => Reply::Status(Box::new(report)),
                Err(e) => Reply::Error(e),
            },
            Request::Ping { ip, seq, wait_ms } => match self.ping(ip, seq, wait_ms).await {
                Ok(echo) => Reply::Ping(echo),
                Err(e) => Reply::Error(e),
            },
            // The control socket hands `expose` to crate::expose; a stop
            // belongs on that connection.
            Request::Expose(_) | Request::StopExpose => {
                Reply::Error("no expose session on this connection".to_string())
            }
        }
    }

    /// Reconnects in the background when the saved settings say the daemon
    /// was up (see [`Settings::resume_at_start`]), retrying with backoff
    /// until it is up or the user runs `down`.
    pub fn resume(self: &Arc<Self>) {
        let daemon = Arc::clone(self);
        tokio::spawn(async move {
            let mut backoff = reconnect_backoff();
            loop {
                match daemon.state.settings() {
                    Ok(settings) if settings.resume_at_start() => {}
                    Ok(_) => return,
                    Err(e) => {
                        tracing::warn!("not reconnecting at start: {e}");
                        return;
                    }
                }
                let pause = backoff.next_delay();
                match daemon.up(None, None, None).await {
                    Ok(_) => return,
                    Err(e) => tracing::warn!("reconnecting at start: {e}; again in {pause:?}"),
                }
                tokio::time::sleep(pause).await;
            }
        });
    }

    /// Disconnects and records that the user wants the daemon down, so a
    /// restart stays down.
    async fn down(&self) -> Result<(), String> {
        self.exposes.stop_all().await;
        let mut link = self.link.lock().await;
        if let Some(link) = link.take() {
            link.shutdown().await;
        }
        let settings = self.state.settings().map_err(|e| e.to_string())?;
        self.state
            .save_settings(&Settings {
                down: true,
                ..settings
            })
            .map_err(|e| e.to_string())
    }

    /// Connects, unless already up with the same server (then it only
    /// reports who this peer is). The saved CA goes with the saved URL: a
    /// CA given now replaces it, and another URL without one trusts the
    /// Mozilla roots only.
    async fn up(
        &self,
        url: Option<String>,
        ca: Option<PathBuf>,
        setup_key: Option<String>,
    ) -> Result<UpInfo, String> {
        let mut link = self.link.lock().await;
        if let Some(current) = link.as_ref() {
            let current_url = current.management.url();
            if url.as_ref().is_some_and(|u| u != current_url) {
                return Err(format!(
                    "already up with {current_url}; run 'meshplane down' first"
                ));
            }
            return Ok(up_info(current));
        }
        let saved = self.state.settings().map_err(|e| e.to_string())?;
        let ca = match (&url, ca) {
            (_, Some(ca)) => Some(ca),
            (Some(url), None) if saved.management_url.as_ref() != Some(url) => None,
            (_, None) => saved.management_ca,
        };
        let url = url
            .or(saved.management_url)
            .ok_or("no management server known yet: pass --management-url")?;
        let server = Management::new(&url, ca.as_deref()).map_err(|e| e.to_string())?;
        let key = self.state.private_key().map_err(|e| e.to_string())?;
        let mut new = Link::up(
            &server,
            setup_key.as_deref().unwrap_or(""),
            key,
            &self.options,
        )
        .await
        .map_err(|e| e.to_string())?;
        new.report_flows(self.flow_report);
        self.state
            .save_settings(&Settings {
                management_url: Some(url),
                management_ca: ca,
                peer_id: Some(new.identity.peer_id.clone()),
                down: false,
            })
            .map_err(|e| e.to_string())?;
        let info = up_info(&new);
        tracing::info!("up as {} ({}, {})", info.peer_id, info.ip, info.fqdn);
        *link = Some(new);
        Ok(info)
    }

    /// The current link's userspace stack, while up in netstack mode; the
    /// link is not held, so `up`/`down` are free to run meanwhile.
    pub async fn dialer(&self) -> Option<Dialer> {
        self.link
            .lock()
            .await
            .as_ref()
            .and_then(Link::netstack)
            .map(Netstack::dialer)
    }

    async fn ping(&self, ip: Ipv4Addr, seq: u16, wait_ms: u64) -> Result<Option<Echo>, String> {
        let dialer = self.dialer().await.ok_or(
            "meshplane is down or not in netstack mode (in kernel TUN mode use the system ping)",
        )?;
        dialer
            .ping(ip, seq, Duration::from_millis(wait_ms))
            .await
            .map_err(|e| e.to_string())
    }

    /// What `status` shows (and the metrics are read from).
    pub(crate) async fn status(&self) -> Result<StatusReport, String> {
        let key = self.state.private_key().map_err(|e| e.to_string())?;
        let settings = self.state.settings().map_err(|e| e.to_string())?;
        let link = self.link.lock().await;
        let Some(link) = link.as_ref() else {
            return Ok(StatusReport {
                up: false,
                public_key: key.public_key().to_string(),
                management_url: settings.management_url,
                management_connected: false,
                management_error: None,
                peer_id: settings.peer_id,
                ip: None,
                fqdn: None,
                mode: None,
                listen: None,
                candidates: Vec::new(),
                relay: None,
                relay_connected: false,
                signal_connected: false,
                firewall_dropped: 0,
                peers: Vec::new(),
                dns: None,
                routes: RoutesReport::default(),
                exit_node: None,
            });
        };
        let engine = link.engine_status().await;
        let routes = link.routes();
        let sync = link.sync_state();
        let peers = engine
            .iter()
            .flat_map(|s| s.peers.iter())
            .map(|p| {
                let known = sync.map.as_ref().and_then(|m| m.peer_by_key(&p.public_key));
                PeerReport {
                    id: known.map(|k| k.id.to_string()),
                    fqdn: known.map(|k| k.fqdn.clone()),
                    wireguard: p.clone(),
                }
            })
            .collect();
        Ok(StatusReport {
            up: true,
            public_key: key.public_key().to_string(),
            management_url: Some(link.management.url().to_string()),
            management_connected: sync.connected,
            management_error: sync.last_error.clone(),
            peer_id: Some(link.identity.peer_id.clone()),
            ip: Some(link.identity.address.addr()),
            fqdn: Some(sync.map.as_ref().map_or_else(
                || link.identity.fqdn.clone(),
                |m| m.peer_config.fqdn.clone(),
            )),
            mode: Some(link.mode()),
            listen: engine.as_ref().map(|s| s.listen),
            candidates: link.candidates().iter().map(ToString::to_string).collect(),
            relay: link.relay_url().map(str::to_string),
            relay_connected: engine.as_ref().is_some_and(|s| s.relay_connected),
            signal_connected: link.signal_connected(),
            firewall_dropped: engine.as_ref().map_or(0, |s| s.firewall_dropped),
            peers,
            dns: link.dns_report().map(Box::new),
            exit_node: routes.exit_node().map(Box::new),
            routes,
        })
    }
}

fn up_info(link: &Link) -> UpInfo {
    UpInfo {
        peer_id: link.identity.peer_id.clone(),
        ip: link.identity.address.addr(),
        fqdn: link.identity.fqdn.clone(),
    }
}

impl crate::control::serve::Handler for Daemon {
    fn handle(&self, request: Request) -> impl std::future::Future<Output = Reply> + Send {
        Daemon::handle(self, request)
    }

    fn expose(
        &self,
        request: &meshplane_core::expose::ExposeRequest,
        lines: &mut crate::control::serve::RequestLines,
        write: &mut tokio::net::unix::OwnedWriteHalf,
    ) -> impl std::future::Future<Output = std::io::Result<()>> + Send {
        crate::expose::serve(self, request, lines, write)
    }
}

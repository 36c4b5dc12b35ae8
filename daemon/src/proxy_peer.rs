//! `meshplane proxy`: the reverse proxy of exposed services, run as a mesh
//! peer of its own.
//!
//! It joins the mesh like a daemon in netstack mode (no privileges: the
//! same [`Link`], so it keeps its map through Sync and reconnects by
//! itself), follows the management server's WatchServices stream for its
//! domain, and hands every table to [`meshplane_proxy::Proxy`], which
//! reaches each service's target through the userspace stack. The server
//! grants this peer access to exactly the exposed peer/port pairs in its
//! map, so the data plane's firewall needs no special case.

use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use meshplane_core::expose::{PublicUrl, PublicUrlError};
use meshplane_proto::v1::{ExposedService, ServiceTable};
use meshplane_proxy::{Config, Conn, Dialer, OidcConfig, Proxy, Service, Tls};
use thiserror::Error;
use tokio::sync::watch;

use crate::key::PrivateKey;
use crate::link::{Link, LinkError, LinkOptions};
use crate::mgmt::client::{reconnect_backoff, Management, ManagementError, Session};
use crate::mgmt::setup_key::{SetupKeyArgs, SetupKeyError};
use crate::state::{StateDir, StateError};

/// How long a connection to a target may wait for its handshake (a peer
/// that is offline or filtered never answers).
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// The flags of `meshplane proxy`.
#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// The management server, e.g. http://127.0.0.1:33073 or
    /// https://mgmt.example.com.
    #[arg(short = 'm', long, env = "MESHPLANE_MANAGEMENT_URL")]
    management_url: String,
    /// A PEM file with the CA certificate of an https:// management server
    /// whose certificate no public CA signed (trusted besides the Mozilla
    /// roots; also for its rels:// relay).
    #[arg(long, value_name = "FILE", env = "MESHPLANE_MANAGEMENT_CA")]
    management_ca: Option<PathBuf>,
    /// The setup key registering the proxy peer (its auto-groups should put
    /// it in the server's proxy group); ignored once registered.
    #[command(flatten)]
    setup_key: SetupKeyArgs,
    /// The proxy cluster domain: services are `<name>.<domain>`.
    #[arg(long)]
    domain: String,
    /// Where visitors connect, e.g. 0.0.0.0:443.
    #[arg(long)]
    listen: SocketAddr,
    /// The URL visitors reach this proxy at, http[s]://DOMAIN[:PORT], when
    /// it is not what the proxy serves itself (behind a TLS-terminating
    /// balancer or a port forward); management builds the service URLs
    /// `meshplane expose` prints from it [default: https:// with TLS,
    /// http:// without, the domain and the port listened on]
    #[arg(long, value_name = "URL", env = "MESHPLANE_PROXY_PUBLIC_URL")]
    public_url: Option<String>,
    /// Where the proxy peer keeps its WireGuard key and cookie-signing key
    /// [default: the daemon's state directory's `proxy` folder].
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// A PEM certificate chain for the domain and its subdomains.
    #[arg(long, requires = "tls_key", conflicts_with = "self_signed")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Serve HTTPS with a certificate generated at start (without any TLS
    /// flag the proxy serves plain HTTP, for a TLS-terminating balancer).
    #[arg(long)]
    self_signed: bool,
    /// The OpenID Connect issuer, for services restricted to user groups.
    #[arg(long, requires = "oidc_client_id")]
    oidc_issuer: Option<String>,
    #[arg(long, requires = "oidc_issuer")]
    oidc_client_id: Option<String>,
    #[arg(long, requires = "oidc_issuer")]
    oidc_client_secret: Option<String>,
    /// Serve Prometheus metrics at /metrics on ADDR (IP:PORT): requests by
    /// status, target latency, services, login attempts. Off by default;
    /// the listener has no authentication, so use a private address.
    #[arg(long, value_name = "ADDR", env = "MESHPLANE_PROXY_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
}

/// Why the proxy could not start.
#[derive(Debug, Error)]
pub enum ProxyPeerError {
    #[error(transparent)]
    SetupKey(#[from] SetupKeyError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error(transparent)]
    Proxy(#[from] meshplane_proxy::ProxyError),
    #[error("cannot start the runtime: {0}")]
    Runtime(io::Error),
    #[error(transparent)]
    Metrics(#[from] meshplane_metrics::MetricsError),
    #[error(transparent)]
    Management(#[from] ManagementError),
    #[error("--public-url: {0}")]
    PublicUrl(#[from] PublicUrlError),
}

impl ProxyArgs {
    fn tls(&self) -> Tls {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Tls::Files {
                cert: cert.clone(),
                key: key.clone(),
            },
            _ if self.self_signed => Tls::SelfSigned,
            _ => Tls::Plain,
        }
    }

    fn oidc(&self) -> Option<OidcConfig> {
        let (issuer, client_id) = self
            .oidc_issuer
            .as_ref()
            .zip(self.oidc_client_id.as_ref())?;
        Some(OidcConfig {
            client_secret: self.oidc_client_secret.clone(),
            ..OidcConfig::new(issuer, client_id)
        })
    }
}

/// Runs the proxy until `shutdown` resolves; `default_state` is used when
/// no --state-dir is given.
pub fn run(
    args: &ProxyArgs,
    default_state: &Path,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ProxyPeerError> {
    let setup_key = args.setup_key.resolve()?.unwrap_or_default();
    let server = Management::new(&args.management_url, args.management_ca.as_deref())?;
    let public_url = args
        .public_url
        .as_deref()
        .map(|url| PublicUrl::parse(url, &args.domain))
        .transpose()?;
    let state = StateDir::open(args.state_dir.as_deref().unwrap_or(default_state))?;
    let key = state.private_key()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(ProxyPeerError::Runtime)?;
    runtime.block_on(async {
        if let Some(at) = args.metrics_listen {
            meshplane_metrics::Exporter::new().serve(at).await?;
        }
        // Netstack, and no forwarding: the proxy only dials out to targets.
        let link = Link::up(&server, &setup_key, key.clone(), &LinkOptions::default()).await?;
        let mesh_ip = link.identity.address.addr();
        let (services, table) = watch::channel(Arc::new(Vec::new()));
        let tls = args.tls();
        let serves_tls = !matches!(tls, Tls::Plain);
        let config = Config {
            domain: args.domain.clone(),
            listen: args.listen,
            tls,
            oidc: args.oidc(),
            state_dir: Some(state.path().to_path_buf()),
        };
        let proxy = Proxy::start(config, Arc::new(MeshDialer(Arc::new(link))), table).await?;
        // What it serves, unless told otherwise: the port it got (also
        // when asked for port 0).
        let public = public_url
            .unwrap_or_else(|| PublicUrl::new(serves_tls, proxy.local_addr().port()))
            .service_url(&args.domain);
        let watcher = tokio::spawn(watch_services(
            server,
            key,
            args.domain.clone(),
            public.clone(),
            services,
        ));
        println!(
            "meshplane proxy for *.{} listening on {} as {public} (mesh IP {mesh_ip})",
            args.domain,
            proxy.local_addr()
        );
        shutdown.await;
        tracing::info!("shutting down");
        watcher.abort();
        proxy.shutdown().await;
        Ok(())
    })
}

/// Reaches targets through the proxy peer's userspace stack.
#[derive(Debug)]
struct MeshDialer(Arc<Link>);

impl Dialer for MeshDialer {
    fn dial(
        &self,
        target: SocketAddrV4,
    ) -> Pin<Box<dyn Future<Output = io::Result<Box<dyn Conn>>> + Send>> {
        let link = Arc::clone(&self.0);
        Box::pin(async move {
            let stack = link
                .netstack()
                .ok_or_else(|| io::Error::other("the proxy peer has no userspace stack"))?;
            let stream = tokio::time::timeout(DIAL_TIMEOUT, stack.connect(target))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
            Ok(Box::new(stream) as Box<dyn Conn>)
        })
    }
}

/// Follows WatchServices for `domain` (served at `public_url`) and
/// publishes every table on
/// `services`; reconnects with backoff when the stream drops, keeping the
/// last table meanwhile (a restarted server sends its own, empty, table).
async fn watch_services(
    server: Management,
    key: PrivateKey,
    domain: String,
    public_url: String,
    services: watch::Sender<Arc<Vec<Service>>>,
) {
    let mut backoff = reconnect_backoff();
    loop {
        let (got_table, result) = follow(&server, &key, &domain, &public_url, &services).await;
        let reason = match result {
            Ok(()) => "the server closed the stream".to_string(),
            Err(e) => e.to_string(),
        };
        tracing::warn!("service stream ended: {reason}");
        if got_table {
            backoff.reset();
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

/// One WatchServices stream until it ends; says whether any table arrived.
async fn follow(
    server: &Management,
    key: &PrivateKey,
    domain: &str,
    public_url: &str,
    services: &watch::Sender<Arc<Vec<Service>>>,
) -> (bool, Result<(), ManagementError>) {
    let mut got_table = false;
    let result = async {
        let mut session = Session::connect(server, key).await?;
        let mut stream = session.watch_services(domain, public_url).await?;
        while let Some(table) = session.next_services(&mut stream).await? {
            let table = to_services(&table);
            tracing::info!("{} exposed services", table.len());
            services.send_replace(Arc::new(table));
            got_table = true;
        }
        Ok(())
    }
    .await;
    (got_table, result)
}

/// The proxy's view of a table; an entry with an unusable target is left
/// out (and logged) rather than failing the whole table.
fn to_services(table: &ServiceTable) -> Vec<Service> {
    table
        .services
        .iter()
        .filter_map(|s| {
            let service = to_service(s);
            if service.is_none() {
                tracing::warn!(
                    "service {}: unusable target {}:{}",
                    s.domain,
                    s.target_ip,
                    s.target_port
                );
            }
            service
        })
        .collect()
}

fn to_service(s: &ExposedService) -> Option<Service> {
    let ip: Ipv4Addr = s.target_ip.parse().ok()?;
    let port = u16::try_from(s.target_port).ok().filter(|p| *p != 0)?;
    let hash = |h: &str| (!h.is_empty()).then(|| h.to_string());
    Some(Service {
        domain: s.domain.clone(),
        target: SocketAddrV4::new(ip, port),
        backend_tls: s.protocol == "https",
        pin_hash: hash(&s.pin_hash),
        password_hash: hash(&s.password_hash),
        user_groups: s.user_group_names.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_become_proxy_services() {
        let exposed = ExposedService {
            domain: "demo-ab12.proxy.localhost".into(),
            source_peer_id: "p1".into(),
            target_ip: "100.64.3.4".into(),
            target_port: 8080,
            protocol: "https".into(),
            pin_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
            password_hash: String::new(),
            user_group_ids: vec!["g1".into()],
            user_group_names: vec!["devops".into()],
        };
        let broken = ExposedService {
            target_ip: "not an ip".into(),
            ..exposed.clone()
        };
        let no_port = ExposedService {
            target_port: 70_000,
            ..exposed.clone()
        };
        let table = ServiceTable {
            services: vec![exposed, broken, no_port],
            revision: 3,
        };
        let services = to_services(&table);
        assert_eq!(
            services,
            vec![Service {
                domain: "demo-ab12.proxy.localhost".into(),
                target: "100.64.3.4:8080".parse().unwrap(),
                backend_tls: true,
                pin_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into()),
                password_hash: None,
                user_groups: vec!["devops".into()],
            }]
        );
    }
}

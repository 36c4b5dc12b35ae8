//! The listener: accepts visitors, terminates TLS and dispatches requests.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::backend::{self, BackendClient};
use crate::body::ProxyBody;
use crate::dialer::Dialer;
use crate::fetch::WebClient;
use crate::forward::{forward, Origin};
use crate::hasher::Hasher;
use crate::oidc::{OidcConfig, Sso};
use crate::ratelimit::AttemptLimiter;
use crate::service::{self, Service};
use crate::session::{SessionError, SessionKeys};
use crate::tls::{self, Tls, TlsError};
use crate::{gate, host, pages};

/// How long a visitor has for the TLS handshake and for sending headers.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);
/// How long shutdown waits for requests in flight.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// How the proxy is set up.
#[derive(Debug, Clone)]
pub struct Config {
    /// The proxy cluster domain; services are `<name>.<domain>`.
    pub domain: String,
    pub listen: SocketAddr,
    pub tls: Tls,
    /// The identity provider for services with user groups.
    pub oidc: Option<OidcConfig>,
    /// Keeps the Ed25519 cookie-signing key across restarts; without it the
    /// key is generated in memory and sessions end with the process.
    pub state_dir: Option<PathBuf>,
}

/// Errors of starting the proxy.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Session(#[from] SessionError),
}

/// What every request handler shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub services: watch::Receiver<Arc<Vec<Service>>>,
    pub client: BackendClient,
    pub keys: SessionKeys,
    pub limiter: AttemptLimiter,
    /// Runs the PIN / password checks, one per hash permit of `limiter`.
    pub hasher: Hasher,
    pub sso: Option<Sso>,
    /// `https` or `http`: how visitors reach the proxy.
    pub scheme: &'static str,
    pub shutdown: watch::Receiver<bool>,
}

/// A running proxy.
#[derive(Debug)]
pub struct Proxy {
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    accept_loop: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Binds `config.listen` and starts serving. Services come from
    /// `services`: each request looks at the channel's current value, so a
    /// service removed from the table is gone from the next request on.
    pub async fn start(
        config: Config,
        dialer: Arc<dyn Dialer>,
        services: watch::Receiver<Arc<Vec<Service>>>,
    ) -> Result<Proxy, ProxyError> {
        let tls_config = tls::server_config(&config.tls, &config.domain)?;
        let keys = SessionKeys::load_or_create(config.state_dir.as_deref())?;
        let sso = match config.oidc {
            Some(oidc) => Some(Sso::new(oidc, WebClient::new(tls::web_client_config()?))),
            None => None,
        };
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| ProxyError::Listen {
                    addr: config.listen,
                    source,
                })?;
        let local_addr = listener.local_addr().map_err(|source| ProxyError::Listen {
            addr: config.listen,
            source,
        })?;
        let (stop, shutdown) = watch::channel(false);
        tokio::spawn(crate::metrics::count_services(services.clone()));
        let hash_permits = AttemptLimiter::hash_permits_for_this_machine();
        let shared = Arc::new(Shared {
            services,
            client: backend::client(dialer, tls::backend_client_config()?),
            keys,
            limiter: AttemptLimiter::new(hash_permits),
            hasher: Hasher::new(hash_permits),
            sso,
            scheme: if tls_config.is_some() {
                "https"
            } else {
                "http"
            },
            shutdown,
        });
        let acceptor = tls_config.map(TlsAcceptor::from);
        let accept_loop = tokio::spawn(accept_loop(listener, acceptor, shared));
        tracing::info!(%local_addr, domain = %config.domain, "proxy listening");
        Ok(Proxy {
            local_addr,
            stop,
            accept_loop,
        })
    }

    /// The address the proxy listens on (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, lets requests in flight finish (up to a bound) and
    /// closes upgraded tunnels.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        if let Err(e) = self.accept_loop.await {
            tracing::warn!(error = %e, "proxy accept loop ended abnormally");
        }
    }
}

async fn accept_loop(listener: TcpListener, acceptor: Option<TlsAcceptor>, shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.clone();
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    connections.spawn(connection(stream, peer, acceptor.clone(), shared.clone()));
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off briefly.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = stopped(&mut shutdown) => break,
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        connections.abort_all();
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    acceptor: Option<TlsAcceptor>,
    shared: Arc<Shared>,
) {
    let _ = stream.set_nodelay(true);
    match acceptor {
        None => serve(stream, peer, shared).await,
        Some(acceptor) => {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => serve(tls, peer, shared).await,
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "tls handshake failed"),
                Err(_) => tracing::debug!(%peer, "tls handshake timed out"),
            }
        }
    }
}

/// Serves HTTP/1.1 on one visitor connection until it closes or the proxy
/// shuts down (then the request in flight finishes first).
async fn serve<S>(stream: S, peer: SocketAddr, shared: Arc<Shared>)
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let mut shutdown = shared.shutdown.clone();
    let origin = Origin {
        client_ip: peer.ip().to_canonical(),
        proto: shared.scheme,
    };
    let service = service_fn(move |req| {
        let shared = shared.clone();
        async move {
            let response = handle(&shared, req, origin).await;
            crate::metrics::request(response.status());
            Ok::<_, Infallible>(response)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HANDSHAKE_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with error");
            }
            return;
        }
        _ = stopped(&mut shutdown) => {}
    }
    conn.as_mut().graceful_shutdown();
    if let Err(e) = conn.await {
        tracing::debug!(%peer, error = %e, "connection ended with error");
    }
}

/// Resolves once the proxy is shutting down.
pub(crate) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    // Dropping the sender also means stop; the guard must not be held.
    let _ = shutdown.wait_for(|stop| *stop).await.map(|_| ());
}

/// Routes one request by its host.
async fn handle(shared: &Shared, req: Request<Incoming>, origin: Origin) -> Response<ProxyBody> {
    let host = match host::of_request(&req) {
        Ok(host) => host,
        Err(e) => return pages::bad_request(&e.to_string()),
    };
    let services = shared.services.borrow().clone();
    let Some(service) = service::find(&services, &host.name) else {
        return pages::not_found(&host.name);
    };
    if service.is_protected() {
        gate::handle(shared, service, &host, req, origin).await
    } else {
        forward(
            &shared.client,
            service,
            req,
            origin,
            shared.shutdown.clone(),
        )
        .await
    }
}

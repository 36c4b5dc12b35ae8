//! The accept loop of a relay running as its own process (`meshplane
//! relay`). Connections that have not upgraded yet are bounded here by the
//! same caps as upgraded ones (in total and per source address; beyond
//! them a connection is closed as soon as it is accepted), each with
//! [`HEADER_TIMEOUT`] to send its request.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use thiserror::Error;
use tokio::net::TcpListener;
use tower::ServiceExt as _;

use super::admission::Admission;
use super::{Limits, Relay};
use crate::management::{self, ManagementError};

/// Why a relay process could not start.
#[derive(Debug, Error)]
pub enum RunError {
    #[error("cannot get the relay token key: {0}")]
    Management(#[from] ManagementError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Runs a relay on `listen` that accepts the tokens of the management
/// server at `management_url` (whose key it fetches first), until
/// `shutdown` resolves.
pub async fn run(
    listen: SocketAddr,
    management_url: &str,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let verifier = management::fetch_verifier(management_url).await?;
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| RunError::Bind {
            addr: listen,
            source,
        })?;
    let at = listener.local_addr().unwrap_or(listen);
    tracing::info!(listen = %at, management = management_url, "meshplane relay listening");
    let relay = Relay::new(verifier, Limits::default());
    serve(listener, relay, Router::new(), shutdown).await;
    tracing::info!("relay stopped");
    Ok(())
}

/// Time a connection has to send its request head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed accept (the descriptor table full, say).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `relay` (and whatever else `app` routes) on `listener` until
/// `shutdown` resolves; then closes every relay connection.
pub async fn serve(
    listener: TcpListener,
    relay: Relay,
    app: Router,
    shutdown: impl Future<Output = ()>,
) {
    let app = app.merge(relay.router());
    let limits = relay.shared.limits;
    let pending = Admission::new(limits.max_connections, limits.max_connections_per_address);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    let builder = Arc::new(builder.http1_only());
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let Ok(permit) = pending.admit(peer.ip()) else {
            tracing::debug!(%peer, "connection refused: at the cap");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (app, builder) = (app.clone(), builder.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |mut req| {
                req.extensions_mut().insert(ConnectInfo(peer));
                let app = app.clone();
                async move {
                    let response = app.oneshot(req.map(axum::body::Body::new)).await;
                    Ok::<_, Infallible>(response.unwrap_or_else(|never| match never {}))
                }
            });
            let result = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .await;
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended");
            }
            // An upgraded connection returns here at the upgrade: the
            // relay's own caps hold it from then on.
            drop(permit);
        });
    }
    relay.shutdown();
}

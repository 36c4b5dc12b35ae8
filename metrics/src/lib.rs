//! How every meshplane program serves its Prometheus metrics
//! (`meshplane-server --metrics-listen`, `meshplane daemon
//! --metrics-listen`, `meshplane proxy --metrics-listen`): it installs the
//! process-wide recorder of the `metrics` crate and serves the text format
//! at `/metrics` on a listener of its own, so the numbers never share a
//! port, a firewall rule or a connection limit with what strangers reach.
//! The listener has no authentication and no connection limits: bind it to
//! a private address.
//!
//! Programs record with the `metrics` macros where things happen. What is
//! cheaper to read than to count as it happens (the daemon's per-peer byte
//! counts, which the WireGuard engine keeps anyway) is set by a `refresh`
//! hook run before each scrape.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder};
use metrics_util::MetricKindMask;
use thiserror::Error;

/// Histogram buckets of durations (metrics named `…_seconds`), in seconds.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How often the recorder drops stale histogram samples.
const UPKEEP: Duration = Duration::from_secs(5);

/// Why metrics cannot be served.
#[derive(Debug, Error)]
pub enum MetricsError {
    #[error("metrics: {0}")]
    Recorder(#[from] BuildError),
    #[error("cannot listen for metrics on {listen}: {source}")]
    Listen {
        listen: SocketAddr,
        source: std::io::Error,
    },
}

/// What to serve besides what the program records as it runs.
#[derive(Clone)]
pub struct Exporter<R> {
    refresh: R,
    forget_after: Option<Duration>,
}

impl<R> std::fmt::Debug for Exporter<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter")
            .field("forget_after", &self.forget_after)
            .finish_non_exhaustive()
    }
}

impl Exporter<fn() -> std::future::Ready<()>> {
    /// Only what the program records.
    pub fn new() -> Self {
        Exporter {
            refresh: || std::future::ready(()),
            forget_after: None,
        }
    }
}

impl Default for Exporter<fn() -> std::future::Ready<()>> {
    fn default() -> Self {
        Exporter::new()
    }
}

impl<R, F> Exporter<R>
where
    R: Fn() -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    /// Runs `refresh` before each scrape, to set the metrics that are read
    /// from the program's state rather than recorded as they change.
    pub fn with_refresh<R2, F2>(self, refresh: R2) -> Exporter<R2>
    where
        R2: Fn() -> F2 + Send + Sync + 'static,
        F2: Future<Output = ()> + Send + 'static,
    {
        Exporter {
            refresh,
            forget_after: self.forget_after,
        }
    }

    /// Drops series not touched for `idle`: for labels that come and go
    /// (a peer removed from the map), so they do not pile up over a long
    /// run. Only for programs that set every series at each refresh.
    pub fn forget_after(mut self, idle: Duration) -> Self {
        self.forget_after = Some(idle);
        self
    }

    /// Installs the process's recorder and serves `/metrics` on `listen`
    /// from a task of its own; the address it listens on (for port 0).
    pub async fn serve(self, listen: SocketAddr) -> Result<SocketAddr, MetricsError> {
        let handle = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)?
            .idle_timeout(MetricKindMask::ALL, self.forget_after)
            .install_recorder()?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|source| MetricsError::Listen { listen, source })?;
        let listen = listener
            .local_addr()
            .map_err(|source| MetricsError::Listen { listen, source })?;
        tracing::info!(%listen, "metrics at /metrics");
        let upkeep = handle.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(UPKEEP);
            loop {
                tick.tick().await;
                upkeep.run_upkeep();
            }
        });
        let refresh = Arc::new(self.refresh);
        let app = Router::new().route(
            "/metrics",
            get(move || {
                let (refresh, handle) = (refresh.clone(), handle.clone());
                async move {
                    refresh().await;
                    handle.render()
                }
            }),
        );
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "metrics listener stopped");
            }
        });
        Ok(listen)
    }
}

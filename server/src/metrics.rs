//! Prometheus metrics, served in the text format at `/metrics` on
//! `--metrics-listen ADDR` (off by default): a listener of its own, so the
//! numbers never share a port, a firewall rule or a connection limit with
//! the API that strangers reach.
//!
//! What is measured, and where it is recorded:
//!
//! | metric | labels | recorded by |
//! |---|---|---|
//! | `meshplane_http_requests_total`, `meshplane_http_request_duration_seconds` | `route` (the matched pattern), `method`, `status` | [`track_rest`], on every REST call |
//! | `meshplane_grpc_requests_total`, `meshplane_grpc_request_duration_seconds` | `method` (the gRPC path), `code` | [`track_grpc`], when the call's status is known (its trailers) |
//! | `meshplane_store_transaction_seconds` | `kind` (`read`/`write`) | the store, from begin to commit or rollback |
//! | `meshplane_expose_sessions_active`, `meshplane_expose_sessions_total` | `event` (`created`, `stopped`, `expired`) | the expose session table |
//!
//! The recorder is process-wide (the `metrics` crate's global); without
//! `--metrics-listen` none is installed and recording costs a branch.

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{MatchedPath, Request};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use hyper::body::{Frame, SizeHint};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Histogram buckets of request and transaction durations, in seconds.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How often the recorder drops stale histogram samples.
const UPKEEP: Duration = Duration::from_secs(5);

/// Installs the process's recorder and serves `/metrics` on `listen`.
pub async fn serve(listen: SocketAddr) -> Result<(), String> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
        .map_err(|e| format!("metrics: {e}"))?
        .install_recorder()
        .map_err(|e| format!("metrics: {e}"))?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen for metrics on {listen}: {e}"))?;
    tracing::info!(%listen, "metrics at /metrics");
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(UPKEEP);
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    let app = Router::new()
        .route("/metrics", get(render))
        .with_state(handle);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics listener stopped");
        }
    });
    Ok(())
}

async fn render(axum::extract::State(handle): axum::extract::State<PrometheusHandle>) -> String {
    handle.render()
}

/// Route middleware of the REST router: counts and times every call by its
/// matched route pattern (so ids do not make a label each).
pub async fn track_rest(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = request.method().to_string();
    let response = next.run(request).await;
    let labels = [
        ("route", route),
        ("method", method),
        ("status", response.status().as_u16().to_string()),
    ];
    metrics::counter!("meshplane_http_requests_total", &labels).increment(1);
    metrics::histogram!("meshplane_http_request_duration_seconds", &labels)
        .record(started.elapsed());
    response
}

/// Middleware of the whole listener: counts and times every gRPC call by
/// its method path and status code. A call's status is in the response
/// headers when it failed at once ("trailers only"), otherwise in the
/// trailers at its end.
pub async fn track_grpc(request: Request, next: Next) -> Response {
    if !is_grpc(request.headers()) {
        return next.run(request).await;
    }
    let started = Instant::now();
    let method = request.uri().path().to_string();
    let response = next.run(request).await;
    if let Some(code) = grpc_status(response.headers()) {
        record_grpc(&method, &code, started);
        return response;
    }
    response.map(|body| {
        Body::new(GrpcBody {
            body,
            method,
            started,
            recorded: false,
        })
    })
}

fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

fn grpc_status(headers: &HeaderMap) -> Option<String> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn record_grpc(method: &str, code: &str, started: Instant) {
    let labels = [("method", method.to_string()), ("code", code.to_string())];
    metrics::counter!("meshplane_grpc_requests_total", &labels).increment(1);
    metrics::histogram!("meshplane_grpc_request_duration_seconds", &labels)
        .record(started.elapsed());
}

/// A gRPC response body that records the call when its trailers pass (or,
/// for a call cut off before them, when it is dropped, as code 1,
/// CANCELLED).
struct GrpcBody {
    body: Body,
    method: String,
    started: Instant,
    recorded: bool,
}

impl HttpBody for GrpcBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(code) = frame.trailers_ref().and_then(grpc_status) {
                self.recorded = true;
                record_grpc(&self.method, &code, self.started);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for GrpcBody {
    fn drop(&mut self) {
        if !self.recorded {
            record_grpc(&self.method, "1", self.started);
        }
    }
}

/// The end of a store transaction begun at `started`.
pub fn transaction(kind: &'static str, started: Instant) {
    metrics::histogram!("meshplane_store_transaction_seconds", "kind" => kind)
        .record(started.elapsed());
}

/// An expose session event: `created`, `stopped` or `expired`.
pub fn expose_session(event: &'static str) {
    metrics::counter!("meshplane_expose_sessions_total", "event" => event).increment(1);
    let active = metrics::gauge!("meshplane_expose_sessions_active");
    if event == "created" {
        active.increment(1.0);
    } else {
        active.decrement(1.0);
    }
}

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
//! | `meshplane_peers_connected` | | the update hub, when a peer's first Sync stream joins and its last one leaves |
//! | `meshplane_streams_open`, `meshplane_stream_sent_bytes_total` | `stream` (`sync`, `signal`, `watch_services`), `protocol` (`meshplane`, `netbird`) | [`track_grpc`], while a stream's response body lives and as its messages pass |
//! | `meshplane_map_computations_total`, `meshplane_maps_computed_total`, `meshplane_map_computation_seconds` | | the update hub, per computation of an account's maps (maps: one per connected peer) |
//! | `meshplane_relay_sessions_active`, `meshplane_relay_sessions_total`, `meshplane_relay_sent_bytes_total` | | the relay on this port (`meshplane-relay`) |
//!
//! The recorder is process-wide (the `metrics` crate's global, installed by
//! `meshplane-metrics`); without `--metrics-listen` none is installed and
//! recording costs a branch.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{MatchedPath, Request};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use hyper::body::{Frame, SizeHint};

/// Installs the process's recorder and serves `/metrics` on `listen`.
pub async fn serve(listen: std::net::SocketAddr) -> Result<(), String> {
    meshplane_metrics::Exporter::new()
        .serve(listen)
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

/// The long-lived streams, by gRPC path: what they are and in which
/// protocol, for `meshplane_streams_open` and
/// `meshplane_stream_sent_bytes_total`.
const STREAMS: &[(&str, &str, &str)] = &[
    (
        "/meshplane.management.v1.Management/Sync",
        "sync",
        "meshplane",
    ),
    ("/management.ManagementService/Sync", "sync", "netbird"),
    (
        "/meshplane.management.v1.Management/WatchServices",
        "watch_services",
        "meshplane",
    ),
    (
        "/signalexchange.SignalExchange/ConnectStream",
        "signal",
        "netbird",
    ),
];

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
    let stream = OpenStream::of(&method);
    response.map(|body| {
        Body::new(GrpcBody {
            body,
            method,
            started,
            recorded: false,
            stream,
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
    /// Set for the long-lived streams: counted open while the body lives.
    stream: Option<OpenStream>,
}

/// One open long-lived stream (a [`STREAMS`] entry) whose response body
/// is being sent: it counts in `meshplane_streams_open` until dropped, and
/// the gRPC messages it carries (their encoded bytes with gRPC's 5-byte
/// frame header, before HTTP/2 framing and TLS) in
/// `meshplane_stream_sent_bytes_total`.
struct OpenStream {
    labels: [(&'static str, &'static str); 2],
}

impl OpenStream {
    fn of(method: &str) -> Option<OpenStream> {
        let (_, stream, protocol) = STREAMS.iter().find(|(path, _, _)| *path == method)?;
        let labels = [("stream", *stream), ("protocol", *protocol)];
        metrics::gauge!("meshplane_streams_open", &labels).increment(1.0);
        Some(OpenStream { labels })
    }

    fn sent(&self, bytes: usize) {
        metrics::counter!("meshplane_stream_sent_bytes_total", &self.labels)
            .increment(u64::try_from(bytes).unwrap_or(u64::MAX));
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        metrics::gauge!("meshplane_streams_open", &self.labels).decrement(1.0);
    }
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
            if let (Some(stream), Some(data)) = (&self.stream, frame.data_ref()) {
                stream.sent(data.len());
            }
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

/// A peer's first Sync stream opened (`true`) or its last one closed: the
/// peers connected to this server now.
pub fn peer_connected(connected: bool) {
    let gauge = metrics::gauge!("meshplane_peers_connected");
    if connected {
        gauge.increment(1.0);
    } else {
        gauge.decrement(1.0);
    }
}

/// One computation of an account's maps for `peers` connected peers, which
/// took `took` (when known).
pub fn maps_computed(took: Option<std::time::Duration>, peers: usize) {
    metrics::counter!("meshplane_map_computations_total").increment(1);
    metrics::counter!("meshplane_maps_computed_total")
        .increment(u64::try_from(peers).unwrap_or(u64::MAX));
    if let Some(took) = took {
        metrics::histogram!("meshplane_map_computation_seconds").record(took);
    }
}

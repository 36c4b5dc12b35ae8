//! The accept loop: serves the router (REST and gRPC on one port, HTTP/1
//! and HTTP/2) while bounding what clients can hold open.
//!
//! - At most `max_connections` connections at once (kept below the
//!   process's open-file limit): at the cap the loop stops accepting, so
//!   further clients wait in the listen backlog instead of the process
//!   running out of descriptors. An accept error (the descriptor table full
//!   anyway, for instance) backs the loop off instead of spinning.
//! - At most `max_connections_per_address` from one source address: the
//!   excess is closed as soon as it is accepted.
//! - A connection must complete a request within `header_read_timeout`
//!   (the HTTP/1 parser applies it to every request head; the watchdog
//!   below to the first request of either protocol, which also covers a
//!   client stalling inside the HTTP/2 preface).
//! - A connection with no request in progress for `idle_timeout` is shut
//!   down gracefully (HTTP/2: GOAWAY). hyper has no idle timeout for
//!   HTTP/2, so each connection counts its requests in progress, from the
//!   call until its response body is finished or dropped, and a watchdog
//!   closes it when that count has been zero for the idle time. Frames
//!   that are no request (pings, settings, window updates) do not keep a
//!   connection: holding one open takes work the server does for the
//!   client. A gRPC stream is a request in progress for its whole life,
//!   so Sync and WatchServices streams are never idle; their number per
//!   peer is bounded by [`crate::grpc`].
//! - HTTP/2: the server pings a silent client and closes the connection
//!   when the ping is not answered (a half-dead peer holding a stream),
//!   and caps the streams of one connection. Client pings are answered, as
//!   the HTTP/2 stack always does (NetBird clients ping every 30 s).
//! - HTTP/1: the request that reaches `max_requests_per_connection` is
//!   answered with `Connection: close`.
//! - With TLS (`--tls-cert`/`--tls-key`) every connection first completes
//!   its handshake within `header_read_timeout` (ALPN offers `h2` for gRPC
//!   and `http/1.1` for REST and the relay); the limits above then apply to
//!   the decrypted connection as to a plain one.
//! - HTTP/1 upgrades (the relay's WebSocket) are served: the connection
//!   leaves this loop, its watchdogs and its place under the caps when it
//!   upgrades, and the relay's own caps hold it from then on.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::ConnectInfo;
use axum::http::header::CONNECTION;
use axum::http::{HeaderValue, Request, Response, Version};
use axum::Router;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use meshplane_core::backoff::Backoff;
use rand_core::{OsRng, RngCore};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use crate::config::Limits;

/// First pause after a failed accept; it doubles (jittered) up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// Descriptors kept free of connections for the database, the listener
/// and the rest of the process.
const RESERVED_FDS: u64 = 64;

/// Serves `app` on `listener` within `limits` until `shutdown` resolves,
/// then shuts every connection down gracefully and waits for them (each
/// gets `header_read_timeout` to finish before it is dropped).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) {
    let capacity = connection_budget(limits.max_connections);
    let connections = Arc::new(Semaphore::new(capacity));
    let addresses = PerAddress::new(limits.max_connections_per_address);
    let builder = Arc::new(builder(&limits));
    let (drain, draining) = watch::channel(false);
    let mut backoff = Backoff::new(MIN_BACKOFF, MAX_BACKOFF, OsRng.next_u64());
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = accept(&listener, &connections) => accepted,
        };
        let (permit, stream, peer) = match accepted {
            Ok(accepted) => {
                backoff.reset();
                accepted
            }
            Err(e) => {
                let pause = backoff.next_delay();
                tracing::warn!(error = %e, pause_ms = pause.as_millis(), "accept failed");
                tokio::select! {
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(pause) => {}
                }
                continue;
            }
        };
        let Some(slot) = addresses.admit(peer.ip()) else {
            tracing::debug!(%peer, "connection refused: too many from this address");
            continue;
        };
        let connection = Connection {
            builder: builder.clone(),
            app: app.clone(),
            peer,
            limits,
            draining: draining.clone(),
            _held: (permit, slot),
        };
        tokio::spawn(connection.start(stream, tls.clone()));
    }
    drop(listener);
    let _ = drain.send(true);
    // Every connection holds a permit until it ends.
    let all = u32::try_from(capacity).unwrap_or(u32::MAX);
    let _ = connections.acquire_many(all).await;
}

/// The next connection, once one may be held.
async fn accept(
    listener: &TcpListener,
    connections: &Arc<Semaphore>,
) -> std::io::Result<(OwnedSemaphorePermit, TcpStream, SocketAddr)> {
    let permit = match connections.clone().acquire_owned().await {
        Ok(permit) => permit,
        // The semaphore is never closed.
        Err(_) => return Err(std::io::Error::other("connection limit closed")),
    };
    let (stream, peer) = listener.accept().await?;
    Ok((permit, stream, peer))
}

/// `wanted`, lowered to what the open-file limit leaves for connections.
/// The soft limit is first raised to the hard one (many systems start
/// services at a soft 1,024).
fn connection_budget(wanted: u32) -> usize {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let wanted = u64::from(wanted);
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return usize::try_from(wanted).unwrap_or(usize::MAX);
    };
    let soft = if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        hard
    } else {
        soft
    };
    let room = soft.saturating_sub(RESERVED_FDS).max(1);
    if room < wanted {
        tracing::warn!(
            max_connections = wanted,
            open_file_limit = soft,
            using = room,
            "the open-file limit leaves room for fewer connections"
        );
    }
    usize::try_from(wanted.min(room)).unwrap_or(usize::MAX)
}

/// The HTTP/1 and HTTP/2 settings of every connection.
fn builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.h2_keepalive_interval)
        .keep_alive_timeout(limits.h2_keepalive_timeout)
        .max_concurrent_streams(limits.h2_max_streams);
    builder
}

/// Open connections by source address.
#[derive(Debug, Clone)]
struct PerAddress {
    cap: usize,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One connection counted for its address until dropped.
#[derive(Debug)]
struct AddressSlot {
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl PerAddress {
    fn new(cap: u32) -> PerAddress {
        PerAddress {
            cap: usize::try_from(cap).unwrap_or(usize::MAX),
            open: Arc::default(),
        }
    }

    /// A slot for one more connection from `ip`, unless it has the cap.
    /// An IPv4 client of an IPv6 socket counts as its IPv4 address.
    fn admit(&self, ip: IpAddr) -> Option<AddressSlot> {
        let ip = ip.to_canonical();
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(ip).or_default();
        if *count >= self.cap {
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            open: self.open.clone(),
            ip,
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// What a connection is doing, for its idle watchdog.
#[derive(Debug, Clone, Copy)]
struct Activity {
    /// Requests whose response is not finished yet.
    in_flight: usize,
    /// Requests begun so far.
    begun: u32,
    /// When a request last began or ended (or the connection opened).
    since: Instant,
}

/// A request in progress; it ends when dropped.
#[derive(Debug)]
struct InFlight(Arc<watch::Sender<Activity>>);

impl InFlight {
    /// Counts a new request; also says how many began on the connection.
    fn begin(activity: &Arc<watch::Sender<Activity>>) -> (InFlight, u32) {
        let mut begun = 0;
        activity.send_modify(|a| {
            a.in_flight += 1;
            a.begun = a.begun.saturating_add(1);
            a.since = Instant::now();
            begun = a.begun;
        });
        (InFlight(activity.clone()), begun)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.send_modify(|a| {
            a.in_flight -= 1;
            a.since = Instant::now();
        });
    }
}

/// A response body that keeps its request in progress until it is
/// finished or dropped.
#[derive(Debug)]
struct Tracked {
    body: Body,
    _request: InFlight,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// One accepted connection and what it holds.
#[derive(Debug)]
struct Connection {
    builder: Arc<auto::Builder<TokioExecutor>>,
    app: Router,
    peer: SocketAddr,
    limits: Limits,
    draining: watch::Receiver<bool>,
    /// Its place under the global and the per-address caps.
    _held: (OwnedSemaphorePermit, AddressSlot),
}

impl Connection {
    /// Completes the TLS handshake when the server has a certificate, then
    /// serves the connection.
    async fn start(self, stream: TcpStream, tls: Option<TlsAcceptor>) {
        let _ = stream.set_nodelay(true);
        let Some(acceptor) = tls else {
            return self.run(stream).await;
        };
        let peer = self.peer;
        match tokio::time::timeout(self.limits.header_read_timeout, acceptor.accept(stream)).await {
            Ok(Ok(stream)) => self.run(stream).await,
            Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
        }
    }

    async fn run<S>(self, stream: S)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Connection {
            builder,
            app,
            peer,
            limits,
            mut draining,
            _held,
        } = self;
        let (activity, watched) = watch::channel(Activity {
            in_flight: 0,
            begun: 0,
            since: Instant::now(),
        });
        let activity = Arc::new(activity);
        let max_requests = limits.max_requests_per_connection;
        let service = hyper::service::service_fn(move |req| {
            handle(req, app.clone(), peer, activity.clone(), max_requests)
        });
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
        tokio::pin!(conn);
        let why = tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "connection ended");
                }
                return;
            }
            () = idle(watched, &limits) => "idle",
            _ = draining.wait_for(|d| *d) => "server stopping",
        };
        tracing::debug!(%peer, why, "closing connection");
        conn.as_mut().graceful_shutdown();
        let grace = limits.header_read_timeout;
        if tokio::time::timeout(grace, conn).await.is_err() {
            tracing::debug!(%peer, "connection dropped after the grace period");
        }
    }
}

/// Resolves when the connection has had no request in progress for the
/// idle timeout (before its first request: for the header read timeout).
async fn idle(mut watched: watch::Receiver<Activity>, limits: &Limits) {
    loop {
        let now = *watched.borrow_and_update();
        let changed = if now.in_flight > 0 {
            watched.changed().await
        } else {
            let limit = if now.begun == 0 {
                limits.header_read_timeout
            } else {
                limits.idle_timeout
            };
            tokio::select! {
                () = tokio::time::sleep_until(now.since + limit) => return,
                changed = watched.changed() => changed,
            }
        };
        if changed.is_err() {
            // The connection is gone; it ends on its own.
            return std::future::pending().await;
        }
    }
}

/// Serves one request with the client's address as [`ConnectInfo`],
/// counting it in progress until its response body is done.
async fn handle(
    mut req: Request<Incoming>,
    app: Router,
    peer: SocketAddr,
    activity: Arc<watch::Sender<Activity>>,
    max_requests: u32,
) -> Result<Response<Body>, Infallible> {
    let (request, begun) = InFlight::begin(&activity);
    let last = req.version() < Version::HTTP_2 && begun >= max_requests;
    req.extensions_mut().insert(ConnectInfo(peer));
    let mut response = app.oneshot(req.map(Body::new)).await?;
    if last && response.status() != axum::http::StatusCode::SWITCHING_PROTOCOLS {
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    Ok(response.map(|body| {
        Body::new(Tracked {
            body,
            _request: request,
        })
    }))
}

//! The relay: `GET /relay` upgrades to a WebSocket; the first frame must
//! be an auth frame whose token management signed for the id it names;
//! after that the connection's transport frames go to the peer they name,
//! with the sender's id written in.
//!
//! Everything a stranger can make it spend is bounded: connections in
//! total and per source address ([`Limits`]), the time to authenticate,
//! the size of every frame, each connection's send queue (a frame for a
//! peer whose queue is full is dropped, as a congested UDP path would),
//! one connection per peer id, and the ids one connection subscribes to.
//!
//! Health checks as NetBird's relay does them: a health-check frame every
//! 25 s, which the client must answer within 20 s or be closed.

mod admission;
mod connection;
mod queue;
mod registry;
mod standalone;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{
    CONNECTION, HOST, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION, UPGRADE,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Version};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

use crate::dial::RELAY_PATH;
use crate::token::TokenVerifier;
use admission::{Admission, Refusal};
use registry::Registry;

pub use standalone::{run, serve, RunError};

/// What the relay allows one client and all of them together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Relay connections open at once.
    pub max_connections: usize,
    /// Relay connections open at once from one source address.
    pub max_connections_per_address: usize,
    /// Bytes of frames queued for one connection before more are dropped
    /// (each frame charged a little more than its length; see
    /// `queue.rs`). 512 KiB holds a userspace TCP sender's whole window of
    /// packets, and no more memory than 64 frames of the largest size.
    pub send_queue_bytes: usize,
    /// Time from the upgrade to a valid auth frame.
    pub handshake_timeout: Duration,
    /// Between health checks.
    pub health_interval: Duration,
    /// How long after a health check an answer may come before the
    /// connection is closed.
    pub health_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 10_000,
            max_connections_per_address: 256,
            send_queue_bytes: 512 * 1024,
            handshake_timeout: Duration::from_secs(10),
            health_interval: Duration::from_secs(25),
            health_timeout: Duration::from_secs(20),
        }
    }
}

/// A relay: its connected peers, the key tokens are checked with and its
/// limits. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Relay {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    verifier: TokenVerifier,
    limits: Limits,
    admission: Admission,
    registry: Registry,
    next_connection: AtomicU64,
    /// Set by [`Relay::shutdown`]: no new connections.
    stopping: AtomicBool,
}

impl Relay {
    /// A relay accepting tokens `verifier` checks.
    pub fn new(verifier: TokenVerifier, limits: Limits) -> Relay {
        Relay {
            shared: Arc::new(Shared {
                verifier,
                limits,
                admission: Admission::new(
                    limits.max_connections,
                    limits.max_connections_per_address,
                ),
                registry: Registry::default(),
                next_connection: AtomicU64::new(1),
                stopping: AtomicBool::new(false),
            }),
        }
    }

    /// `GET /relay`, to mount on a router. The host must serve HTTP/1
    /// upgrades (hyper's `serve_connection_with_upgrades`) and put the
    /// client's address in the request as `ConnectInfo<SocketAddr>`.
    pub fn router<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        Router::new()
            .route(RELAY_PATH, get(upgrade))
            .with_state(self.clone())
    }

    /// Closes every connection (a close frame first) and refuses new ones
    /// from now on.
    pub fn shutdown(&self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.shared.registry.stop_all();
    }

    /// Peers authenticated and connected now.
    pub fn peers(&self) -> usize {
        self.shared.registry.len()
    }

    /// Relay connections open now, authenticated or not.
    pub fn connections(&self) -> usize {
        self.shared.admission.open()
    }
}

/// Accepts the WebSocket upgrade when the request is one and there is
/// room; the connection then runs in its own task.
async fn upgrade(State(relay): State<Relay>, mut req: Request) -> Response {
    let Some(key) = websocket_key(&req) else {
        return refuse(
            StatusCode::UPGRADE_REQUIRED,
            "the relay speaks WebSocket over HTTP/1.1: send an Upgrade: websocket request",
        );
    };
    let from = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
    if relay.shared.stopping.load(Ordering::SeqCst) {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "the relay is stopping");
    }
    let admitted = match relay.shared.admission.admit(from) {
        Ok(admitted) => admitted,
        Err(Refusal::Full) => return refuse(StatusCode::SERVICE_UNAVAILABLE, "the relay is full"),
        Err(Refusal::AddressFull) => {
            return refuse(
                StatusCode::TOO_MANY_REQUESTS,
                "too many relay connections from this address",
            )
        }
    };
    let instance_url = instance_url(req.headers());
    let on_upgrade = hyper::upgrade::on(&mut req);
    let connection = relay.shared.next_connection.fetch_add(1, Ordering::Relaxed);
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(e) => {
                tracing::debug!(error = %e, "relay upgrade failed");
                return;
            }
        };
        let socket = WebSocketStream::from_raw_socket(
            TokioIo::new(upgraded),
            Role::Server,
            Some(crate::client::websocket_config()),
        )
        .await;
        connection::run(socket, relay, connection, instance_url, admitted).await;
    });
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        headers.insert(SEC_WEBSOCKET_ACCEPT, accept);
    }
    response
}

/// The client's `Sec-WebSocket-Key` when the request is a WebSocket
/// upgrade of version 13 over HTTP/1.1.
fn websocket_key(req: &Request) -> Option<HeaderValue> {
    let headers = req.headers();
    let has_token = |name, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    let upgrade = req.version() == Version::HTTP_11
        && has_token(CONNECTION, "upgrade")
        && has_token(UPGRADE, "websocket")
        && headers
            .get(SEC_WEBSOCKET_VERSION)
            .map(HeaderValue::as_bytes)
            == Some(b"13");
    if !upgrade {
        return None;
    }
    headers.get(SEC_WEBSOCKET_KEY).cloned()
}

/// The relay's own address as the client reached it (`rel://` and the
/// Host header): NetBird clients compare it with the addresses peers
/// advertise to find a relay they share.
fn instance_url(headers: &HeaderMap) -> String {
    headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .map(|host| format!("rel://{host}"))
        .unwrap_or_default()
}

/// A plain-text refusal of an upgrade.
fn refuse(status: StatusCode, message: &'static str) -> Response {
    (status, message).into_response()
}

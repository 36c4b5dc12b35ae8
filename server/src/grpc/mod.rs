//! The management gRPC service (`meshplane.management.v1.Management`), on
//! the same listener as the REST API: a request whose content type starts
//! with `application/grpc` goes to tonic, anything else to the REST router.
//!
//! Every call but `GetServerKey` travels sealed to the server's key
//! ([`meshplane_proto::envelope`]), so a peer can act only as the holder of
//! its WireGuard private key. [`service`] opens and seals; [`login`]
//! registers and logs peers in; [`sync`] serves the network-map streams that
//! [`updates`] keeps current; [`ephemeral`] removes ephemeral peers offline
//! too long; [`traffic`] stores the flow events peers report; [`meta`] checks what
//! peers report about their machines and stores its changes; RelayToken
//! mints relay tokens ([`crate::relay`]), which Login answers carry too. The expose calls
//! (CreateExpose, RenewExpose, StopExpose, WatchServices) are served by
//! [`crate::expose`]. The signal exchange ([`crate::signal`]) and NetBird's
//! management service ([`crate::netbird`]) are mounted beside the
//! management service.

mod ephemeral;
pub(crate) mod framing;
mod login;
mod meta;
pub(crate) mod pairs;
mod peer_streams;
mod service;
mod sync;
pub(crate) mod traffic;
mod updates;

use std::fmt::Display;

use axum::extract::Request;
use axum::http::header::{CONTENT_TYPE, HOST};
use axum::middleware::{self, Next};
use axum::Router;
use meshplane_proto::v1::management_server::ManagementServer;
use tokio::sync::watch;
use tonic::service::Routes;
use tonic::Status;
use tower::ServiceExt as _;

use crate::expose::Expose;
use crate::relay::{Authority, Issuer};
use crate::store::Store;

pub use ephemeral::remove_offline;
pub(crate) use login::{checked_peer, key_entry, login as log_in};
pub(crate) use meta::sync_meta;
pub(crate) use peer_streams::StreamSlot;
pub(crate) use service::Shared;
pub(crate) use sync::{open as open_map_stream, Deltas as MapDeltas, Frame as MapFrame};

/// Ends the open Sync and signal streams when the server stops: they never
/// end on their own, and a graceful shutdown waits for every open call.
#[derive(Debug)]
pub struct Streams(watch::Sender<bool>, crate::signal::Registry);

impl Streams {
    /// Ends every open stream (UNAVAILABLE, so daemons reconnect) and
    /// refuses new ones.
    pub fn close(&self) {
        self.0.send_replace(true);
        self.1.close();
    }
}

/// `rest` with the management service mounted beside it, and the handle
/// that ends its streams. One peer key may hold `streams_per_peer` Sync
/// streams and as many WatchServices streams ([`peer_streams`]).
pub async fn mount(
    rest: Router,
    store: &Store,
    expose: &Expose,
    streams_per_peer: u32,
    relay: std::sync::Arc<Issuer>,
) -> Result<(Router, Streams), String> {
    let reset = sync::reset_presence(store)
        .await
        .map_err(|e| format!("cannot reset peer presence: {e}"))?;
    if reset > 0 {
        tracing::info!(
            peers = reset,
            "peers left connected by an earlier run marked disconnected"
        );
    }
    let (closing, closed) = watch::channel(false);
    let service = service::Management::start(store, expose, closed, streams_per_peer, relay)
        .await
        .map_err(|e| format!("cannot load the server key: {e}"))?;
    let shared = service.shared();
    let proofs =
        crate::signal::Proofs::new(move |header, key| shared.check_signal_proof(header, key));
    let (signal, signal_streams) = crate::signal::service(store, expose, proofs, streams_per_peer);
    let (netbird, framed_netbird) = crate::netbird::service(service.shared());
    let framed = service.shared();
    let grpc = Routes::new(ManagementServer::new(service))
        .add_service(signal)
        .add_service(netbird)
        .prepare()
        .into_axum_router();
    let dispatch = move |mut req: Request, next: Next| {
        let (grpc, framed, framed_netbird) = (grpc.clone(), framed.clone(), framed_netbird.clone());
        async move {
            if is_grpc(&req) {
                if let Some(authority) = authority(&req) {
                    req.extensions_mut().insert(authority);
                }
                // The Sync calls frame their own messages (see `framing`).
                match req.uri().path() {
                    framing::SYNC_PATH => framing::respond(sync::start_framed(framed, req).await),
                    framing::NETBIRD_SYNC_PATH => {
                        framing::respond(framed_netbird.open_framed_sync(req).await)
                    }
                    _ => match grpc.oneshot(req).await {
                        Ok(response) => response,
                        Err(never) => match never {},
                    },
                }
            } else {
                next.run(req).await
            }
        }
    };
    let router = Router::new()
        .fallback_service(rest)
        .layer(middleware::from_fn(dispatch));
    Ok((router, Streams(closing, signal_streams)))
}

/// Whether the request is a gRPC call (`application/grpc`, `+proto`, ...).
fn is_grpc(req: &Request) -> bool {
    req.headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// The `host:port` the client dialled: HTTP/2's `:authority`, or HTTP/1's
/// Host header.
fn authority(req: &Request) -> Option<Authority> {
    let text = match req.uri().authority() {
        Some(a) => a.as_str().to_string(),
        None => req.headers().get(HOST)?.to_str().ok()?.to_string(),
    };
    Some(Authority(text))
}

/// A failure of the server itself: logged, and answered without details.
pub(crate) fn internal(e: impl Display) -> Status {
    tracing::error!(error = %e, "management call failed");
    Status::internal("internal error")
}

//! NetBird's management service (`management.ManagementService`), so stock
//! NetBird clients (`netbird up -m <server> -k <setup key>`) use this
//! server unchanged. It is mounted on the one listener beside our own
//! management service and the signal exchange ([`crate::grpc::mount`]),
//! which NetBird clients use too, and shares their logic: the same key
//! pair, login and registration, map streams and relay.
//!
//! - [`sealed`]: NetBird's encrypted message and its replay guard;
//! - [`peer`]: NetBird's requests in our terms, SyncMeta and Logout;
//! - [`config`]: where signal, STUN and the relay are, with the relay token;
//! - [`expose`]: `netbird expose`, served by our expose sessions;
//! - [`service`]: the tonic service.
//!
//! Maps are converted by [`meshplane_proto::netbird_map`].

mod config;
mod expose;
mod peer;
mod sealed;
mod service;

use std::sync::Arc;

use meshplane_proto::netbird::management_service_server::ManagementServiceServer;

use crate::grpc::Shared;

pub use service::NetBird;

/// The service over what our own management service shares, and the
/// state it keeps (for the calls served outside tonic).
pub fn service(shared: Arc<Shared>) -> (ManagementServiceServer<NetBird>, NetBird) {
    let netbird = NetBird::new(shared);
    (ManagementServiceServer::new(netbird.clone()), netbird)
}

//! The signal exchange (`signalexchange.SignalExchange`, NetBird's wire
//! format, see [`meshplane_proto::signal`]) on the management listener:
//! peers pass each other connection offers and candidates, sealed end to
//! end, through the server.
//!
//! - [`visibility`]: who may signal at all, and whom (the maps' view,
//!   cached per account version);
//! - [`registry`]: the open streams per key, bounded queues, delivery;
//! - [`service`]: the tonic service.
//!
//! A stream whose caller proves its key ([`Proofs`]) is *proven*: unproven
//! streams of that key (anyone can name any key on NetBird's wire) cannot
//! displace it and receive nothing while it is open.
//!
//! Bounds: a message (its whole protobuf encoding) is at most
//! [`MAX_MESSAGE`] bytes; each stream has at most [`QUEUE`] messages
//! waiting (more are dropped); a key holds at most `--streams-per-peer`
//! streams (a newer one closes the oldest).

mod registry;
mod service;
mod visibility;

use std::fmt;
use std::sync::Arc;

use crypto_box::PublicKey;
use meshplane_proto::signal::signal_exchange_server::SignalExchangeServer;
use tonic::Status;

use crate::expose::Expose;
use crate::store::Store;

pub use registry::Registry;
pub use service::Signal;
pub use visibility::Visibility;

/// Largest message accepted, encoded. Offers and candidates take a few
/// hundred bytes; an offer carrying a Rosenpass public key (about 0.5 MB)
/// is refused.
pub const MAX_MESSAGE: usize = 16 * 1024;

/// Messages waiting per stream.
pub const QUEUE: usize = 128;

/// Checks a stream's [`meshplane_proto::signal::HEADER_PROOF`] for a key:
/// the management service does, with the server's key and its replay guard.
#[derive(Clone)]
pub struct Proofs(Arc<ProofCheck>);

/// Checks a proof header's value for a key.
type ProofCheck = dyn Fn(&str, &PublicKey) -> Result<(), Status> + Send + Sync;

impl Proofs {
    pub fn new(
        check: impl Fn(&str, &PublicKey) -> Result<(), Status> + Send + Sync + 'static,
    ) -> Proofs {
        Proofs(Arc::new(check))
    }

    fn check(&self, header: &str, key: &PublicKey) -> Result<(), Status> {
        (self.0)(header, key)
    }
}

impl fmt::Debug for Proofs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Proofs")
    }
}

/// The service over `store`, and its stream registry (closed on shutdown);
/// starts the task that keeps the visibility cache current.
pub fn service(
    store: &Store,
    expose: &Expose,
    proofs: Proofs,
    streams_per_peer: u32,
) -> (SignalExchangeServer<Signal>, Registry) {
    let visibility = Visibility::new(store.clone(), expose.clone());
    tokio::spawn(visibility.clone().follow());
    let registry = Registry::new(streams_per_peer, QUEUE);
    let signal = Signal {
        registry: registry.clone(),
        visibility,
        proofs,
    };
    let server = SignalExchangeServer::new(signal)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    (server, registry)
}

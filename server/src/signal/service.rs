//! The tonic service: `ConnectStream` registers the caller's key and
//! streams what others send it; `Send` (and messages written into a
//! stream) are checked against [`Visibility`] and queued in the recipient's
//! streams ([`Registry`]).
//!
//! The sender is whoever the message's `key` says (NetBird's wire carries
//! no proof of it); the body is sealed between that key and the
//! recipient's, so a message under a borrowed key does not open at the
//! recipient and is dropped there. What the server guarantees is that keys
//! that are no allowed peer reach nobody, and that nothing passes between
//! peers that may not see each other.

use meshplane_proto::envelope::{encode_public_key, parse_public_key};
use meshplane_proto::signal::signal_exchange_server::SignalExchange;
use meshplane_proto::signal::{EncryptedMessage, HEADER_PEER_ID, HEADER_PROOF, HEADER_REGISTERED};
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};

use super::registry::{Outbox, Registry};
use super::visibility::{Refusal, Visibility};
use super::Proofs;

/// The `SignalExchange` service.
#[derive(Debug, Clone)]
pub struct Signal {
    pub(super) registry: Registry,
    pub(super) visibility: Visibility,
    pub(super) proofs: Proofs,
}

/// `key` in WireGuard's base64 form, so one key has one spelling.
fn canonical(key: &str, field: &str) -> Result<String, Status> {
    parse_public_key(key)
        .map(|k| encode_public_key(&k))
        .map_err(|_| {
            Status::invalid_argument(format!(
                "invalid {field}: must be a WireGuard public key in base64"
            ))
        })
}

fn status(refusal: Refusal) -> Status {
    match refusal {
        Refusal::Store(e) => crate::grpc::internal(e),
        Refusal::Compute(e) => crate::grpc::internal(e),
        denied => Status::permission_denied(denied.to_string()),
    }
}

impl Signal {
    /// Checks and queues `message` from `from`.
    async fn route(&self, from: String, message: EncryptedMessage) -> Result<(), Status> {
        let to = canonical(&message.remote_key, "remoteKey")?;
        self.visibility.check(&from, &to).await.map_err(status)?;
        self.registry.deliver(&EncryptedMessage {
            key: from,
            remote_key: to,
            body: message.body,
        });
        Ok(())
    }
}

#[tonic::async_trait]
impl SignalExchange for Signal {
    async fn send(
        &self,
        request: Request<EncryptedMessage>,
    ) -> Result<Response<EncryptedMessage>, Status> {
        let message = request.into_inner();
        let from = canonical(&message.key, "key")?;
        // A recipient without a stream: dropped, and still a success, as
        // in NetBird's service (its clients retry failed sends).
        self.route(from, message).await?;
        Ok(Response::new(EncryptedMessage::default()))
    }

    type ConnectStreamStream = Outbox;

    async fn connect_stream(
        &self,
        request: Request<Streaming<EncryptedMessage>>,
    ) -> Result<Response<Outbox>, Status> {
        let key = request
            .metadata()
            .get(HEADER_PEER_ID)
            .ok_or_else(|| {
                Status::failed_precondition(format!("missing connection header: {HEADER_PEER_ID}"))
            })?
            .to_str()
            .map_err(|_| Status::invalid_argument(format!("invalid header {HEADER_PEER_ID}")))?;
        let public = parse_public_key(key).map_err(|_| {
            Status::invalid_argument(format!(
                "invalid {HEADER_PEER_ID}: must be a WireGuard public key in base64"
            ))
        })?;
        let key = encode_public_key(&public);
        // A proof that is present must hold: a client that means to prove
        // its key is told when it does not.
        let proven = match request.metadata().get(HEADER_PROOF) {
            None => false,
            Some(proof) => {
                let proof = proof.to_str().map_err(|_| {
                    Status::invalid_argument(format!("invalid header {HEADER_PROOF}"))
                })?;
                self.proofs.check(proof, &public)?;
                true
            }
        };
        self.visibility.admit(&key).await.map_err(status)?;
        let outbox = self.registry.register(&key, proven)?;
        // What the client writes into the call is routed like Send, under
        // the stream's key, until either side goes away.
        let gone = outbox.gone();
        let mut inbound = request.into_inner();
        let signal = self.clone();
        tokio::spawn(async move {
            loop {
                let message = tokio::select! {
                    () = gone.wait() => break,
                    message = inbound.message() => match message {
                        Ok(Some(message)) => message,
                        Ok(None) | Err(_) => break,
                    },
                };
                // Only under the stream's own key.
                if canonical(&message.key, "key").ok().as_ref() != Some(&key) {
                    continue;
                }
                // A refused message cannot be answered on a stream: dropped.
                let _ = signal.route(key.clone(), message).await;
            }
        });
        let mut response = Response::new(outbox);
        response
            .metadata_mut()
            .insert(HEADER_REGISTERED, MetadataValue::from_static("1"));
        Ok(response)
    }
}

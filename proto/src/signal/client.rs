//! The daemon's side of the signal exchange, over the tonic [`Channel`] it
//! already has to the management server (the service shares its port).
//!
//! [`SignalClient::connect`] opens the `ConnectStream` that receives what
//! other peers send to our key and returns once the server confirmed the
//! registration; [`SignalClient::send`] seals a body to a remote key and
//! sends it with the unary `Send`, so a refusal (the remote is not a peer we
//! may see) comes back as that call's status. The client does not reconnect:
//! when [`SignalStream::recv`] ends, the caller connects again. A daemon
//! builds it with [`SignalClient::proving_to`] the server's key, so its
//! streams carry the proof of its key and nobody else can take them over.

use std::fmt;

use crypto_box::{PublicKey, SecretKey};
use meshplane_core::Timestamp;
use rand_core::OsRng;
use thiserror::Error;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::{Request, Status, Streaming};

use super::signal_exchange_client::SignalExchangeClient;
use super::{
    open_body, prove, seal_body, Body, EncryptedMessage, HEADER_PEER_ID, HEADER_PROOF,
    HEADER_REGISTERED,
};
use crate::envelope::{encode_public_key, parse_public_key, EnvelopeError};

/// Why a signal call failed.
#[derive(Debug, Error)]
pub enum SignalError {
    /// The server refused the call or the connection failed.
    #[error("signal call failed: {0}")]
    Status(#[from] Status),
    /// The stream opened without the registration header.
    #[error("the signal server did not confirm the stream's registration")]
    NotRegistered,
    /// A remote key that is not a WireGuard public key.
    #[error("remote key {key:?}: {error}")]
    RemoteKey { key: String, error: EnvelopeError },
}

/// A peer's handle on the signal service.
#[derive(Clone)]
pub struct SignalClient {
    grpc: SignalExchangeClient<Channel>,
    secret: SecretKey,
    public: String,
    /// The management server's key, to prove our key to ([`HEADER_PROOF`]).
    server: Option<PublicKey>,
}

impl fmt::Debug for SignalClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignalClient")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

/// A message another peer sent us, opened.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    /// The sender's WireGuard public key, base64.
    pub from: String,
    pub body: Body,
}

impl SignalClient {
    /// A client acting as the holder of `secret` (the peer's WireGuard
    /// private key) over `channel`.
    pub fn new(channel: Channel, secret: SecretKey) -> SignalClient {
        let public = encode_public_key(&secret.public_key());
        SignalClient {
            grpc: SignalExchangeClient::new(channel),
            secret,
            public,
            server: None,
        }
    }

    /// Proves our key to the server holding `server` (the key GetServerKey
    /// answers) when opening streams, so nobody else can open or displace
    /// them (see [`super`]). Daemons always do.
    pub fn proving_to(mut self, server: PublicKey) -> SignalClient {
        self.server = Some(server);
        self
    }

    /// Our WireGuard public key, base64: the key others address us by.
    pub fn public_key(&self) -> &str {
        &self.public
    }

    /// Opens the stream of messages addressed to us. A newer stream of the
    /// same key may displace it (the server keeps a few per key).
    pub async fn connect(&self) -> Result<SignalStream, SignalError> {
        let mut request = Request::new(futures_util::stream::pending::<EncryptedMessage>());
        let id =
            MetadataValue::try_from(self.public.as_str()).map_err(|_| SignalError::RemoteKey {
                key: self.public.clone(),
                error: EnvelopeError::BadKey,
            })?;
        request.metadata_mut().insert(HEADER_PEER_ID, id);
        if let Some(server) = &self.server {
            let proof = prove(&self.public, &self.secret, server, now(), &mut OsRng);
            // Base64 is always a valid header value.
            if let Ok(proof) = MetadataValue::try_from(proof) {
                request.metadata_mut().insert(HEADER_PROOF, proof);
            }
        }
        let response = self.grpc.clone().connect_stream(request).await?;
        if response.metadata().get(HEADER_REGISTERED).is_none() {
            return Err(SignalError::NotRegistered);
        }
        Ok(SignalStream {
            inbound: response.into_inner(),
            secret: self.secret.clone(),
            unopened: 0,
        })
    }

    /// Seals `body` to `remote_key` and sends it. Succeeds also when the
    /// remote is not connected (the message is then dropped, as in
    /// NetBird's service); PERMISSION_DENIED when we may not reach it.
    pub async fn send(&self, remote_key: &str, body: &Body) -> Result<(), SignalError> {
        let theirs = parse_public_key(remote_key).map_err(|error| SignalError::RemoteKey {
            key: remote_key.to_string(),
            error,
        })?;
        let message = EncryptedMessage {
            key: self.public.clone(),
            remote_key: remote_key.to_string(),
            body: seal_body(body, &self.secret, &theirs, &mut OsRng),
        };
        self.grpc.clone().send(message).await?;
        Ok(())
    }
}

/// The open stream of messages addressed to us.
pub struct SignalStream {
    inbound: Streaming<EncryptedMessage>,
    secret: SecretKey,
    unopened: u64,
}

impl fmt::Debug for SignalStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignalStream")
            .field("unopened", &self.unopened)
            .finish_non_exhaustive()
    }
}

impl SignalStream {
    /// The next message; `Ok(None)` when the server ended the stream.
    /// Messages that do not open (sealed by another key than the one they
    /// name, or altered) are skipped and counted ([`Self::unopened`]): a
    /// forger gains nothing and cannot end our stream.
    pub async fn recv(&mut self) -> Result<Option<Received>, SignalError> {
        while let Some(message) = self.inbound.message().await? {
            let opened = parse_public_key(&message.key)
                .and_then(|from| open_body(&message.body, &self.secret, &from));
            match opened {
                Ok(body) => {
                    return Ok(Some(Received {
                        from: message.key,
                        body,
                    }))
                }
                Err(_) => self.unopened += 1,
            }
        }
        Ok(None)
    }

    /// How many received messages did not open.
    pub fn unopened(&self) -> u64 {
        self.unopened
    }
}

/// The system clock, as the server's replay window reads it.
fn now() -> Timestamp {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    Timestamp::from_millis(i64::try_from(ms).unwrap_or(i64::MAX))
}

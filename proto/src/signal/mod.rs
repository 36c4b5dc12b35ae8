//! The signal exchange (`signalexchange.SignalExchange`): how two peers pass
//! each other connection offers, answers and candidates through the server.
//!
//! The messages and the service are NetBird's wire format (package, names
//! and field numbers), so NetBird clients and ours share one service. A
//! [`Body`] travels sealed from the sender's WireGuard key to the
//! recipient's ([`seal_body`] / [`open_body`]): the same NaCl box as the
//! management envelope ([`crate::envelope::seal_box`]), without its
//! timestamp, as NetBird's clients seal it. The server sees only who writes
//! to whom. [`client`] is the daemon's side.

pub mod client;

use crypto_box::{PublicKey, SecretKey};
use prost::Message as _;
use rand_core::CryptoRngCore;

use crate::envelope::{open_box, seal_box, EnvelopeError};

/// Generated protobuf messages, client and server of the signal service.
#[allow(missing_debug_implementations, clippy::all)]
mod generated {
    tonic::include_proto!("signalexchange");
}

pub use generated::*;

/// The protobuf package of the signal service.
pub const PACKAGE: &str = "signalexchange";

/// Metadata header of `ConnectStream`: the caller's WireGuard public key,
/// base64 — whose messages the stream receives.
pub const HEADER_PEER_ID: &str = "x-wiretrustee-peer-id";

/// Response header the server sends (value `1`) once the stream is
/// registered; a client waits for it before it counts as connected.
pub const HEADER_REGISTERED: &str = "x-wiretrustee-peer-registered";

/// `body` sealed from `ours` to `theirs`: the bytes of
/// [`EncryptedMessage::body`].
pub fn seal_body(
    body: &Body,
    ours: &SecretKey,
    theirs: &PublicKey,
    rng: &mut impl CryptoRngCore,
) -> Vec<u8> {
    seal_box(&body.encode_to_vec(), ours, theirs, rng)
}

/// The body `theirs` sealed to `ours`; [`EnvelopeError::Forged`] when it was
/// sealed by any other key or altered.
pub fn open_body(
    sealed: &[u8],
    ours: &SecretKey,
    theirs: &PublicKey,
) -> Result<Body, EnvelopeError> {
    let (_, plain) = open_box(sealed, ours, theirs)?;
    Body::decode(plain.as_slice()).map_err(|e| EnvelopeError::Decode(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    #[test]
    fn bodies_open_only_between_the_two_keys() {
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        let a = SecretKey::generate(&mut rng);
        let b = SecretKey::generate(&mut rng);
        let c = SecretKey::generate(&mut rng);
        let body = Body {
            r#type: body::Type::Candidate.into(),
            payload: "candidate:1 1 udp 2130706431 192.0.2.1 51820 typ host".into(),
            wg_listen_port: 51820,
            net_bird_version: "meshplane/0.1.0".into(),
            relay_server_address: Some("rel://127.0.0.1:33073".into()),
            ..Body::default()
        };
        let sealed = seal_body(&body, &a, &b.public_key(), &mut rng);
        assert_eq!(open_body(&sealed, &b, &a.public_key()), Ok(body.clone()));
        // Another recipient, or the right one believing another sender: forged.
        assert_eq!(
            open_body(&sealed, &c, &a.public_key()),
            Err(EnvelopeError::Forged)
        );
        assert_eq!(
            open_body(&sealed, &b, &c.public_key()),
            Err(EnvelopeError::Forged)
        );
        assert_eq!(
            open_body(&sealed[..10], &b, &a.public_key()),
            Err(EnvelopeError::Truncated)
        );
    }

    #[test]
    fn field_numbers_are_netbirds() {
        // Type CANDIDATE (2) in field 1, payload "x" in field 2, port in 3,
        // relayServerAddress in 8: the bytes NetBird's encoder writes.
        let body = Body {
            r#type: body::Type::Candidate.into(),
            payload: "x".into(),
            wg_listen_port: 1,
            relay_server_address: Some("r".into()),
            ..Body::default()
        };
        assert_eq!(
            body.encode_to_vec(),
            [0x08, 2, 0x12, 1, b'x', 0x18, 1, 0x42, 1, b'r']
        );
        let message = EncryptedMessage {
            key: "k".into(),
            remote_key: "r".into(),
            body: vec![7],
        };
        assert_eq!(
            message.encode_to_vec(),
            [0x12, 1, b'k', 0x1a, 1, b'r', 0x22, 1, 7]
        );
    }
}

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
//!
//! NetBird's wire names a stream's key in a header and proves nothing, so
//! anyone who knows a peer's public key could open streams under it. Our
//! clients add [`HEADER_PROOF`]: a management envelope ([`crate::envelope`])
//! sealed by the key to the server, which the server opens with its replay
//! guard. A key's proven streams cannot be displaced by unproven ones, and
//! while it has any, messages go only to them; NetBird clients, which send
//! no proof, work as before.

pub mod client;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use crypto_box::{PublicKey, SecretKey};
use meshplane_core::Timestamp;
use prost::Message as _;
use rand_core::CryptoRngCore;

use crate::envelope::{self, open_box, seal_box, EnvelopeError, ReplayGuard};
use crate::v1::SealedMessage;

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

/// Metadata header of `ConnectStream` by which our clients prove they hold
/// the key of [`HEADER_PEER_ID`]: base64 of an encoded [`SealedMessage`]
/// ([`prove`]).
pub const HEADER_PROOF: &str = "x-meshplane-signal-proof";

/// What the proof's envelope carries, so no other sealed message (a
/// management request) passes for a proof.
const PROOF_PURPOSE: &str = "meshplane signal stream";

/// The [`HEADER_PROOF`] value for the holder of `ours` (whose public key,
/// base64, is `ours_b64`) towards the server key `server` at `now`.
pub fn prove(
    ours_b64: &str,
    ours: &SecretKey,
    server: &PublicKey,
    now: Timestamp,
    rng: &mut impl CryptoRngCore,
) -> String {
    let sealed = envelope::seal(&PROOF_PURPOSE.to_string(), ours_b64, ours, server, now, rng);
    STANDARD.encode(sealed.encode_to_vec())
}

/// Checks a [`HEADER_PROOF`] value for the key `claimed` (base64) with the
/// server's `secret`; a proof is accepted once within the replay window.
pub fn check_proof(
    header: &str,
    claimed: &PublicKey,
    secret: &SecretKey,
    guard: &mut ReplayGuard,
    now: Timestamp,
) -> Result<(), EnvelopeError> {
    let bytes = STANDARD
        .decode(header)
        .map_err(|e| EnvelopeError::Decode(e.to_string()))?;
    let sealed = SealedMessage::decode(bytes.as_slice())
        .map_err(|e| EnvelopeError::Decode(e.to_string()))?;
    let purpose: String = envelope::open(&sealed, secret, claimed, guard, now)?;
    if purpose != PROOF_PURPOSE {
        return Err(EnvelopeError::Forged);
    }
    Ok(())
}

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
    fn proofs_hold_only_for_the_key_that_made_them() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let peer = SecretKey::generate(&mut rng);
        let other = SecretKey::generate(&mut rng);
        let server = SecretKey::generate(&mut rng);
        let now = Timestamp::from_secs(1_000_000);
        let b64 = envelope::encode_public_key(&peer.public_key());
        let proof = prove(&b64, &peer, &server.public_key(), now, &mut rng);
        let mut guard = ReplayGuard::default();
        assert_eq!(
            check_proof(&proof, &other.public_key(), &server, &mut guard, now),
            Err(EnvelopeError::Forged)
        );
        assert_eq!(
            check_proof(&proof, &peer.public_key(), &server, &mut guard, now),
            Ok(())
        );
        assert_eq!(
            check_proof(&proof, &peer.public_key(), &server, &mut guard, now),
            Err(EnvelopeError::Replayed)
        );
        // A sealed management request is no proof.
        let request = envelope::seal(
            &crate::v1::RenewExposeRequest { domain: "x".into() },
            &b64,
            &peer,
            &server.public_key(),
            now,
            &mut rng,
        );
        let header = STANDARD.encode(request.encode_to_vec());
        assert_eq!(
            check_proof(&header, &peer.public_key(), &server, &mut guard, now),
            Err(EnvelopeError::Forged)
        );
        assert!(check_proof("%%", &peer.public_key(), &server, &mut guard, now).is_err());
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

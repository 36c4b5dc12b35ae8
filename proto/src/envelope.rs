//! Sealing and opening management messages.
//!
//! A request is bound to the peer's WireGuard key: its body is a NaCl box
//! (X25519 + XSalsa20-Poly1305, a 24-byte random nonce in front) between the
//! peer's WireGuard private key and the server's public key, so only the
//! holder of that private key can produce it and only the server can read
//! it. Inside is a [`SealedPayload`] with the sender's clock; a receiver
//! refuses payloads older or newer than the replay window and any nonce it
//! has already accepted within the window ([`ReplayGuard`]). Responses and
//! stream messages are sealed the same way in the other direction.
//!
//! Time is an argument (`now`), so the guard is testable with a virtual
//! clock.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use crypto_box::aead::{Aead, AeadCore};
use crypto_box::{Nonce, PublicKey, SalsaBox, SecretKey};
use meshplane_core::{Duration, Timestamp};
use prost::Message;
use rand_core::CryptoRngCore;
use thiserror::Error;

use crate::v1::{SealedMessage, SealedPayload};

/// Length of the nonce in front of every box.
pub const NONCE_LEN: usize = 24;
/// Default replay window: payloads more than this far from the receiver's
/// clock are refused, and nonces are remembered this long.
pub const DEFAULT_REPLAY_WINDOW: Duration = Duration::from_secs(60);

/// Why a sealed message was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EnvelopeError {
    #[error("invalid WireGuard public key")]
    BadKey,
    #[error("sealed message is too short")]
    Truncated,
    #[error("message could not be authenticated")]
    Forged,
    #[error("message timestamp is outside the replay window")]
    Stale,
    #[error("message was already received")]
    Replayed,
    #[error("malformed message: {0}")]
    Decode(String),
}

/// Parses a base64 WireGuard / Curve25519 public key.
pub fn parse_public_key(b64: &str) -> Result<PublicKey, EnvelopeError> {
    base64_engine::decode32(b64)
        .map(PublicKey::from)
        .ok_or(EnvelopeError::BadKey)
}

/// Parses a base64 private key.
pub fn parse_secret_key(b64: &str) -> Result<SecretKey, EnvelopeError> {
    base64_engine::decode32(b64)
        .map(SecretKey::from)
        .ok_or(EnvelopeError::BadKey)
}

/// The base64 form of a public key, as WireGuard writes it.
pub fn encode_public_key(key: &PublicKey) -> String {
    base64_engine::encode(key.as_bytes())
}

/// Base64 with the standard alphabet, as WireGuard uses for keys.
mod base64_engine {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;

    pub fn decode32(s: &str) -> Option<[u8; 32]> {
        STANDARD.decode(s).ok()?.try_into().ok()
    }

    pub fn encode(b: &[u8]) -> String {
        STANDARD.encode(b)
    }
}

/// The box between one secret key and one public key, with their X25519
/// agreement computed once.
///
/// The agreement is what sealing and opening cost (tens of microseconds;
/// the cipher over a small message is far less), so whoever seals or opens
/// many messages between the same two keys keeps one: a Sync stream for
/// every update it sends, a server for the peers that call it, a client for
/// its server. The free functions below compute it for one message.
#[derive(Clone)]
pub struct Pair {
    /// Shared by the pair's clones: the box holds the agreed key, and a
    /// clone needs no second agreement.
    salsa: Arc<SalsaBox>,
    /// The other side's key, which names the sender in the replay guard.
    theirs: PublicKey,
}

impl std::fmt::Debug for Pair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pair")
            .field("theirs", &encode_public_key(&self.theirs))
            .finish_non_exhaustive()
    }
}

impl Pair {
    /// The box between `ours` and `theirs`.
    pub fn new(ours: &SecretKey, theirs: &PublicKey) -> Pair {
        Pair {
            salsa: Arc::new(SalsaBox::new(theirs, ours)),
            theirs: theirs.clone(),
        }
    }

    /// The other side's key.
    pub fn theirs(&self) -> &PublicKey {
        &self.theirs
    }

    /// [`seal_box`] with this pair's keys.
    pub fn seal_box(&self, plain: &[u8], rng: &mut impl CryptoRngCore) -> Vec<u8> {
        let nonce = SalsaBox::generate_nonce(rng);
        // XSalsa20-Poly1305 refuses only plaintexts beyond its 256 GiB
        // limit, which no message approaches; an empty box would simply
        // fail to open on the other side.
        let sealed = self.salsa.encrypt(&nonce, plain).unwrap_or_default();
        let mut body = Vec::with_capacity(NONCE_LEN + sealed.len());
        body.extend_from_slice(&nonce);
        body.extend_from_slice(&sealed);
        body
    }

    /// [`open_box`] with this pair's keys.
    pub fn open_box(&self, data: &[u8]) -> Result<([u8; NONCE_LEN], Vec<u8>), EnvelopeError> {
        let (nonce, boxed) = data
            .split_first_chunk::<NONCE_LEN>()
            .ok_or(EnvelopeError::Truncated)?;
        let plain = self
            .salsa
            .decrypt(Nonce::from_slice(nonce), boxed)
            .map_err(|_| EnvelopeError::Forged)?;
        Ok((*nonce, plain))
    }

    /// [`seal`] with this pair's keys.
    pub fn seal<M: Message>(
        &self,
        message: &M,
        sender_key: &str,
        now: Timestamp,
        rng: &mut impl CryptoRngCore,
    ) -> SealedMessage {
        let payload = SealedPayload {
            timestamp_ms: now.as_millis(),
            message: message.encode_to_vec(),
        };
        SealedMessage {
            wg_pub_key: sender_key.to_string(),
            body: self.seal_box(&payload.encode_to_vec(), rng),
        }
    }

    /// [`open`] with this pair's keys.
    pub fn open<M: Message + Default>(
        &self,
        sealed: &SealedMessage,
        guard: &mut ReplayGuard,
        now: Timestamp,
    ) -> Result<M, EnvelopeError> {
        let (nonce, plain) = self.open_box(&sealed.body)?;
        let payload = SealedPayload::decode(plain.as_slice())
            .map_err(|e| EnvelopeError::Decode(e.to_string()))?;
        let mut key = [0u8; 56];
        key[..32].copy_from_slice(self.theirs.as_bytes());
        key[32..].copy_from_slice(&nonce);
        guard.accept(key, Timestamp::from_millis(payload.timestamp_ms), now)?;
        M::decode(payload.message.as_slice()).map_err(|e| EnvelopeError::Decode(e.to_string()))
    }
}

/// The NaCl box of `plain` from `ours` to `theirs` with a fresh random
/// nonce in front: the sealing every message between two WireGuard keys
/// uses, here and in the signal exchange's bodies.
pub fn seal_box(
    plain: &[u8],
    ours: &SecretKey,
    theirs: &PublicKey,
    rng: &mut impl CryptoRngCore,
) -> Vec<u8> {
    Pair::new(ours, theirs).seal_box(plain, rng)
}

/// Opens a box made by [`seal_box`] from `theirs` to `ours`: the nonce it
/// carried and the plaintext.
pub fn open_box(
    data: &[u8],
    ours: &SecretKey,
    theirs: &PublicKey,
) -> Result<([u8; NONCE_LEN], Vec<u8>), EnvelopeError> {
    Pair::new(ours, theirs).open_box(data)
}

/// Seals `message` from `ours` to `theirs`. `sender_key` is put in the clear
/// field `wg_pub_key` (the peer's key on requests, empty from the server).
pub fn seal<M: Message>(
    message: &M,
    sender_key: &str,
    ours: &SecretKey,
    theirs: &PublicKey,
    now: Timestamp,
    rng: &mut impl CryptoRngCore,
) -> SealedMessage {
    Pair::new(ours, theirs).seal(message, sender_key, now, rng)
}

/// Opens a message sealed by `theirs` to `ours`, checking the replay window
/// and nonce reuse against `guard`.
pub fn open<M: Message + Default>(
    sealed: &SealedMessage,
    ours: &SecretKey,
    theirs: &PublicKey,
    guard: &mut ReplayGuard,
    now: Timestamp,
) -> Result<M, EnvelopeError> {
    Pair::new(ours, theirs).open(sealed, guard, now)
}

/// Remembers the (sender, nonce) pairs accepted within the replay window.
#[derive(Debug)]
pub struct ReplayGuard {
    window: Duration,
    seen: HashSet<[u8; 56]>,
    by_time: BTreeSet<(Timestamp, [u8; 56])>,
}

impl Default for ReplayGuard {
    fn default() -> Self {
        ReplayGuard::new(DEFAULT_REPLAY_WINDOW)
    }
}

impl ReplayGuard {
    pub fn new(window: Duration) -> Self {
        ReplayGuard {
            window,
            seen: HashSet::new(),
            by_time: BTreeSet::new(),
        }
    }

    /// Accepts a message id stamped `sent` if it is within the window around
    /// `now` and new.
    fn accept(
        &mut self,
        id: [u8; 56],
        sent: Timestamp,
        now: Timestamp,
    ) -> Result<(), EnvelopeError> {
        self.forget_before(now - self.window);
        if sent < now - self.window || sent > now + self.window {
            return Err(EnvelopeError::Stale);
        }
        if !self.seen.insert(id) {
            return Err(EnvelopeError::Replayed);
        }
        self.by_time.insert((sent, id));
        Ok(())
    }

    /// Drops ids older than `cutoff`: a replay of them is stale anyway.
    fn forget_before(&mut self, cutoff: Timestamp) {
        while let Some(first) = self.by_time.first().copied() {
            if first.0 >= cutoff {
                break;
            }
            self.by_time.pop_first();
            self.seen.remove(&first.1);
        }
    }

    /// How many ids are remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::RenewExposeRequest;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    fn keys(seed: u64) -> (SecretKey, PublicKey) {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let s = SecretKey::generate(&mut rng);
        let p = s.public_key();
        (s, p)
    }

    #[test]
    fn round_trip_and_refusals() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let (peer_s, peer_p) = keys(2);
        let (srv_s, srv_p) = keys(3);
        let (evil_s, _) = keys(4);
        let now = Timestamp::from_secs(1_000_000);
        let msg = RenewExposeRequest {
            domain: "demo-ab12.proxy.example.com".into(),
        };
        let peer_key = encode_public_key(&peer_p);
        let sealed = seal(&msg, &peer_key, &peer_s, &srv_p, now, &mut rng);
        assert_eq!(parse_public_key(&sealed.wg_pub_key).unwrap(), peer_p);

        let mut guard = ReplayGuard::default();
        let got: RenewExposeRequest = open(&sealed, &srv_s, &peer_p, &mut guard, now).unwrap();
        assert_eq!(got, msg);
        // The same bytes again are a replay.
        assert_eq!(
            open::<RenewExposeRequest>(&sealed, &srv_s, &peer_p, &mut guard, now),
            Err(EnvelopeError::Replayed)
        );
        // Sealed by someone else but claiming the peer's key: forged.
        let forged = seal(&msg, &peer_key, &evil_s, &srv_p, now, &mut rng);
        assert_eq!(
            open::<RenewExposeRequest>(&forged, &srv_s, &peer_p, &mut guard, now),
            Err(EnvelopeError::Forged)
        );
        // A flipped bit: forged.
        let mut tampered = seal(&msg, &peer_key, &peer_s, &srv_p, now, &mut rng);
        let last = tampered.body.len() - 1;
        tampered.body[last] ^= 1;
        assert_eq!(
            open::<RenewExposeRequest>(&tampered, &srv_s, &peer_p, &mut guard, now),
            Err(EnvelopeError::Forged)
        );
        // Too old or from the future: stale.
        let old = seal(
            &msg,
            &peer_key,
            &peer_s,
            &srv_p,
            now - Duration::from_secs(61),
            &mut rng,
        );
        assert_eq!(
            open::<RenewExposeRequest>(&old, &srv_s, &peer_p, &mut guard, now),
            Err(EnvelopeError::Stale)
        );
        let future = seal(
            &msg,
            &peer_key,
            &peer_s,
            &srv_p,
            now + Duration::from_secs(61),
            &mut rng,
        );
        assert_eq!(
            open::<RenewExposeRequest>(&future, &srv_s, &peer_p, &mut guard, now),
            Err(EnvelopeError::Stale)
        );
        assert_eq!(
            open::<RenewExposeRequest>(&SealedMessage::default(), &srv_s, &peer_p, &mut guard, now),
            Err(EnvelopeError::Truncated)
        );
    }

    #[test]
    fn a_kept_pair_seals_and_opens_like_the_free_functions() {
        let mut rng = ChaCha20Rng::seed_from_u64(8);
        let (peer_s, peer_p) = keys(9);
        let (srv_s, srv_p) = keys(10);
        let (evil_s, _) = keys(11);
        let now = Timestamp::from_secs(1_000_000);
        let to_server = Pair::new(&peer_s, &srv_p);
        let at_server = Pair::new(&srv_s, &peer_p);
        assert_eq!(at_server.theirs(), &peer_p);
        let mut guard = ReplayGuard::default();
        for i in 0..3 {
            let msg = RenewExposeRequest {
                domain: format!("d{i}.example.com"),
            };
            let kept = to_server.seal(&msg, "k", now, &mut rng);
            let got: RenewExposeRequest = open(&kept, &srv_s, &peer_p, &mut guard, now).unwrap();
            assert_eq!(got, msg);
            let once = seal(&msg, "k", &peer_s, &srv_p, now, &mut rng);
            let got: RenewExposeRequest = at_server.open(&once, &mut guard, now).unwrap();
            assert_eq!(got, msg);
            assert_eq!(
                at_server.open::<RenewExposeRequest>(&once, &mut guard, now),
                Err(EnvelopeError::Replayed)
            );
        }
        let forged =
            Pair::new(&evil_s, &srv_p).seal(&RenewExposeRequest::default(), "k", now, &mut rng);
        assert_eq!(
            at_server.open::<RenewExposeRequest>(&forged, &mut guard, now),
            Err(EnvelopeError::Forged)
        );
    }

    #[test]
    fn guard_forgets_ids_once_they_are_stale() {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let (peer_s, peer_p) = keys(6);
        let (srv_s, srv_p) = keys(7);
        let mut guard = ReplayGuard::new(Duration::from_secs(10));
        let start = Timestamp::from_secs(100);
        for i in 0..20 {
            let now = start + Duration::from_secs(i);
            let sealed = seal(
                &RenewExposeRequest::default(),
                "",
                &peer_s,
                &srv_p,
                now,
                &mut rng,
            );
            open::<RenewExposeRequest>(&sealed, &srv_s, &peer_p, &mut guard, now).unwrap();
        }
        assert!(guard.len() <= 11, "remembered {}", guard.len());
    }

    #[test]
    fn bad_keys_are_refused() {
        assert_eq!(parse_public_key("not base64!"), Err(EnvelopeError::BadKey));
        assert_eq!(parse_public_key("AAAA"), Err(EnvelopeError::BadKey));
        assert!(parse_secret_key(&encode_public_key(&keys(1).1)).is_ok());
    }
}

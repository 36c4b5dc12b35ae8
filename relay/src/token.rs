//! Relay tokens: minted by the management server for a peer that logged in
//! with its key, checked by any relay with only the server's public key.
//!
//! On the wire (the token of an auth frame), as NetBird clients send theirs:
//! `[algorithm byte][signature][payload]`. Ours: algorithm [`ED25519`],
//! a 64-byte Ed25519 signature by the management server's relay signing
//! key, and the payload `<expiry, Unix seconds>:<peer id text>`
//! (`1767225600:sha-q83v...=`). Management hands the payload (text) and the
//! signature (base64) to the daemon, which puts the three together.
//!
//! Binding the peer id into the payload is what makes a token prove the
//! key: a relay refuses a token for another id than the auth frame names,
//! and only a peer that logged in with a key gets a token for that key's
//! id. Signing (rather than NetBird's shared HMAC secret) lets extra relay
//! processes check tokens without holding anything secret.
//!
//! Stock NetBird clients send NetBird's tokens instead ([`HMAC_SHA256`]):
//! `[1][32-byte HMAC-SHA256 of the payload][payload]`, the payload being the
//! expiry in Unix seconds as decimal text. Management mints them with a
//! secret it shares with the relay ([`HmacSecret`]); a verifier holding that
//! secret ([`TokenVerifier::with_hmac`]) accepts them. Such a token is bound
//! to no peer (NetBird's design): it proves that management gave it to a
//! peer that logged in, not which one, so the holder may claim any id
//! until it expires.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{self, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use thiserror::Error;

use crate::protocol::{PeerId, MAX_TOKEN_SIZE};

/// The algorithm byte of our tokens.
pub const ED25519: u8 = 2;
/// The algorithm byte of NetBird's HMAC-SHA256 tokens.
pub const HMAC_SHA256: u8 = 1;
/// Length of an HMAC-SHA256 tag.
const HMAC_LEN: usize = 32;
/// Shortest payload NetBird's relays accept: a Unix time in seconds.
const MIN_HMAC_PAYLOAD: usize = 10;
/// Length of an Ed25519 signature.
const SIGNATURE_LEN: usize = 64;
/// Length of an Ed25519 seed and public key.
pub const KEY_LEN: usize = 32;

/// Why a token was refused (or could not be made).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TokenError {
    #[error("relay token malformed")]
    Malformed,
    #[error("relay token algorithm {0} is not supported")]
    Algorithm(u8),
    #[error("relay token signature does not verify")]
    Signature,
    #[error("relay token expired")]
    Expired,
    #[error("relay token was issued for another peer")]
    OtherPeer,
    #[error("relay token signature is not valid base64")]
    SignatureEncoding,
    #[error("relay token too long ({0} bytes, at most {MAX_TOKEN_SIZE})")]
    TooLong(usize),
    #[error("relay signing key: {0}")]
    Key(&'static str),
}

/// A token as management gives it to a daemon: the payload text and the
/// signature in base64 (`RelayConfig.token_payload` / `token_signature`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub payload: String,
    pub signature: String,
}

impl Token {
    /// The token as an auth frame carries it. The signature's length says
    /// which kind it is: 64 bytes an Ed25519 signature, 32 an HMAC-SHA256
    /// tag (NetBird's form).
    pub fn to_wire(&self) -> Result<Vec<u8>, TokenError> {
        let signature = STANDARD
            .decode(&self.signature)
            .map_err(|_| TokenError::SignatureEncoding)?;
        let algorithm = match signature.len() {
            SIGNATURE_LEN => ED25519,
            HMAC_LEN => HMAC_SHA256,
            _ => return Err(TokenError::Malformed),
        };
        let len = 1 + signature.len() + self.payload.len();
        if len > MAX_TOKEN_SIZE {
            return Err(TokenError::TooLong(len));
        }
        let mut wire = Vec::with_capacity(len);
        wire.push(algorithm);
        wire.extend_from_slice(&signature);
        wire.extend_from_slice(self.payload.as_bytes());
        Ok(wire)
    }
}

/// The management server's relay signing key.
#[derive(Debug)]
pub struct TokenSigner {
    pair: Ed25519KeyPair,
}

impl TokenSigner {
    /// A new key from the system's generator.
    pub fn generate() -> Result<TokenSigner, TokenError> {
        let mut seed = [0; KEY_LEN];
        SystemRandom::new()
            .fill(&mut seed)
            .map_err(|_| TokenError::Key("the system generator failed"))?;
        TokenSigner::from_seed(seed)
    }

    /// The key with this 32-byte seed (as the store keeps it).
    pub fn from_seed(seed: [u8; KEY_LEN]) -> Result<TokenSigner, TokenError> {
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed)
            .map_err(|_| TokenError::Key("not an Ed25519 seed"))?;
        Ok(TokenSigner { pair })
    }

    /// The public half, which relays check tokens with.
    pub fn public_key(&self) -> [u8; KEY_LEN] {
        let mut key = [0; KEY_LEN];
        key.copy_from_slice(self.pair.public_key().as_ref());
        key
    }

    /// The verifier of this key's tokens.
    pub fn verifier(&self) -> TokenVerifier {
        TokenVerifier::new(self.public_key())
    }

    /// A token for `peer` valid until `expires_at` (Unix seconds).
    pub fn mint(&self, peer: &PeerId, expires_at: i64) -> Token {
        let payload = format!("{expires_at}:{peer}");
        let signature = self.pair.sign(payload.as_bytes());
        Token {
            payload,
            signature: STANDARD.encode(signature.as_ref()),
        }
    }
}

/// The secret NetBird-format tokens are made and checked with.
#[derive(Clone)]
pub struct HmacSecret(hmac::Key);

impl std::fmt::Debug for HmacSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HmacSecret")
    }
}

impl HmacSecret {
    pub fn new(secret: &[u8]) -> HmacSecret {
        HmacSecret(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }

    /// A NetBird-format token valid until `expires_at` (Unix seconds).
    pub fn mint(&self, expires_at: i64) -> Token {
        let payload = expires_at.to_string();
        let tag = hmac::sign(&self.0, payload.as_bytes());
        Token {
            payload,
            signature: STANDARD.encode(tag.as_ref()),
        }
    }

    /// Accepts a NetBird-format token body (after the algorithm byte) that
    /// this secret made and that has not expired at `now`.
    fn verify(&self, rest: &[u8], now: i64) -> Result<(), TokenError> {
        if rest.len() < HMAC_LEN + MIN_HMAC_PAYLOAD {
            return Err(TokenError::Malformed);
        }
        let (tag, payload) = rest.split_at(HMAC_LEN);
        // Constant-time comparison.
        hmac::verify(&self.0, payload, tag).map_err(|_| TokenError::Signature)?;
        let expiry: i64 = std::str::from_utf8(payload)
            .ok()
            .and_then(|t| t.parse().ok())
            .ok_or(TokenError::Malformed)?;
        if now > expiry {
            return Err(TokenError::Expired);
        }
        Ok(())
    }
}

/// Checks tokens with the management server's public key (and, when given
/// the shared secret, NetBird-format tokens).
#[derive(Debug, Clone)]
pub struct TokenVerifier {
    public: [u8; KEY_LEN],
    hmac: Option<HmacSecret>,
}

impl PartialEq for TokenVerifier {
    /// Same public key; the secret cannot be compared.
    fn eq(&self, other: &Self) -> bool {
        self.public == other.public
    }
}

impl Eq for TokenVerifier {}

impl TokenVerifier {
    pub fn new(public: [u8; KEY_LEN]) -> TokenVerifier {
        TokenVerifier { public, hmac: None }
    }

    /// Also accepts NetBird-format tokens made with `secret`.
    pub fn with_hmac(mut self, secret: HmacSecret) -> TokenVerifier {
        self.hmac = Some(secret);
        self
    }

    /// The verifier of the base64 public key management publishes.
    pub fn from_base64(text: &str) -> Result<TokenVerifier, TokenError> {
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|_| TokenError::Key("not base64"))?;
        let public = <[u8; KEY_LEN]>::try_from(bytes.as_slice())
            .map_err(|_| TokenError::Key("not 32 bytes"))?;
        Ok(TokenVerifier::new(public))
    }

    /// The public key in base64.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.public)
    }

    /// Accepts `wire` (an auth frame's token) when management signed it
    /// for `peer` (or made it with the shared HMAC secret) and it has not
    /// expired at `now` (Unix seconds).
    pub fn verify(&self, wire: &[u8], peer: &PeerId, now: i64) -> Result<(), TokenError> {
        let (&algorithm, rest) = wire.split_first().ok_or(TokenError::Malformed)?;
        match (algorithm, &self.hmac) {
            (ED25519, _) => {}
            (HMAC_SHA256, Some(secret)) => return secret.verify(rest, now),
            _ => return Err(TokenError::Algorithm(algorithm)),
        }
        if rest.len() <= SIGNATURE_LEN {
            return Err(TokenError::Malformed);
        }
        let (signature, payload) = rest.split_at(SIGNATURE_LEN);
        UnparsedPublicKey::new(&signature::ED25519, &self.public)
            .verify(payload, signature)
            .map_err(|_| TokenError::Signature)?;
        // Signed by management, so well-formed unless management is broken.
        let text = std::str::from_utf8(payload).map_err(|_| TokenError::Malformed)?;
        let (expiry, named) = text.split_once(':').ok_or(TokenError::Malformed)?;
        let expiry: i64 = expiry.parse().map_err(|_| TokenError::Malformed)?;
        if now > expiry {
            return Err(TokenError::Expired);
        }
        if named != peer.to_string() {
            return Err(TokenError::OtherPeer);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> TokenSigner {
        TokenSigner::from_seed([7; KEY_LEN]).expect("any seed")
    }

    #[test]
    fn a_minted_token_verifies_for_its_peer_until_it_expires() {
        let s = signer();
        let peer = PeerId::from_public_key("peer-a");
        let token = s.mint(&peer, 1_000);
        let wire = token.to_wire().expect("fits an auth frame");
        let v = s.verifier();
        assert_eq!(v.verify(&wire, &peer, 999), Ok(()));
        assert_eq!(v.verify(&wire, &peer, 1_000), Ok(()));
        assert_eq!(v.verify(&wire, &peer, 1_001), Err(TokenError::Expired));
        let other = PeerId::from_public_key("peer-b");
        assert_eq!(v.verify(&wire, &other, 999), Err(TokenError::OtherPeer));
    }

    #[test]
    fn forged_and_foreign_tokens_are_refused() {
        let s = signer();
        let peer = PeerId::from_public_key("peer-a");
        let mut wire = s.mint(&peer, 1_000).to_wire().expect("fits");
        let last = wire.len() - 1;
        wire[last] ^= 1;
        assert_eq!(
            s.verifier().verify(&wire, &peer, 0),
            Err(TokenError::Signature)
        );
        let stranger = TokenSigner::from_seed([8; KEY_LEN]).expect("any seed");
        let foreign = stranger.mint(&peer, 1_000).to_wire().expect("fits");
        assert_eq!(
            s.verifier().verify(&foreign, &peer, 0),
            Err(TokenError::Signature)
        );
        let mut hmac = foreign.clone();
        hmac[0] = 1;
        assert_eq!(
            s.verifier().verify(&hmac, &peer, 0),
            Err(TokenError::Algorithm(1))
        );
        assert_eq!(
            s.verifier().verify(&[], &peer, 0),
            Err(TokenError::Malformed)
        );
        assert_eq!(
            s.verifier().verify(&[ED25519; 10], &peer, 0),
            Err(TokenError::Malformed)
        );
    }

    /// NetBird's wire form of a token: algorithm byte, raw tag, payload.
    fn netbird_wire(token: &Token) -> Vec<u8> {
        let mut wire = vec![HMAC_SHA256];
        wire.extend(STANDARD.decode(&token.signature).expect("base64"));
        wire.extend(token.payload.as_bytes());
        assert_eq!(token.to_wire(), Ok(wire.clone()));
        wire
    }

    #[test]
    fn netbird_tokens_verify_with_the_shared_secret_until_they_expire() {
        let secret = HmacSecret::new(b"shared");
        let token = secret.mint(1_767_225_600);
        assert_eq!(token.payload, "1767225600");
        let wire = netbird_wire(&token);
        let peer = PeerId::from_public_key("any");
        let v = signer().verifier().with_hmac(secret);
        assert_eq!(v.verify(&wire, &peer, 1_767_225_600), Ok(()));
        assert_eq!(
            v.verify(&wire, &peer, 1_767_225_601),
            Err(TokenError::Expired)
        );
        let mut tampered = wire.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert_eq!(v.verify(&tampered, &peer, 0), Err(TokenError::Signature));
        let other = HmacSecret::new(b"other").mint(1_767_225_600);
        assert_eq!(
            v.verify(&netbird_wire(&other), &peer, 0),
            Err(TokenError::Signature)
        );
        assert_eq!(v.verify(&wire[..20], &peer, 0), Err(TokenError::Malformed));
        // Without the secret they are refused.
        assert_eq!(
            signer().verifier().verify(&wire, &peer, 0),
            Err(TokenError::Algorithm(HMAC_SHA256))
        );
    }

    #[test]
    fn the_public_key_round_trips_through_base64() {
        let v = signer().verifier();
        assert_eq!(TokenVerifier::from_base64(&v.to_base64()), Ok(v));
        assert!(TokenVerifier::from_base64("AAAA").is_err());
    }

    #[test]
    fn bad_signature_text_is_refused() {
        let token = Token {
            payload: "1:x".into(),
            signature: "***".into(),
        };
        assert_eq!(token.to_wire(), Err(TokenError::SignatureEncoding));
    }
}

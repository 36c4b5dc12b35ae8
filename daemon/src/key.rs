//! WireGuard keys in the base64 form that maps, configs and `status` use.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use boringtun::x25519::{PublicKey as DalekPublic, StaticSecret};
use rand_core::OsRng;
use thiserror::Error;

/// A key that is not 32 bytes of standard base64.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid WireGuard key: must be 32 bytes in base64")]
pub struct KeyError;

fn decode(s: &str) -> Result<[u8; 32], KeyError> {
    STANDARD
        .decode(s.trim())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or(KeyError)
}

/// A peer's public key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    pub(crate) fn to_dalek(self) -> DalekPublic {
        DalekPublic::from(self.0)
    }
}

impl FromStr for PublicKey {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, KeyError> {
        decode(s).map(PublicKey)
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&STANDARD.encode(self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

/// This peer's private key. Its `Debug` form never shows the secret.
#[derive(Clone)]
pub struct PrivateKey(StaticSecret);

impl PrivateKey {
    /// A fresh key from the operating system's generator.
    pub fn generate() -> Self {
        PrivateKey(StaticSecret::random_from_rng(OsRng))
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey(DalekPublic::from(&self.0).to_bytes())
    }

    /// The base64 form, for the state file.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0.to_bytes())
    }

    pub(crate) fn secret(&self) -> &StaticSecret {
        &self.0
    }
}

impl FromStr for PrivateKey {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, KeyError> {
        decode(s).map(|b| PrivateKey(StaticSecret::from(b)))
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey(public {})", self.public_key())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_bad_keys() {
        let k = PrivateKey::generate();
        let again: PrivateKey = k.to_base64().parse().unwrap();
        assert_eq!(again.public_key(), k.public_key());
        let p = k.public_key();
        assert_eq!(p.to_string().parse::<PublicKey>().unwrap(), p);
        assert_eq!("abc".parse::<PublicKey>(), Err(KeyError));
        assert_eq!(
            STANDARD.encode([1u8; 31]).parse::<PublicKey>(),
            Err(KeyError)
        );
        assert!(!format!("{k:?}").contains(&k.to_base64()));
    }
}

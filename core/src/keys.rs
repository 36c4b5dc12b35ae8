//! Secret formats: personal access tokens, setup keys, and how secrets are
//! stored (hashed, compared in constant time).
//!
//! - A personal access token is `nbp_` + 30 base62 characters + a 6-character
//!   checksum (CRC32 IEEE of the 30 characters in base62, alphabet
//!   `0-9A-Za-z`, left-padded with `0`): 40 characters. The format and
//!   checksum are checked before any store lookup, so garbage never costs a
//!   query. Stored as base64(SHA-256(token)).
//! - A setup key is an upper-case UUID v4, stored as base64(SHA-256(key)) and
//!   shown masked (first 5 characters + `****`) after creation.
//! - PINs and passwords of exposed services are stored as argon2id PHC
//!   strings (m = 19456 KiB, t = 2, p = 1, 16-byte salt, 32-byte key).

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use rand::Rng;
use rand_core::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use thiserror::Error;

use crate::error::{ErrorCode, Kind};

/// Prefix of every personal access token.
pub const PAT_PREFIX: &str = "nbp_";
/// Length of the random part of a token.
pub const PAT_SECRET_LEN: usize = 30;
/// Length of the checksum part of a token.
pub const PAT_CHECKSUM_LEN: usize = 6;
/// Total token length.
pub const PAT_LEN: usize = PAT_PREFIX.len() + PAT_SECRET_LEN + PAT_CHECKSUM_LEN;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A malformed secret.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KeyError {
    #[error("PAT has incorrect length")]
    PatLength,
    #[error("PAT has wrong prefix")]
    PatPrefix,
    #[error("PAT checksum does not match")]
    PatChecksum,
    #[error("invalid setup key: must be a UUID")]
    SetupKeyFormat,
    #[error("cannot hash secret: {0}")]
    Hash(String),
}

impl ErrorCode for KeyError {
    fn code(&self) -> &'static str {
        match self {
            KeyError::PatLength => "pat_length",
            KeyError::PatPrefix => "pat_prefix",
            KeyError::PatChecksum => "pat_checksum",
            KeyError::SetupKeyFormat => "setup_key_format",
            KeyError::Hash(_) => "hash_failed",
        }
    }

    fn kind(&self) -> Kind {
        Kind::InvalidArgument
    }
}

/// Encodes `n` in base62, left-padded with `0` to `width` characters.
fn base62(mut n: u64, width: usize) -> String {
    let mut digits = Vec::with_capacity(width);
    while n > 0 {
        digits.push(BASE62[(n % 62) as usize]);
        n /= 62;
    }
    while digits.len() < width {
        digits.push(b'0');
    }
    digits.reverse();
    String::from_utf8_lossy(&digits).into_owned()
}

/// The 6-character checksum of a token's secret part.
fn pat_checksum(secret: &str) -> String {
    base62(
        u64::from(crc32fast::hash(secret.as_bytes())),
        PAT_CHECKSUM_LEN,
    )
}

/// A fresh personal access token.
pub fn generate_pat(rng: &mut impl RngCore) -> String {
    let secret: String = (0..PAT_SECRET_LEN)
        .map(|_| {
            // Drawn as u32, not usize, so 32-bit targets (wasm32) give the
            // same token for the same seed.
            let i = rng.gen_range(0..BASE62.len() as u32) as usize;
            char::from(BASE62[i])
        })
        .collect();
    let checksum = pat_checksum(&secret);
    format!("{PAT_PREFIX}{secret}{checksum}")
}

/// Checks a token's length, prefix and checksum (in that order, as the
/// reference does, so its error messages match).
pub fn check_pat(token: &str) -> Result<(), KeyError> {
    if token.len() != PAT_LEN {
        return Err(KeyError::PatLength);
    }
    let Some(rest) = token.strip_prefix(PAT_PREFIX) else {
        return Err(KeyError::PatPrefix);
    };
    if !rest.is_char_boundary(PAT_SECRET_LEN) {
        return Err(KeyError::PatChecksum);
    }
    let (secret, checksum) = rest.split_at(PAT_SECRET_LEN);
    if !secret.bytes().all(|c| c.is_ascii_alphanumeric()) {
        return Err(KeyError::PatChecksum);
    }
    if bool::from(pat_checksum(secret).as_bytes().ct_eq(checksum.as_bytes())) {
        Ok(())
    } else {
        Err(KeyError::PatChecksum)
    }
}

/// base64(SHA-256(secret)): how tokens and setup keys are stored.
pub fn hash_secret(secret: &str) -> String {
    BASE64.encode(Sha256::digest(secret.as_bytes()))
}

/// Whether `secret` hashes to `stored`, compared in constant time.
pub fn verify_secret_hash(secret: &str, stored: &str) -> bool {
    bool::from(hash_secret(secret).as_bytes().ct_eq(stored.as_bytes()))
}

/// A fresh setup key: an upper-case UUID v4.
pub fn generate_setup_key(rng: &mut impl RngCore) -> String {
    let mut b = [0u8; 16];
    rng.fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02X}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Checks that `key` has the UUID shape (any case), before any lookup.
pub fn check_setup_key(key: &str) -> Result<(), KeyError> {
    let groups: Vec<&str> = key.split('-').collect();
    let lens = [8, 4, 4, 4, 12];
    let ok = groups.len() == lens.len()
        && groups
            .iter()
            .zip(lens)
            .all(|(g, n)| g.len() == n && g.bytes().all(|c| c.is_ascii_hexdigit()));
    if ok {
        Ok(())
    } else {
        Err(KeyError::SetupKeyFormat)
    }
}

/// The masked form of a setup key shown after creation: first 5 characters
/// and `****`.
pub fn mask_setup_key(key: &str) -> String {
    let head: String = key.chars().take(5).collect();
    format!("{head}****")
}

/// The argon2id parameters of SEMANTICS.md.
fn argon2id() -> Result<Argon2<'static>, KeyError> {
    let params = Params::new(19_456, 2, 1, Some(32)).map_err(|e| KeyError::Hash(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes a PIN or password into an argon2id PHC string with a 16-byte salt
/// drawn from `rng`.
pub fn hash_argon2(secret: &str, rng: &mut impl RngCore) -> Result<String, KeyError> {
    let mut salt = [0u8; 16];
    rng.fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| KeyError::Hash(e.to_string()))?;
    argon2id()?
        .hash_password(secret.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| KeyError::Hash(e.to_string()))
}

/// Whether `secret` matches the argon2id PHC string `phc` (constant time in
/// the argon2 crate). A malformed `phc` never matches.
pub fn verify_argon2(secret: &str, phc: &str) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    argon2id().is_ok_and(|a| a.verify_password(secret.as_bytes(), &hash).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn pat_round_trip_and_errors() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let t = generate_pat(&mut rng);
        assert_eq!(t.len(), 40);
        assert!(check_pat(&t).is_ok());
        assert_eq!(check_pat("nbp_short"), Err(KeyError::PatLength));
        let wrong_prefix = format!("xbp_{}", &t[4..]);
        assert_eq!(check_pat(&wrong_prefix), Err(KeyError::PatPrefix));
        let mut bad = t.clone().into_bytes();
        bad[10] = if bad[10] == b'a' { b'b' } else { b'a' };
        assert_eq!(
            check_pat(&String::from_utf8(bad).unwrap()),
            Err(KeyError::PatChecksum)
        );
    }

    #[test]
    fn setup_keys() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let k = generate_setup_key(&mut rng);
        assert!(check_setup_key(&k).is_ok());
        assert_eq!(k, k.to_uppercase());
        assert_eq!(&k[14..15], "4");
        assert_eq!(mask_setup_key(&k).len(), 9);
        assert!(verify_secret_hash(&k, &hash_secret(&k)));
        assert!(!verify_secret_hash("other", &hash_secret(&k)));
    }

    #[test]
    fn argon2_round_trip() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let phc = hash_argon2("123456", &mut rng).unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify_argon2("123456", &phc));
        assert!(!verify_argon2("654321", &phc));
        assert!(!verify_argon2("123456", "not a hash"));
    }
}

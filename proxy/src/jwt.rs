//! Verifying an identity provider's ID token signature against its JWKS.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::signature::{
    RsaPublicKeyComponents, UnparsedPublicKey, ED25519, RSA_PKCS1_2048_8192_SHA256,
};
use serde::Deserialize;
use serde_json::{Map, Value};

/// Why a token is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum JwtError {
    #[error("malformed token")]
    Malformed,
    #[error("unsupported algorithm {0}")]
    Algorithm(String),
    #[error("no key in the provider's JWKS matches the token")]
    UnknownKey,
    #[error("bad signature")]
    Signature,
}

/// A JSON Web Key Set.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Jwks {
    keys: Vec<Jwk>,
}

#[derive(Debug, Clone, Deserialize)]
struct Jwk {
    kty: String,
    kid: Option<String>,
    n: Option<String>,
    e: Option<String>,
    crv: Option<String>,
    x: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Header {
    alg: String,
    kid: Option<String>,
}

/// The supported signature algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Alg {
    Rs256,
    EdDsa,
}

/// The claims of `token` if one of `jwks`'s keys signed it (RS256 or EdDSA
/// over Ed25519). Claims are not checked here.
pub(crate) fn verify(token: &str, jwks: &Jwks) -> Result<Map<String, Value>, JwtError> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    let decode = |part: &str| {
        URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|_| JwtError::Malformed)
    };
    let head: Header = serde_json::from_slice(&decode(header)?).map_err(|_| JwtError::Malformed)?;
    let alg = match head.alg.as_str() {
        "RS256" => Alg::Rs256,
        "EdDSA" => Alg::EdDsa,
        other => return Err(JwtError::Algorithm(other.to_owned())),
    };
    let signature = decode(signature)?;
    let signed = &token[..header.len() + 1 + payload.len()];
    let mut candidates = jwks
        .keys
        .iter()
        .filter(|k| head.kid.is_none() || k.kid == head.kid)
        .filter(|k| match alg {
            Alg::Rs256 => k.kty == "RSA",
            Alg::EdDsa => k.kty == "OKP" && k.crv.as_deref() == Some("Ed25519"),
        })
        .peekable();
    if candidates.peek().is_none() {
        return Err(JwtError::UnknownKey);
    }
    if !candidates.any(|key| key_verifies(key, alg, signed.as_bytes(), &signature)) {
        return Err(JwtError::Signature);
    }
    serde_json::from_slice(&decode(payload)?).map_err(|_| JwtError::Malformed)
}

fn key_verifies(key: &Jwk, alg: Alg, message: &[u8], signature: &[u8]) -> bool {
    let field = |v: &Option<String>| v.as_deref().and_then(|s| URL_SAFE_NO_PAD.decode(s).ok());
    match alg {
        Alg::Rs256 => {
            let (Some(n), Some(e)) = (field(&key.n), field(&key.e)) else {
                return false;
            };
            RsaPublicKeyComponents { n, e }
                .verify(&RSA_PKCS1_2048_8192_SHA256, message, signature)
                .is_ok()
        }
        Alg::EdDsa => field(&key.x).is_some_and(|x| {
            UnparsedPublicKey::new(&ED25519, x)
                .verify(message, signature)
                .is_ok()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{Ed25519KeyPair, KeyPair};

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    #[test]
    fn eddsa_token_verifies_and_tampering_is_caught() {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let jwks: Jwks = serde_json::from_value(serde_json::json!({"keys": [
            {"kty": "OKP", "crv": "Ed25519", "kid": "k1", "x": b64(pair.public_key().as_ref())}
        ]}))
        .unwrap();
        let signed = format!(
            "{}.{}",
            b64(br#"{"alg":"EdDSA","kid":"k1"}"#),
            b64(br#"{"sub":"u"}"#)
        );
        let token = format!("{signed}.{}", b64(pair.sign(signed.as_bytes()).as_ref()));
        assert_eq!(verify(&token, &jwks).unwrap()["sub"], "u");
        let tampered = token.replacen(&b64(br#"{"sub":"u"}"#), &b64(br#"{"sub":"v"}"#), 1);
        assert_eq!(verify(&tampered, &jwks), Err(JwtError::Signature));
        let other_kid = token.replacen(
            &b64(br#"{"alg":"EdDSA","kid":"k1"}"#),
            &b64(br#"{"alg":"EdDSA","kid":"k2"}"#),
            1,
        );
        assert_eq!(verify(&other_kid, &jwks), Err(JwtError::UnknownKey));
        let none_alg = format!("{}.{}.", b64(br#"{"alg":"none"}"#), b64(br#"{"sub":"u"}"#));
        assert_eq!(
            verify(&none_alg, &jwks),
            Err(JwtError::Algorithm("none".into()))
        );
        assert_eq!(verify("a.b", &jwks), Err(JwtError::Malformed));
    }
}

//! Signed session tokens carried in the proxy's cookie.
//!
//! After a visitor passes a service's gate the proxy hands out a token that
//! says "this browser authenticated for <domain> with <method> until <exp>",
//! signed with the proxy's Ed25519 key. Verification needs no server-side
//! state, so sessions survive restarts when the key is kept in a state
//! directory, and a token minted for one service is useless on another.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use cookie::{Cookie, SameSite};
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use serde::{Deserialize, Serialize};

/// Name of the session cookie.
pub const COOKIE_NAME: &str = "meshplane_session";

/// How long a session lasts (SEMANTICS.md: 24 h).
pub const SESSION_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// File in the state directory holding the signing key (PKCS#8).
const KEY_FILE: &str = "proxy-session-key.pk8";

/// Errors of loading keys and checking tokens.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("session key file {path}: {source}")]
    KeyFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("session key file {0} does not hold an Ed25519 PKCS#8 key")]
    BadKey(PathBuf),
    #[error("cannot generate a session key")]
    Generate,
    #[error("malformed session token")]
    Malformed,
    #[error("bad session token signature")]
    Signature,
    #[error("session token is for another service")]
    Audience,
    #[error("session token expired")]
    Expired,
}

/// How a visitor authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Method {
    Pin,
    Password,
    Sso,
}

/// The claims of a session token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Claims {
    /// The service domain the session is for.
    pub aud: String,
    /// Issue time, Unix seconds.
    pub iat: u64,
    /// Expiry, Unix seconds.
    pub exp: u64,
    pub method: Method,
    /// For SSO sessions: the user's groups that the service admits, so a
    /// change of the service's groups ends sessions it no longer covers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

/// The proxy's signing key.
#[derive(Debug)]
pub(crate) struct SessionKeys {
    pair: Ed25519KeyPair,
}

impl SessionKeys {
    /// Loads the key from `state_dir`, creating it there on first use; with
    /// no state directory the key lives in memory only and sessions end
    /// with the process.
    pub fn load_or_create(state_dir: Option<&Path>) -> Result<Self, SessionError> {
        let Some(dir) = state_dir else {
            return Ok(Self {
                pair: Ed25519KeyPair::from_pkcs8(&generate_pkcs8()?)
                    .map_err(|_| SessionError::Generate)?,
            });
        };
        let path = dir.join(KEY_FILE);
        let io_err = |source| SessionError::KeyFile {
            path: path.clone(),
            source,
        };
        let pkcs8 = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fs::create_dir_all(dir).map_err(io_err)?;
                let bytes = generate_pkcs8()?;
                write_private(&path, &bytes).map_err(io_err)?;
                bytes
            }
            Err(e) => return Err(io_err(e)),
        };
        let pair = Ed25519KeyPair::from_pkcs8(&pkcs8).map_err(|_| SessionError::BadKey(path))?;
        Ok(Self { pair })
    }

    /// A token for `domain`, valid for [`SESSION_TTL`] from `now` (Unix s).
    pub fn issue(&self, domain: &str, method: Method, groups: Vec<String>, now: u64) -> String {
        let claims = Claims {
            aud: domain.to_owned(),
            iat: now,
            exp: now + SESSION_TTL.as_secs(),
            method,
            groups,
        };
        // Serialising a struct of strings and integers cannot fail.
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap_or_default());
        let signature = URL_SAFE_NO_PAD.encode(self.pair.sign(payload.as_bytes()));
        format!("{payload}.{signature}")
    }

    /// The claims of `token` if it is signed by this proxy, for `domain` and
    /// not expired at `now`.
    pub fn verify(&self, token: &str, domain: &str, now: u64) -> Result<Claims, SessionError> {
        let (payload, signature) = token.split_once('.').ok_or(SessionError::Malformed)?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| SessionError::Malformed)?;
        UnparsedPublicKey::new(&ED25519, self.pair.public_key().as_ref())
            .verify(payload.as_bytes(), &signature)
            .map_err(|_| SessionError::Signature)?;
        let json = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| SessionError::Malformed)?;
        let claims: Claims = serde_json::from_slice(&json).map_err(|_| SessionError::Malformed)?;
        if !claims.aud.eq_ignore_ascii_case(domain) {
            return Err(SessionError::Audience);
        }
        if claims.exp <= now {
            return Err(SessionError::Expired);
        }
        Ok(claims)
    }
}

fn generate_pkcs8() -> Result<Vec<u8>, SessionError> {
    Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
        .map(|doc| doc.as_ref().to_vec())
        .map_err(|_| SessionError::Generate)
}

/// Writes a secret file readable by the owner only, atomically (a crash
/// never leaves a truncated key behind).
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&tmp, path)
}

/// The cookies of a request's `Cookie` headers.
fn request_cookies(headers: &http::HeaderMap) -> impl Iterator<Item = Cookie<'_>> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
}

/// The values of every session cookie in a request's `Cookie` headers.
pub(crate) fn cookie_values(headers: &http::HeaderMap) -> impl Iterator<Item = &str> {
    request_cookies(headers)
        .filter(|c| c.name() == COOKIE_NAME)
        .filter_map(|c| c.value_raw())
        .map(|value| value.trim_matches('"'))
}

/// Removes the session cookie from a request's `Cookie` headers so the
/// token never reaches the backend; the other cookies pass as they came
/// (a piece that is not a cookie at all is dropped).
pub(crate) fn strip_cookie(headers: &mut http::HeaderMap) {
    let kept: Vec<String> = request_cookies(headers)
        .filter(|c| c.name() != COOKIE_NAME)
        .filter_map(|c| Some(format!("{}={}", c.name_raw()?, c.value_raw()?)))
        .collect();
    headers.remove(http::header::COOKIE);
    if let Ok(value) = http::HeaderValue::from_str(&kept.join("; ")) {
        if !kept.is_empty() {
            headers.insert(http::header::COOKIE, value);
        }
    }
}

/// The `Set-Cookie` value carrying `token`: host-only (no `Domain`), so the
/// browser sends it to this service's host alone. `Secure` whenever the
/// proxy serves TLS (`scheme` is `https`); a plain-HTTP development proxy
/// leaves it out, since no client would send a `Secure` cookie back over
/// plain HTTP and every login would loop.
pub(crate) fn set_cookie(token: &str, scheme: &str) -> String {
    let ttl = i64::try_from(SESSION_TTL.as_secs()).unwrap_or(i64::MAX);
    Cookie::build((COOKIE_NAME, token))
        .path("/")
        .max_age(cookie::time::Duration::seconds(ttl))
        .http_only(true)
        .secure(scheme == "https")
        .same_site(SameSite::Lax)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_is_secure_exactly_when_the_proxy_serves_tls() {
        let tls = Cookie::parse(set_cookie("t", "https")).unwrap();
        assert_eq!(tls.secure(), Some(true));
        let raw = set_cookie("t", "http");
        assert!(!raw.contains("Secure"));
        let plain = Cookie::parse(raw).unwrap();
        assert_eq!((plain.name(), plain.value()), (COOKIE_NAME, "t"));
        assert_eq!(plain.path(), Some("/"));
        assert_eq!(plain.domain(), None);
        assert_eq!(plain.http_only(), Some(true));
        assert_eq!(plain.same_site(), Some(SameSite::Lax));
        assert_eq!(
            plain.max_age(),
            Some(cookie::time::Duration::seconds(24 * 60 * 60))
        );
    }

    #[test]
    fn token_round_trip_and_refusals() {
        let keys = SessionKeys::load_or_create(None).unwrap();
        let token = keys.issue("a.example.com", Method::Pin, Vec::new(), 1000);
        let claims = keys.verify(&token, "a.example.com", 1001).unwrap();
        assert_eq!(claims.method, Method::Pin);
        assert!(matches!(
            keys.verify(&token, "b.example.com", 1001),
            Err(SessionError::Audience)
        ));
        assert!(matches!(
            keys.verify(&token, "a.example.com", 1000 + SESSION_TTL.as_secs()),
            Err(SessionError::Expired)
        ));
        let other = SessionKeys::load_or_create(None).unwrap();
        assert!(matches!(
            other.verify(&token, "a.example.com", 1001),
            Err(SessionError::Signature)
        ));
        assert!(matches!(
            keys.verify("garbage", "a.example.com", 1001),
            Err(SessionError::Malformed)
        ));
    }

    #[test]
    fn key_persists_in_state_dir() {
        let dir = std::env::temp_dir().join(format!("meshplane-proxy-key-{}", std::process::id()));
        let first = SessionKeys::load_or_create(Some(&dir)).unwrap();
        let token = first.issue("a.example.com", Method::Sso, vec!["g".into()], 5);
        let second = SessionKeys::load_or_create(Some(&dir)).unwrap();
        assert_eq!(
            second.verify(&token, "a.example.com", 6).unwrap().groups,
            ["g"]
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn strips_only_the_session_cookie() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::COOKIE,
            http::HeaderValue::from_static("a=1; meshplane_session=\"xyz\"; b=2"),
        );
        assert_eq!(cookie_values(&headers).collect::<Vec<_>>(), ["xyz"]);
        strip_cookie(&mut headers);
        assert_eq!(headers[http::header::COOKIE], "a=1; b=2");
    }
}

//! The relay on the management server's port: the relay itself at
//! `GET /relay` ([`meshplane_relay::Relay`]), the public key its tokens
//! are checked with at `GET /relay/v1/key` (for relays run apart with
//! `meshplane relay`), and the tokens peers get with their login and from
//! the RelayToken call.
//!
//! The signing key is drawn once and kept in the store as a row outside
//! any account, like the management key, so several servers on one
//! database mint tokens every relay of theirs accepts.
//!
//! Stock NetBird clients get NetBird's HMAC tokens instead
//! ([`Issuer::hmac_token`]), made with a second stored secret that only
//! the relay on this server's port shares: a relay run apart with
//! `meshplane relay` fetches just the public key and so refuses them
//! (NetBird clients use the relay on the management server's port).

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use meshplane_core::Timestamp;
use meshplane_proto::v1::RelayConfig;
use meshplane_relay::management::{KeyDocument, ALGORITHM, KEY_PATH};
use meshplane_relay::token::TokenError;
use meshplane_relay::{HmacSecret, Limits, PeerId, Relay, Token, TokenSigner};
use thiserror::Error;

use crate::secrets;
use crate::store::{Store, StoreError};

/// How long a relay token is valid; daemons ask for a new one before.
pub const TOKEN_TTL_SECS: i64 = 3600;
/// The id of the signing key's seed among the server secrets.
const SECRET_ID: &str = "relay";
/// The id of the secret of NetBird-format tokens among the server secrets.
const HMAC_SECRET_ID: &str = "relay-hmac";

/// Mints the relay tokens and knows which relays to advertise.
#[derive(Debug)]
pub struct Issuer {
    signer: TokenSigner,
    hmac: HmacSecret,
    /// `--relay-url`s; empty: this server's own relay.
    urls: Vec<String>,
    /// Whether this server's own relay is reached over TLS (`rels://`).
    tls: bool,
    /// How often a NetBird client's Sync stream gets a fresh token.
    refresh: std::time::Duration,
}

/// The request's authority (`host:port` the client dialled), which the
/// default relay URL is built from. Put in the request's extensions by
/// [`crate::grpc::mount`].
#[derive(Debug, Clone)]
pub struct Authority(pub String);

impl Issuer {
    /// The issuer with the stored signing key (or a new one stored now).
    pub async fn load(store: &Store, urls: Vec<String>) -> Result<Issuer, String> {
        let signer = load_or_create(store)
            .await
            .map_err(|e| format!("cannot load the relay signing key: {e}"))?;
        let hmac = secrets::load_or_create(store, HMAC_SECRET_ID)
            .await
            .map_err(|e| format!("cannot load the relay token secret: {e}"))?;
        Ok(Issuer {
            signer,
            hmac: HmacSecret::new(&hmac),
            urls,
            tls: false,
            refresh: std::time::Duration::from_secs(
                crate::config::DEFAULT_RELAY_TOKEN_REFRESH_SECS.into(),
            ),
        })
    }

    /// Announces this server's own relay as `rels://` (the server serves
    /// TLS).
    pub fn with_tls(mut self, tls: bool) -> Issuer {
        self.tls = tls;
        self
    }

    /// Sends NetBird clients a fresh token every `refresh` (it must be
    /// shorter than [`TOKEN_TTL_SECS`]; the settings check it).
    pub fn with_refresh(mut self, refresh: std::time::Duration) -> Issuer {
        self.refresh = refresh;
        self
    }

    /// How often a NetBird client's Sync stream gets a fresh token.
    pub fn refresh(&self) -> std::time::Duration {
        self.refresh
    }

    /// The relays to advertise to a peer that reached this server at
    /// `authority`: the `--relay-url`s, or this server's own relay.
    pub fn urls(&self, authority: Option<&Authority>) -> Vec<String> {
        if self.urls.is_empty() {
            authority
                .map(|a| {
                    let scheme = if self.tls { "rels" } else { "rel" };
                    vec![format!("{scheme}://{}", a.0)]
                })
                .unwrap_or_default()
        } else {
            self.urls.clone()
        }
    }

    /// A NetBird-format token (for stock NetBird clients), valid for
    /// [`TOKEN_TTL_SECS`] from `now`.
    pub fn hmac_token(&self, now: Timestamp) -> Token {
        self.hmac.mint(now.as_millis() / 1000 + TOKEN_TTL_SECS)
    }

    /// The relay configuration of the peer holding WireGuard key `key`
    /// (canonical base64), who reached this server at `authority`.
    pub fn config(&self, key: &str, authority: Option<&Authority>, now: Timestamp) -> RelayConfig {
        let expires = now.as_millis() / 1000 + TOKEN_TTL_SECS;
        let token = self.signer.mint(&PeerId::from_public_key(key), expires);
        RelayConfig {
            urls: self.urls(authority),
            token_payload: token.payload,
            token_signature: token.signature,
            expires_at_ms: expires.saturating_mul(1000),
        }
    }

    /// The relay (checking this issuer's tokens) and the routes to mount:
    /// `GET /relay` and `GET /relay/v1/key`.
    pub fn routes(&self) -> (Relay, Router) {
        let verifier = self.signer.verifier();
        let document = KeyDocument {
            algorithm: ALGORITHM.to_string(),
            key: verifier.to_base64(),
        };
        let relay = Relay::new(verifier.with_hmac(self.hmac.clone()), Limits::default());
        let router = relay
            .router()
            .route(KEY_PATH, get(public_key).with_state(document));
        (relay, router)
    }
}

/// `GET /relay/v1/key`: the key relays check tokens with.
async fn public_key(State(document): State<KeyDocument>) -> Json<KeyDocument> {
    Json(document)
}

/// Why the signing key could not be loaded.
#[derive(Debug, Error)]
enum KeyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Key(#[from] TokenError),
}

/// The stored signing key, or a new one stored now.
async fn load_or_create(store: &Store) -> Result<TokenSigner, KeyError> {
    let seed = secrets::load_or_create(store, SECRET_ID).await?;
    Ok(TokenSigner::from_seed(seed)?)
}

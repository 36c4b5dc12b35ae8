//! Single sign-on for services restricted to user groups: the OpenID
//! Connect authorization-code flow with PKCE, state and nonce.
//!
//! The flow runs on the service's own host, so the session cookie it ends
//! with is that host's: `/.meshplane/sso` sends the visitor to the
//! provider, which returns them to `/.meshplane/sso/callback`. The ID token
//! is verified against the provider's JWKS and its groups claim must name
//! one of the service's groups.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::{Response, StatusCode};
use ring::digest::{digest, SHA256};
use ring::rand::{SecureRandom, SystemRandom};
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::sync::RwLock;

use crate::body::ProxyBody;
use crate::fetch::{FetchError, WebClient};
use crate::gate::{grant, redirect_to, return_to, unix_now};
use crate::host::RequestHost;
use crate::jwt::{self, Jwks, JwtError};
use crate::pages;
use crate::server::Shared;
use crate::service::Service;
use crate::session::Method;

/// Where a visitor starts single sign-on.
pub(crate) const START_PATH: &str = "/.meshplane/sso";
/// Where the identity provider sends the visitor back.
pub(crate) const CALLBACK_PATH: &str = "/.meshplane/sso/callback";
/// The claim that lists a user's groups unless configured otherwise.
pub const DEFAULT_GROUPS_CLAIM: &str = "groups";
/// Scopes requested; group claims come from the provider's mappers.
const SCOPES: &str = "openid profile email";
/// How long a visitor may take at the provider.
const PENDING_TTL: Duration = Duration::from_secs(10 * 60);
/// Sign-ins in progress kept at most, against memory exhaustion by a
/// visitor starting sign-ins and never finishing them.
const MAX_PENDING: usize = 10_000;
/// Clock skew tolerated on `exp`.
const LEEWAY_SECS: u64 = 60;

/// The identity provider of this proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcConfig {
    /// Issuer URL; discovery is at `<issuer>/.well-known/openid-configuration`.
    pub issuer: String,
    pub client_id: String,
    /// For confidential clients; public clients rely on PKCE alone.
    pub client_secret: Option<String>,
    /// The ID token claim holding the user's group names.
    pub groups_claim: String,
}

impl OidcConfig {
    /// A public client reading groups from [`DEFAULT_GROUPS_CLAIM`].
    pub fn new(issuer: impl Into<String>, client_id: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            client_id: client_id.into(),
            client_secret: None,
            groups_claim: DEFAULT_GROUPS_CLAIM.to_owned(),
        }
    }
}

/// Errors of the flow.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OidcError {
    #[error("identity provider discovery: {0}")]
    Discovery(FetchError),
    #[error("identity provider says its issuer is {found}, expected {expected}")]
    IssuerMismatch { expected: String, found: String },
    #[error("identity provider keys: {0}")]
    Jwks(FetchError),
    #[error("token exchange: {0}")]
    Token(FetchError),
    #[error("ID token: {0}")]
    IdToken(#[from] JwtError),
    #[error("ID token claim {0} is missing or wrong")]
    Claim(&'static str),
    #[error("the sign-in is unknown or expired; start again")]
    UnknownState,
    #[error("too many sign-ins in progress")]
    Busy,
    #[error("the identity provider refused: {0}")]
    Refused(String),
    #[error("no secure random numbers")]
    Random,
}

#[derive(Debug, Clone, Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
    #[serde(default)]
    token_endpoint_auth_methods_supported: Vec<String>,
}

#[derive(Debug)]
struct Pending {
    authority: String,
    return_to: String,
    verifier: String,
    nonce: String,
    started: Instant,
}

/// The provider's discovery document and keys, fetched on first use.
#[derive(Debug)]
struct Provider {
    discovery: Discovery,
    jwks: Jwks,
}

/// Single sign-on state of the proxy.
#[derive(Debug)]
pub(crate) struct Sso {
    config: OidcConfig,
    web: WebClient,
    provider: RwLock<Option<Arc<Provider>>>,
    pending: Mutex<HashMap<String, Pending>>,
    random: SystemRandom,
}

#[derive(Deserialize)]
struct CallbackQuery {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

#[derive(Deserialize)]
struct TokenResponse {
    id_token: String,
}

impl Sso {
    pub fn new(config: OidcConfig, web: WebClient) -> Self {
        Self {
            config,
            web,
            provider: RwLock::new(None),
            pending: Mutex::new(HashMap::new()),
            random: SystemRandom::new(),
        }
    }

    async fn provider(&self) -> Result<Arc<Provider>, OidcError> {
        if let Some(p) = self.provider.read().await.clone() {
            return Ok(p);
        }
        self.refresh(None).await
    }

    /// Fetches discovery (unless `known`) and the JWKS again: on first use
    /// and when a token names a key we do not have (key rotation).
    async fn refresh(&self, known: Option<Discovery>) -> Result<Arc<Provider>, OidcError> {
        let discovery = match known {
            Some(d) => d,
            None => {
                let issuer = self.config.issuer.trim_end_matches('/');
                let url = format!("{issuer}/.well-known/openid-configuration");
                let d: Discovery = self
                    .web
                    .get_json(&url)
                    .await
                    .map_err(OidcError::Discovery)?;
                if d.issuer.trim_end_matches('/') != issuer {
                    return Err(OidcError::IssuerMismatch {
                        expected: self.config.issuer.clone(),
                        found: d.issuer,
                    });
                }
                d
            }
        };
        let jwks = self
            .web
            .get_json(&discovery.jwks_uri)
            .await
            .map_err(OidcError::Jwks)?;
        let provider = Arc::new(Provider { discovery, jwks });
        *self.provider.write().await = Some(provider.clone());
        Ok(provider)
    }

    fn random_token(&self) -> Result<String, OidcError> {
        let mut bytes = [0u8; 32];
        self.random
            .fill(&mut bytes)
            .map_err(|_| OidcError::Random)?;
        Ok(URL_SAFE_NO_PAD.encode(bytes))
    }

    fn redirect_uri(scheme: &str, authority: &str) -> String {
        format!("{scheme}://{authority}{CALLBACK_PATH}")
    }

    /// The provider URL to send a visitor of `authority` to.
    async fn authorize_url(
        &self,
        scheme: &str,
        authority: &str,
        return_to: String,
    ) -> Result<String, OidcError> {
        let provider = self.provider().await?;
        let state = self.random_token()?;
        let nonce = self.random_token()?;
        let verifier = self.random_token()?;
        let challenge = URL_SAFE_NO_PAD.encode(digest(&SHA256, verifier.as_bytes()));
        let query = serde_urlencoded::to_string([
            ("response_type", "code"),
            ("client_id", self.config.client_id.as_str()),
            (
                "redirect_uri",
                Self::redirect_uri(scheme, authority).as_str(),
            ),
            ("scope", SCOPES),
            ("state", state.as_str()),
            ("nonce", nonce.as_str()),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ])
        .map_err(|_| OidcError::Random)?;
        {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            if pending.len() >= MAX_PENDING {
                pending.retain(|_, p| p.started.elapsed() < PENDING_TTL);
            }
            if pending.len() >= MAX_PENDING {
                return Err(OidcError::Busy);
            }
            pending.insert(
                state,
                Pending {
                    authority: authority.to_owned(),
                    return_to,
                    verifier,
                    nonce,
                    started: Instant::now(),
                },
            );
        }
        let endpoint = &provider.discovery.authorization_endpoint;
        let joiner = if endpoint.contains('?') { '&' } else { '?' };
        Ok(format!("{endpoint}{joiner}{query}"))
    }

    /// Completes a sign-in from the callback's query: the visitor's return
    /// path and groups.
    async fn finish(
        &self,
        scheme: &str,
        authority: &str,
        query: &str,
    ) -> Result<(String, Vec<String>), OidcError> {
        let q: CallbackQuery =
            serde_urlencoded::from_str(query).map_err(|_| OidcError::UnknownState)?;
        let pending = {
            let mut map = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            q.state.as_ref().and_then(|s| map.remove(s))
        }
        .filter(|p| p.started.elapsed() < PENDING_TTL && p.authority == authority)
        .ok_or(OidcError::UnknownState)?;
        if let Some(error) = q.error {
            return Err(OidcError::Refused(q.error_description.unwrap_or(error)));
        }
        let code = q.code.ok_or(OidcError::Claim("code"))?;
        let provider = self.provider().await?;
        let redirect_uri = Self::redirect_uri(scheme, authority);
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", redirect_uri.as_str()),
            ("client_id", self.config.client_id.as_str()),
            ("code_verifier", pending.verifier.as_str()),
        ];
        let methods = &provider.discovery.token_endpoint_auth_methods_supported;
        let basic = match &self.config.client_secret {
            Some(secret)
                if methods.is_empty() || methods.iter().any(|m| m == "client_secret_basic") =>
            {
                Some((self.config.client_id.as_str(), secret.as_str()))
            }
            Some(secret) => {
                form.push(("client_secret", secret.as_str()));
                None
            }
            None => None,
        };
        let token: TokenResponse = self
            .web
            .post_form(&provider.discovery.token_endpoint, &form, basic)
            .await
            .map_err(OidcError::Token)?;
        let claims = match jwt::verify(&token.id_token, &provider.jwks) {
            Err(JwtError::UnknownKey) => {
                let fresh = self.refresh(Some(provider.discovery.clone())).await?;
                jwt::verify(&token.id_token, &fresh.jwks)?
            }
            other => other?,
        };
        self.check_claims(&claims, &provider.discovery.issuer, &pending.nonce)?;
        Ok((
            pending.return_to,
            groups(&claims, &self.config.groups_claim),
        ))
    }

    fn check_claims(
        &self,
        claims: &Map<String, Value>,
        issuer: &str,
        nonce: &str,
    ) -> Result<(), OidcError> {
        if claims.get("iss").and_then(Value::as_str) != Some(issuer) {
            return Err(OidcError::Claim("iss"));
        }
        let audience_ok = match claims.get("aud") {
            Some(Value::String(aud)) => *aud == self.config.client_id,
            Some(Value::Array(auds)) => auds
                .iter()
                .any(|a| a.as_str() == Some(&self.config.client_id)),
            _ => false,
        };
        if !audience_ok {
            return Err(OidcError::Claim("aud"));
        }
        let exp = claims
            .get("exp")
            .and_then(Value::as_u64)
            .ok_or(OidcError::Claim("exp"))?;
        if exp + LEEWAY_SECS <= unix_now() {
            return Err(OidcError::Claim("exp"));
        }
        if claims.get("nonce").and_then(Value::as_str) != Some(nonce) {
            return Err(OidcError::Claim("nonce"));
        }
        Ok(())
    }
}

/// The group names in `claim`: an array of strings, or one string.
fn groups(claims: &Map<String, Value>, claim: &str) -> Vec<String> {
    match claims.get(claim) {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        Some(Value::String(one)) => vec![one.clone()],
        _ => Vec::new(),
    }
}

/// `GET /.meshplane/sso?rd=<path>` (off to the identity provider) and
/// `GET /.meshplane/sso/callback?code&state` (verify and grant, or refuse).
/// Neither exists on a service without user groups or a proxy without SSO.
pub(crate) async fn handle(
    shared: &Shared,
    service: &Service,
    host: &RequestHost,
    uri: &http::Uri,
) -> Response<ProxyBody> {
    let sso = shared
        .sso
        .as_ref()
        .filter(|_| !service.user_groups.is_empty());
    let query = uri.query();
    match (sso, uri.path()) {
        (Some(sso), START_PATH) => {
            match sso
                .authorize_url(shared.scheme, &host.authority, return_to(query))
                .await
            {
                Ok(url) => redirect_to(&url),
                Err(e) => failure(&e),
            }
        }
        (Some(sso), CALLBACK_PATH) => {
            match sso
                .finish(shared.scheme, &host.authority, query.unwrap_or(""))
                .await
            {
                Ok((return_to, groups)) if service.admits_groups(&groups) => {
                    let admitted = groups
                        .into_iter()
                        .filter(|g| service.user_groups.contains(g))
                        .collect();
                    grant(shared, service, Method::Sso, admitted, &return_to)
                }
                Ok(_) => {
                    pages::forbidden("Your account is not in a group that may use this service.")
                }
                Err(e) => failure(&e),
            }
        }
        _ => pages::not_found(&host.name),
    }
}

/// The page for a failed sign-in: the visitor's fault (400, 403) or the
/// provider's (502).
fn failure(error: &OidcError) -> Response<ProxyBody> {
    tracing::info!(%error, "single sign-on failed");
    match error {
        OidcError::UnknownState => pages::bad_request(&error.to_string()),
        OidcError::Refused(_) | OidcError::IdToken(_) | OidcError::Claim(_) => {
            pages::forbidden(&error.to_string())
        }
        OidcError::Busy => pages::page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Busy",
            "<p>Too many sign-ins are in progress; try again shortly.</p>",
        ),
        OidcError::Discovery(_)
        | OidcError::IssuerMismatch { .. }
        | OidcError::Jwks(_)
        | OidcError::Token(_)
        | OidcError::Random => pages::page(
            StatusCode::BAD_GATEWAY,
            "Sign-in unavailable",
            "<p>The identity provider cannot be used right now.</p>",
        ),
    }
}

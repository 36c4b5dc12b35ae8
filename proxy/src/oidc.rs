//! Single sign-on for services restricted to user groups: the OpenID
//! Connect authorization-code flow with PKCE, state and nonce.
//!
//! The flow runs on the service's own host, so the session cookie it ends
//! with is that host's: `/.meshplane/sso` sends the visitor to the
//! provider, which returns them to `/.meshplane/sso/callback`. The ID token
//! is verified against the provider's JWKS and its groups claim must name
//! one of the service's groups. Discovery, the authorization request, the
//! code exchange and the ID token checks (signature, `iss`, `aud`, `exp`,
//! `nonce`) are the `openidconnect` crate's; this module keeps the sign-ins
//! in progress, bounded, and turns the outcome into a session or a page.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use http::{Response, StatusCode};
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreClientAuthMethod,
    CoreErrorResponseType, CoreGenderClaim, CoreJsonWebKey, CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm, CoreProviderMetadata, CoreRevocableToken, CoreRevocationErrorResponse,
    CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AdditionalClaims, AuthType, AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret,
    CsrfToken, DiscoveryError, EmptyExtraTokenFields, EndpointMaybeSet, EndpointNotSet,
    EndpointSet, IssuerUrl, JsonWebKeySet, Nonce, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl,
    RequestTokenError, Scope, SignatureVerificationError, StandardErrorResponse,
    StandardTokenResponse, TokenResponse as _,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::RwLock;

use crate::body::ProxyBody;
use crate::fetch::{FetchError, WebClient};
use crate::gate::{grant, redirect_to, return_to};
use crate::host::RequestHost;
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
/// Scopes requested besides `openid`; group claims come from the
/// provider's mappers.
const SCOPES: [&str; 2] = ["profile", "email"];
/// How long a visitor may take at the provider.
const PENDING_TTL: Duration = Duration::from_secs(10 * 60);
/// Sign-ins in progress kept at most, against memory exhaustion by a
/// visitor starting sign-ins and never finishing them.
const MAX_PENDING: usize = 10_000;
/// Clock skew tolerated on `exp`.
const LEEWAY: TimeDelta = TimeDelta::seconds(60);

/// The identity provider of this proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcConfig {
    /// Issuer URL; discovery is at `<issuer>/.well-known/openid-configuration`
    /// and the document's `issuer` must be this exact string.
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
    #[error("identity provider issuer URL {0:?} is invalid")]
    IssuerUrl(String),
    #[error("identity provider discovery: {0}")]
    Discovery(DiscoveryError<FetchError>),
    #[error("identity provider keys: {0}")]
    Jwks(DiscoveryError<FetchError>),
    #[error("token exchange: {0}")]
    Token(RequestTokenError<FetchError, StandardErrorResponse<CoreErrorResponseType>>),
    #[error("the token endpoint returned no ID token")]
    NoIdToken,
    #[error("ID token: {0}")]
    IdToken(#[from] ClaimsVerificationError),
    #[error("the identity provider returned no authorization code")]
    NoCode,
    #[error("the sign-in address {0:?} is not a valid redirect URI")]
    RedirectUri(String),
    #[error("the sign-in is unknown or expired; start again")]
    UnknownState,
    #[error("too many sign-ins in progress")]
    Busy,
    #[error("the identity provider refused: {0}")]
    Refused(String),
}

/// Every claim of an ID token that is not a standard one, so the groups
/// claim can be read by its configured name.
#[derive(Debug, Clone, Deserialize, Serialize)]
struct OtherClaims {
    #[serde(flatten)]
    claims: Map<String, Value>,
}

impl AdditionalClaims for OtherClaims {}

type IdTokenFields = openidconnect::IdTokenFields<
    OtherClaims,
    EmptyExtraTokenFields,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;

/// A client of the discovered provider, for one redirect URI.
type Client = openidconnect::Client<
    OtherClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    StandardTokenResponse<IdTokenFields, CoreTokenType>,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

#[derive(Debug)]
struct Pending {
    authority: String,
    return_to: String,
    verifier: PkceCodeVerifier,
    nonce: Nonce,
    started: Instant,
}

/// Single sign-on state of the proxy.
#[derive(Debug)]
pub(crate) struct Sso {
    config: OidcConfig,
    web: WebClient,
    /// The provider's discovery document and keys, fetched on first use.
    provider: RwLock<Option<Arc<CoreProviderMetadata>>>,
    pending: Mutex<HashMap<String, Pending>>,
}

#[derive(Deserialize)]
struct CallbackQuery {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

impl Sso {
    pub fn new(config: OidcConfig, web: WebClient) -> Self {
        Self {
            config,
            web,
            provider: RwLock::new(None),
            pending: Mutex::new(HashMap::new()),
        }
    }

    async fn provider(&self) -> Result<Arc<CoreProviderMetadata>, OidcError> {
        if let Some(p) = self.provider.read().await.clone() {
            return Ok(p);
        }
        let issuer = IssuerUrl::new(self.config.issuer.clone())
            .map_err(|_| OidcError::IssuerUrl(self.config.issuer.clone()))?;
        let metadata = CoreProviderMetadata::discover_async(issuer, &self.web)
            .await
            .map_err(OidcError::Discovery)?;
        Ok(self.keep(metadata).await)
    }

    /// Fetches the JWKS again, when a token names a key we do not have
    /// (key rotation).
    async fn refresh_keys(
        &self,
        known: &CoreProviderMetadata,
    ) -> Result<Arc<CoreProviderMetadata>, OidcError> {
        let jwks = JsonWebKeySet::fetch_async(known.jwks_uri(), &self.web)
            .await
            .map_err(OidcError::Jwks)?;
        Ok(self.keep(known.clone().set_jwks(jwks)).await)
    }

    async fn keep(&self, metadata: CoreProviderMetadata) -> Arc<CoreProviderMetadata> {
        let metadata = Arc::new(metadata);
        *self.provider.write().await = Some(metadata.clone());
        metadata
    }

    /// A client of `provider` whose redirect URI is the callback on
    /// `authority`, authenticating with the secret (if any) the way the
    /// provider supports: HTTP Basic unless it lists only other methods.
    fn client(
        &self,
        provider: &CoreProviderMetadata,
        scheme: &str,
        authority: &str,
    ) -> Result<Client, OidcError> {
        let redirect = format!("{scheme}://{authority}{CALLBACK_PATH}");
        let redirect =
            RedirectUrl::new(redirect.clone()).map_err(|_| OidcError::RedirectUri(redirect))?;
        let basic = provider
            .token_endpoint_auth_methods_supported()
            .is_none_or(|methods| {
                methods.is_empty() || methods.contains(&CoreClientAuthMethod::ClientSecretBasic)
            });
        Ok(Client::from_provider_metadata(
            provider.clone(),
            ClientId::new(self.config.client_id.clone()),
            self.config.client_secret.clone().map(ClientSecret::new),
        )
        .set_redirect_uri(redirect)
        .set_auth_type(if basic {
            AuthType::BasicAuth
        } else {
            AuthType::RequestBody
        }))
    }

    /// The provider URL to send a visitor of `authority` to.
    async fn authorize_url(
        &self,
        scheme: &str,
        authority: &str,
        return_to: String,
    ) -> Result<String, OidcError> {
        let provider = self.provider().await?;
        let client = self.client(&provider, scheme, authority)?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state, nonce) = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scopes(SCOPES.map(|s| Scope::new(s.to_owned())))
            .set_pkce_challenge(challenge)
            .url();
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if pending.len() >= MAX_PENDING {
            pending.retain(|_, p| p.started.elapsed() < PENDING_TTL);
        }
        if pending.len() >= MAX_PENDING {
            return Err(OidcError::Busy);
        }
        pending.insert(
            state.into_secret(),
            Pending {
                authority: authority.to_owned(),
                return_to,
                verifier,
                nonce,
                started: Instant::now(),
            },
        );
        Ok(url.into())
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
        let code = q.code.ok_or(OidcError::NoCode)?;
        let provider = self.provider().await?;
        let client = self.client(&provider, scheme, authority)?;
        let mut exchange = client
            .exchange_code(AuthorizationCode::new(code))
            .map_err(|e| OidcError::Token(RequestTokenError::Other(e.to_string())))?
            .set_pkce_verifier(pending.verifier);
        if self.config.client_secret.is_some() && matches!(client.auth_type(), AuthType::BasicAuth)
        {
            // The library leaves it out of the form with HTTP Basic, but
            // some providers want it there regardless (RFC 6749 4.1.3
            // allows it); otherwise it is in the form already.
            exchange = exchange.add_extra_param("client_id", self.config.client_id.clone());
        }
        let token = exchange
            .request_async(&self.web)
            .await
            .map_err(OidcError::Token)?;
        let id_token = token.id_token().ok_or(OidcError::NoIdToken)?;
        let verify = |client: &Client| {
            let verifier = client
                .id_token_verifier()
                .set_time_fn(|| Utc::now() - LEEWAY);
            id_token
                .claims(&verifier, &pending.nonce)
                .map(|claims| claims.additional_claims().claims.clone())
        };
        let claims = match verify(&client) {
            Err(ClaimsVerificationError::SignatureVerification(
                SignatureVerificationError::NoMatchingKey,
            )) => {
                let fresh = self.refresh_keys(&provider).await?;
                verify(&self.client(&fresh, scheme, authority)?)?
            }
            other => other?,
        };
        Ok((
            pending.return_to,
            groups(&claims, &self.config.groups_claim),
        ))
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
        OidcError::UnknownState | OidcError::RedirectUri(_) => {
            pages::bad_request(&error.to_string())
        }
        OidcError::Refused(_) | OidcError::IdToken(_) | OidcError::NoCode => {
            pages::forbidden(&error.to_string())
        }
        OidcError::Busy => pages::page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Busy",
            "<p>Too many sign-ins are in progress; try again shortly.</p>",
        ),
        OidcError::IssuerUrl(_)
        | OidcError::Discovery(_)
        | OidcError::Jwks(_)
        | OidcError::Token(_)
        | OidcError::NoIdToken => pages::page(
            StatusCode::BAD_GATEWAY,
            "Sign-in unavailable",
            "<p>The identity provider cannot be used right now.</p>",
        ),
    }
}

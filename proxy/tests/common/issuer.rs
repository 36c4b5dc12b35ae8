//! A small real OpenID Connect provider on loopback: discovery, JWKS,
//! an authorize endpoint that approves one configured user at once, and a
//! token endpoint that checks the client secret, redirect URI and PKCE.

use std::collections::HashMap;
use std::net::SocketAddrV4;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair, RsaKeyPair, RSA_PKCS1_SHA256};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivatePkcs8KeyDer;
use serde_json::{json, Value};

use super::{backend, full, TestBody};

pub const CLIENT_ID: &str = "meshplane-proxy";
pub const CLIENT_SECRET: &str = "test-client-secret";

/// Which key signs ID tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningAlg {
    Rs256,
    EdDsa,
}

struct Grant {
    client_id: String,
    redirect_uri: String,
    challenge: String,
    nonce: String,
}

struct State {
    issuer: String,
    alg: SigningAlg,
    groups: Vec<String>,
    rsa: RsaKeyPair,
    ed: Ed25519KeyPair,
    grants: Mutex<HashMap<String, Grant>>,
    tokens_issued: Mutex<u32>,
}

/// A running provider.
pub struct Issuer {
    pub url: String,
    state: Arc<State>,
}

impl Issuer {
    /// Starts a provider whose one user is in `groups`, signing with `alg`.
    pub async fn start(groups: &[&str], alg: SigningAlg) -> Issuer {
        let pem = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/test-issuer-rsa.pem"
        ))
        .unwrap();
        let pkcs8 = PrivatePkcs8KeyDer::from_pem_slice(&pem).unwrap();
        let rsa = RsaKeyPair::from_pkcs8(pkcs8.secret_pkcs8_der()).unwrap();
        let ed_pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let ed = Ed25519KeyPair::from_pkcs8(ed_pkcs8.as_ref()).unwrap();
        // The address is needed in the state before the server starts: bind
        // through a cell filled right after.
        let cell: Arc<Mutex<Option<Arc<State>>>> = Arc::new(Mutex::new(None));
        let handler_cell = cell.clone();
        let addr: SocketAddrV4 = backend(move |req| {
            let state = handler_cell.lock().unwrap().clone().expect("issuer state");
            async move { handle(&state, req).await }
        })
        .await;
        let url = format!("http://{addr}");
        let state = Arc::new(State {
            issuer: url.clone(),
            alg,
            groups: groups.iter().map(|g| g.to_string()).collect(),
            rsa,
            ed,
            grants: Mutex::new(HashMap::new()),
            tokens_issued: Mutex::new(0),
        });
        *cell.lock().unwrap() = Some(state.clone());
        Issuer { url, state }
    }

    pub fn tokens_issued(&self) -> u32 {
        *self.state.tokens_issued.lock().unwrap()
    }
}

fn json_response(status: StatusCode, value: Value) -> Response<TestBody> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(full(value.to_string()))
        .unwrap()
}

fn query(req: &Request<Incoming>) -> HashMap<String, String> {
    serde_urlencoded::from_str(req.uri().query().unwrap_or("")).unwrap_or_default()
}

async fn handle(state: &State, req: Request<Incoming>) -> Response<TestBody> {
    match req.uri().path() {
        "/.well-known/openid-configuration" => json_response(
            StatusCode::OK,
            json!({
                "issuer": state.issuer,
                "authorization_endpoint": format!("{}/authorize", state.issuer),
                "token_endpoint": format!("{}/token", state.issuer),
                "jwks_uri": format!("{}/jwks", state.issuer),
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic"],
                "id_token_signing_alg_values_supported": ["RS256", "EdDSA"],
            }),
        ),
        "/jwks" => {
            let rsa = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(state.rsa.public());
            json_response(
                StatusCode::OK,
                json!({"keys": [
                    {"kty": "RSA", "kid": "rsa-1", "use": "sig", "alg": "RS256",
                     "n": URL_SAFE_NO_PAD.encode(&rsa.n), "e": URL_SAFE_NO_PAD.encode(&rsa.e)},
                    {"kty": "OKP", "crv": "Ed25519", "kid": "ed-1", "use": "sig", "alg": "EdDSA",
                     "x": URL_SAFE_NO_PAD.encode(state.ed.public_key().as_ref())},
                ]}),
            )
        }
        "/authorize" => authorize(state, &req),
        "/token" => token(state, req).await,
        _ => json_response(StatusCode::NOT_FOUND, json!({"error": "not_found"})),
    }
}

fn authorize(state: &State, req: &Request<Incoming>) -> Response<TestBody> {
    let q = query(req);
    let field = |name: &str| q.get(name).cloned().unwrap_or_default();
    assert_eq!(field("response_type"), "code");
    assert_eq!(field("code_challenge_method"), "S256");
    assert!(field("scope").split(' ').any(|s| s == "openid"));
    let code = format!("code-{}", state.grants.lock().unwrap().len() + 1);
    state.grants.lock().unwrap().insert(
        code.clone(),
        Grant {
            client_id: field("client_id"),
            redirect_uri: field("redirect_uri"),
            challenge: field("code_challenge"),
            nonce: field("nonce"),
        },
    );
    let back =
        serde_urlencoded::to_string([("code", code.as_str()), ("state", field("state").as_str())])
            .unwrap();
    Response::builder()
        .status(StatusCode::FOUND)
        .header("location", format!("{}?{back}", field("redirect_uri")))
        .body(full(""))
        .unwrap()
}

async fn token(state: &State, req: Request<Incoming>) -> Response<TestBody> {
    let expected_basic = format!(
        "Basic {}",
        STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"))
    );
    let authorized = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        == Some(expected_basic.as_str());
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let form: HashMap<String, String> = serde_urlencoded::from_bytes(&body).unwrap();
    let field = |name: &str| form.get(name).cloned().unwrap_or_default();
    if !authorized {
        return json_response(StatusCode::UNAUTHORIZED, json!({"error": "invalid_client"}));
    }
    let Some(grant) = state.grants.lock().unwrap().remove(&field("code")) else {
        return json_response(StatusCode::BAD_REQUEST, json!({"error": "invalid_grant"}));
    };
    let verifier_ok = URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        field("code_verifier").as_bytes(),
    )) == grant.challenge;
    if field("grant_type") != "authorization_code"
        || field("redirect_uri") != grant.redirect_uri
        || field("client_id") != grant.client_id
        || !verifier_ok
    {
        return json_response(StatusCode::BAD_REQUEST, json!({"error": "invalid_grant"}));
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({
        "iss": state.issuer, "aud": grant.client_id, "sub": "user-1",
        "email": "user@example.test", "iat": now, "exp": now + 300,
        "nonce": grant.nonce, "groups": state.groups,
    });
    *state.tokens_issued.lock().unwrap() += 1;
    json_response(
        StatusCode::OK,
        json!({"access_token": "opaque", "token_type": "Bearer", "id_token": sign(state, &claims)}),
    )
}

fn sign(state: &State, claims: &Value) -> String {
    let (alg, kid) = match state.alg {
        SigningAlg::Rs256 => ("RS256", "rsa-1"),
        SigningAlg::EdDsa => ("EdDSA", "ed-1"),
    };
    let header = URL_SAFE_NO_PAD.encode(json!({"alg": alg, "kid": kid, "typ": "JWT"}).to_string());
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signed = format!("{header}.{payload}");
    let signature = match state.alg {
        SigningAlg::Rs256 => {
            let mut sig = vec![0; state.rsa.public().modulus_len()];
            state
                .rsa
                .sign(
                    &RSA_PKCS1_SHA256,
                    &SystemRandom::new(),
                    signed.as_bytes(),
                    &mut sig,
                )
                .unwrap();
            sig
        }
        SigningAlg::EdDsa => state.ed.sign(signed.as_bytes()).as_ref().to_vec(),
    };
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature))
}

//! What a relay process needs from the management server: the public key
//! that management's relay tokens are signed with, published unauthenticated
//! at [`KEY_PATH`] as JSON ([`KeyDocument`]).

use std::time::Duration;

use bytes::Bytes;
use http::header::HOST;
use http::{Request, StatusCode};
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::dial::{self, DialError, DialOptions, Target};
use crate::token::{TokenError, TokenVerifier};

/// Where management publishes its relay token key.
pub const KEY_PATH: &str = "/relay/v1/key";
/// The algorithm name in the key document.
pub const ALGORITHM: &str = "ed25519";
/// How long fetching the key may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest key document read.
const MAX_DOCUMENT: usize = 4096;

/// The body of `GET /relay/v1/key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyDocument {
    /// Always [`ALGORITHM`].
    pub algorithm: String,
    /// The 32-byte public key, base64.
    pub key: String,
}

/// Why the key could not be fetched.
#[derive(Debug, Error)]
pub enum ManagementError {
    #[error(transparent)]
    Dial(#[from] DialError),
    #[error("management server at {url}: {why}")]
    Http { url: String, why: String },
    #[error("management server at {url} answered {status} for {KEY_PATH}")]
    Status { url: String, status: StatusCode },
    #[error("management server at {url} sent an unreadable key document: {why}")]
    Document { url: String, why: String },
    #[error(transparent)]
    Key(#[from] TokenError),
    #[error("management server at {0} did not answer in time")]
    Timeout(String),
}

/// The verifier of the tokens of the management server at `management_url`
/// (`http://host:port` or `https://`).
pub async fn fetch_verifier(management_url: &str) -> Result<TokenVerifier, ManagementError> {
    tokio::time::timeout(FETCH_TIMEOUT, fetch(management_url))
        .await
        .map_err(|_| ManagementError::Timeout(management_url.to_string()))?
}

async fn fetch(url: &str) -> Result<TokenVerifier, ManagementError> {
    let target = Target::http(url)?;
    let http = |why: String| ManagementError::Http {
        url: url.to_string(),
        why,
    };
    let io = dial::connect(&target, &DialOptions::default()).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| http(e.to_string()))?;
    tokio::spawn(connection);
    let base = target.path.trim_end_matches('/');
    let request = Request::get(format!("{base}{KEY_PATH}"))
        .header(HOST, target.authority())
        .body(Empty::<Bytes>::new())
        .map_err(|e| http(e.to_string()))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| http(e.to_string()))?;
    if response.status() != StatusCode::OK {
        return Err(ManagementError::Status {
            url: url.to_string(),
            status: response.status(),
        });
    }
    let document = |why: String| ManagementError::Document {
        url: url.to_string(),
        why,
    };
    let body = Limited::new(response.into_body(), MAX_DOCUMENT)
        .collect()
        .await
        .map_err(|e| document(e.to_string()))?
        .to_bytes();
    let key: KeyDocument = serde_json::from_slice(&body).map_err(|e| document(e.to_string()))?;
    if key.algorithm != ALGORITHM {
        return Err(document(format!("unknown algorithm {:?}", key.algorithm)));
    }
    Ok(TokenVerifier::from_base64(&key.key)?)
}

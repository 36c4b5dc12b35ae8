//! A minimal HTTP client for talking to the identity provider (discovery,
//! JWKS, token endpoint): one short-lived connection per call.

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST};
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde::de::DeserializeOwned;
use tokio_rustls::TlsConnector;

use crate::backend::BackendStream;
use crate::dialer::Conn;

/// How long one call to the identity provider may take.
const TIMEOUT: Duration = Duration::from_secs(15);
/// Largest response accepted (a JWKS or discovery document is a few KiB).
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// Errors of one call.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FetchError {
    #[error("invalid URL {0}")]
    Url(String),
    #[error("connect: {0}")]
    Connect(std::io::Error),
    #[error("http: {0}")]
    Http(#[from] hyper::Error),
    #[error("request: {0}")]
    Request(#[from] http::Error),
    #[error("status {status}: {body}")]
    Status { status: u16, body: String },
    #[error("response too large or cut short")]
    Body,
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    #[error("timed out")]
    Timeout,
}

/// The client; TLS verified against the Mozilla roots.
#[derive(Clone)]
pub(crate) struct WebClient {
    tls: TlsConnector,
}

impl std::fmt::Debug for WebClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebClient").finish_non_exhaustive()
    }
}

impl WebClient {
    pub fn new(tls: Arc<rustls::ClientConfig>) -> Self {
        Self {
            tls: TlsConnector::from(tls),
        }
    }

    /// GETs `url` and parses the JSON answer.
    pub async fn get_json<T: DeserializeOwned>(&self, url: &str) -> Result<T, FetchError> {
        let req = Request::builder()
            .method(Method::GET)
            .uri(parse(url)?)
            .header(ACCEPT, "application/json")
            .body(Full::new(Bytes::new()))?;
        self.call(req).await
    }

    /// POSTs `form` to `url` (with HTTP Basic client credentials when
    /// given) and parses the JSON answer.
    pub async fn post_form<T: DeserializeOwned>(
        &self,
        url: &str,
        form: &[(&str, &str)],
        basic: Option<(&str, &str)>,
    ) -> Result<T, FetchError> {
        let body =
            serde_urlencoded::to_string(form).map_err(|_| FetchError::Url(url.to_owned()))?;
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(parse(url)?)
            .header(ACCEPT, "application/json")
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some((user, password)) = basic {
            // RFC 6749 2.3.1: both parts form-encoded before Basic.
            let encode =
                |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let credentials = format!("{}:{}", encode(user), encode(password));
            req = req.header(
                AUTHORIZATION,
                format!("Basic {}", STANDARD.encode(credentials)),
            );
        }
        self.call(req.body(Full::new(Bytes::from(body)))?).await
    }

    async fn call<T: DeserializeOwned>(&self, req: Request<Full<Bytes>>) -> Result<T, FetchError> {
        let bytes = tokio::time::timeout(TIMEOUT, self.send(req))
            .await
            .map_err(|_| FetchError::Timeout)??;
        Ok(serde_json::from_slice(&bytes)?)
    }

    async fn send(&self, mut req: Request<Full<Bytes>>) -> Result<Bytes, FetchError> {
        let uri = req.uri().clone();
        let bad_url = || FetchError::Url(uri.to_string());
        let host = uri.host().ok_or_else(bad_url)?.to_owned();
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(bad_url()),
        };
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let tcp = tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port))
            .await
            .map_err(FetchError::Connect)?;
        let conn: Box<dyn Conn> = Box::new(tcp);
        let stream = if tls {
            let name = ServerName::try_from(host.clone()).map_err(|_| bad_url())?;
            let tls = self
                .tls
                .connect(name, conn)
                .await
                .map_err(FetchError::Connect)?;
            BackendStream::Tls(Box::new(tls))
        } else {
            BackendStream::Plain(conn)
        };
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        let authority = uri.authority().map_or(host.clone(), |a| a.to_string());
        req.headers_mut()
            .insert(HOST, authority.parse().map_err(|_| bad_url())?);
        *req.uri_mut() = uri
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .parse()
            .map_err(|_| bad_url())?;
        let response = sender.send_request(req).await?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|_| FetchError::Body)?
            .to_bytes();
        if !status.is_success() {
            return Err(FetchError::Status {
                status: status.as_u16(),
                body: String::from_utf8_lossy(&body).chars().take(200).collect(),
            });
        }
        Ok(body)
    }
}

fn parse(url: &str) -> Result<Uri, FetchError> {
    url.parse().map_err(|_| FetchError::Url(url.to_owned()))
}

//! The HTTP client for talking to the identity provider (discovery, JWKS,
//! token endpoint): hyper's pooled client over rustls, with the time and
//! size bounds a provider's answers must fit in. The OpenID Connect library
//! builds the requests and reads the answers; this only carries them.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use openidconnect::{AsyncHttpClient, HttpRequest, HttpResponse};

/// How long one call to the identity provider may take.
const TIMEOUT: Duration = Duration::from_secs(15);
/// Largest response accepted (a JWKS or discovery document is a few KiB).
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// Errors of one call.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FetchError {
    #[error("http: {0}")]
    Http(#[from] hyper_util::client::legacy::Error),
    #[error("response too large or cut short")]
    Body,
    #[error("timed out")]
    Timeout,
}

/// The client; TLS verified against the roots of the configuration given.
#[derive(Clone)]
pub(crate) struct WebClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl std::fmt::Debug for WebClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebClient").finish_non_exhaustive()
    }
}

impl WebClient {
    pub fn new(tls: Arc<rustls::ClientConfig>) -> Self {
        // The connector announces the protocols it enables itself.
        let mut tls = (*tls).clone();
        tls.alpn_protocols.clear();
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }

    /// Sends `request` and reads the whole answer, whatever its status (the
    /// caller judges it), within [`TIMEOUT`] and [`MAX_RESPONSE_BYTES`].
    pub async fn send(&self, request: HttpRequest) -> Result<HttpResponse, FetchError> {
        tokio::time::timeout(TIMEOUT, self.exchange(request))
            .await
            .map_err(|_| FetchError::Timeout)?
    }

    async fn exchange(&self, request: HttpRequest) -> Result<HttpResponse, FetchError> {
        let response = self.client.request(request.map(Full::from)).await?;
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|_| FetchError::Body)?
            .to_bytes();
        Ok(HttpResponse::from_parts(parts, body.to_vec()))
    }
}

/// How the OpenID Connect library sends its requests. A named future (not
/// a closure) keeps the request handlers `Send` for every lifetime.
impl<'c> AsyncHttpClient<'c> for WebClient {
    type Error = FetchError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, FetchError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(self.send(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A loopback HTTP server answering every connection with `head`
    /// followed by `body_len` bytes; its URL.
    async fn server(head: &'static str, body_len: usize) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut request = [0u8; 4096];
                    let _ = conn.read(&mut request).await;
                    let _ = conn.write_all(head.as_bytes()).await;
                    let _ = conn.write_all(&vec![b'x'; body_len]).await;
                });
            }
        });
        format!("http://{addr}/")
    }

    fn get(url: &str) -> HttpRequest {
        http::Request::get(url).body(Vec::new()).unwrap()
    }

    fn client() -> WebClient {
        WebClient::new(crate::tls::web_client_config().unwrap())
    }

    #[tokio::test]
    async fn answers_pass_whatever_their_status() {
        let url = server("HTTP/1.1 404 Not Found\r\ncontent-length: 3\r\n\r\n", 3).await;
        let response = client().send(get(&url)).await.unwrap();
        assert_eq!(response.status(), 404);
        assert_eq!(response.body(), b"xxx");
    }

    #[tokio::test]
    async fn an_answer_over_the_limit_is_refused() {
        let head = "HTTP/1.1 200 OK\r\ncontent-length: 1048577\r\n\r\n";
        let url = server(head, MAX_RESPONSE_BYTES + 1).await;
        let error = client().send(get(&url)).await.unwrap_err();
        assert!(matches!(error, FetchError::Body), "{error}");
    }
}

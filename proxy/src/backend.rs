//! The connection pool towards targets: a hyper client whose connector
//! opens streams through the embedding daemon's [`Dialer`].

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::BoxFuture;
use http::Uri;
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::dialer::{Conn, Dialer};

/// How long an idle keep-alive connection to a target is kept.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long opening a connection to a target may take before the visitor
/// gets a 502 (a peer that went away never answers a mesh SYN).
const DIAL_TIMEOUT: Duration = Duration::from_secs(15);

/// Errors of opening a connection to a target.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BackendError {
    #[error("target address is not an IPv4 socket address: {0}")]
    Address(Uri),
    #[error("dial {0}: {1}")]
    Dial(SocketAddrV4, io::Error),
    #[error("tls to {0}: {1}")]
    Tls(SocketAddrV4, io::Error),
}

/// The pooled HTTP/1.1 client towards targets.
pub(crate) type BackendClient = Client<MeshConnector, Incoming>;

/// Builds the client; `tls` is used for `https` targets.
pub(crate) fn client(dialer: Arc<dyn Dialer>, tls: Arc<rustls::ClientConfig>) -> BackendClient {
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(IDLE_TIMEOUT)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        // A request whose body was already streamed cannot be replayed.
        .retry_canceled_requests(false)
        .build(MeshConnector {
            dialer,
            tls: TlsConnector::from(tls),
        })
}

/// Opens target connections through the [`Dialer`]: URIs are
/// `http(s)://<mesh ip>:<port>`, so the pool keys by target.
#[derive(Clone)]
pub(crate) struct MeshConnector {
    dialer: Arc<dyn Dialer>,
    tls: TlsConnector,
}

impl std::fmt::Debug for MeshConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshConnector").finish_non_exhaustive()
    }
}

impl tower_service::Service<Uri> for MeshConnector {
    type Response = TokioIo<BackendStream>;
    type Error = BackendError;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let dialer = self.dialer.clone();
        let tls = self.tls.clone();
        Box::pin(async move {
            let target = target_of(&uri).ok_or_else(|| BackendError::Address(uri.clone()))?;
            let conn = match tokio::time::timeout(DIAL_TIMEOUT, dialer.dial(target)).await {
                Ok(dialed) => dialed.map_err(|e| BackendError::Dial(target, e))?,
                Err(_) => {
                    let timed_out = io::Error::from(io::ErrorKind::TimedOut);
                    return Err(BackendError::Dial(target, timed_out));
                }
            };
            if uri.scheme() != Some(&http::uri::Scheme::HTTPS) {
                return Ok(TokioIo::new(BackendStream::Plain(conn)));
            }
            let name = ServerName::IpAddress((*target.ip()).into());
            let stream = tls
                .connect(name, conn)
                .await
                .map_err(|e| BackendError::Tls(target, e))?;
            Ok(TokioIo::new(BackendStream::Tls(Box::new(stream))))
        })
    }
}

/// The URI of a request to `target`, keeping `path_and_query`.
pub(crate) fn uri_for(
    target: SocketAddrV4,
    tls: bool,
    path_and_query: &str,
) -> Result<Uri, http::Error> {
    Uri::builder()
        .scheme(if tls { "https" } else { "http" })
        .authority(target.to_string())
        .path_and_query(path_and_query)
        .build()
}

fn target_of(uri: &Uri) -> Option<SocketAddrV4> {
    let ip: Ipv4Addr = uri.host()?.parse().ok()?;
    Some(SocketAddrV4::new(ip, uri.port_u16()?))
}

/// A connection to a target, with or without TLS.
pub(crate) enum BackendStream {
    Plain(Box<dyn Conn>),
    Tls(Box<TlsStream<Box<dyn Conn>>>),
}

impl Connection for BackendStream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl AsyncRead for BackendStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for BackendStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

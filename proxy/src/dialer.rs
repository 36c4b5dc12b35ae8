//! How the proxy reaches a service's target.

use std::io;
use std::net::SocketAddrV4;

use futures_util::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite};

/// A byte stream to a target: a netstack TCP stream in the daemon, a plain
/// socket elsewhere.
pub trait Conn: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Conn for T {}

/// Opens connections to targets. The daemon implements it over the WireGuard
/// netstack, so the proxy never needs the host's routing to reach a peer.
pub trait Dialer: Send + Sync + 'static {
    /// Connects to `target` (a peer's mesh address and port).
    fn dial(&self, target: SocketAddrV4) -> BoxFuture<'static, io::Result<Box<dyn Conn>>>;
}

/// Dials targets with the host's own TCP stack: for a proxy that runs where
/// the targets are directly routable, and for tests on loopback.
#[derive(Debug, Clone, Copy, Default)]
pub struct TcpDialer;

impl Dialer for TcpDialer {
    fn dial(&self, target: SocketAddrV4) -> BoxFuture<'static, io::Result<Box<dyn Conn>>> {
        Box::pin(async move {
            let stream = tokio::net::TcpStream::connect(target).await?;
            stream.set_nodelay(true)?;
            Ok(Box::new(stream) as Box<dyn Conn>)
        })
    }
}

//! The mark on this peer's own underlay sockets.
//!
//! While an exit node is in use, everything this host sends goes into the
//! tunnel ([`super::exit`]) — except the packets that carry the tunnel
//! itself and its control plane: the WireGuard UDP socket (which also sends
//! the STUN requests), the management connection (Sync, login, signal, flow
//! reports) and the relay connection. Those sockets carry
//! [`UNDERLAY_MARK`] (`SO_MARK`), and the policy rule that sends traffic to
//! the tunnel's table skips marked packets, so they keep following the
//! host's own routes. Without this an exit node would route the tunnel
//! into itself and cut the peer off from management.
//!
//! Setting a mark needs CAP_NET_ADMIN. A daemon without it (netstack mode
//! as an ordinary user) cannot install an exit route either, so an
//! unmarked socket then costs nothing and the failure is only logged.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use tokio::net::{TcpSocket, TcpStream};
use tonic::transport::Uri;

/// The fwmark of this peer's underlay sockets ("mp"). Distinct from
/// WireGuard tools' 51820 and NetBird's marks, so the three can coexist.
pub const UNDERLAY_MARK: u32 = 0x6d70;

/// Marks `socket` with [`UNDERLAY_MARK`]; logs and carries on when the
/// kernel refuses (no CAP_NET_ADMIN, or not Linux).
pub fn mark<S: std::os::fd::AsFd>(socket: &S) {
    #[cfg(target_os = "linux")]
    if let Err(e) = socket2::SockRef::from(socket).set_mark(UNDERLAY_MARK) {
        tracing::debug!("cannot mark an underlay socket: {e}");
    }
    #[cfg(not(target_os = "linux"))]
    let _ = socket;
}

/// A marked TCP connection to the first of `host`'s addresses that
/// answers.
pub async fn connect(host: &str, port: u16) -> io::Result<TcpStream> {
    let mut last = None;
    for addr in tokio::net::lookup_host((host, port)).await? {
        match connect_addr(addr).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(io::ErrorKind::NotFound, format!("{host} has no address"))
    }))
}

async fn connect_addr(addr: SocketAddr) -> io::Result<TcpStream> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    mark(&socket);
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// The management client's connector: TCP, marked; for an `https://`
/// URL tonic runs TLS over it.
#[derive(Debug, Clone, Copy, Default)]
pub struct MarkedConnector;

impl tower_service::Service<Uri> for MarkedConnector {
    type Response = TokioIo<TcpStream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<TokioIo<TcpStream>>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        Box::pin(async move {
            let invalid = |why: &str| io::Error::new(io::ErrorKind::InvalidInput, why.to_string());
            let host = uri.host().ok_or_else(|| invalid("no host in the URL"))?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
                Some("https") => 443,
                _ => 80,
            });
            connect(host, port).await.map(TokioIo::new)
        })
    }
}

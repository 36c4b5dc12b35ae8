//! A SOCKS5 proxy (RFC 1928) for local applications in netstack mode: with
//! no TUN interface the host's programs cannot reach the mesh by
//! themselves, so `meshplane daemon --netstack --socks5 127.0.0.1:1080`
//! lets them through the daemon's userspace stack (`curl --socks5 …`).
//!
//! Only what a mesh of IPv4 peers needs: the no-authentication method and
//! CONNECT to IPv4 addresses. Other commands get "command not supported",
//! domain names and IPv6 "address type not supported" (clients resolve
//! names themselves, as `curl --socks5` does). A failed dial is answered
//! with the reply code that says why.
//!
//! The proxy asks for no credentials, so it listens on loopback unless the
//! user names another address.

use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::timeout;

use crate::engine::netstack::{self, Dialer};
use crate::service::Daemon;

const VERSION: u8 = 5;
const NO_AUTH: u8 = 0;
const NO_ACCEPTABLE_METHOD: u8 = 0xff;
const CONNECT: u8 = 1;
const IPV4: u8 = 1;
const DOMAIN: u8 = 3;
const IPV6: u8 = 4;

/// Reply codes (RFC 1928 section 6).
mod reply {
    pub const SUCCEEDED: u8 = 0;
    pub const GENERAL_FAILURE: u8 = 1;
    pub const NETWORK_UNREACHABLE: u8 = 3;
    pub const HOST_UNREACHABLE: u8 = 4;
    pub const CONNECTION_REFUSED: u8 = 5;
    pub const COMMAND_NOT_SUPPORTED: u8 = 7;
    pub const ADDRESS_TYPE_NOT_SUPPORTED: u8 = 8;
}

/// Clients served at once; more are closed at once.
const MAX_CLIENTS: usize = 1024;
/// The pause after a failed accept.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);
/// How long a client may take to send its greeting and request.
const NEGOTIATE_WITHIN: Duration = Duration::from_secs(10);
/// How long a connection through the mesh may take to open (a filtered or
/// absent peer never answers), waiting for the daemon's link included.
pub const CONNECT_WITHIN: Duration = Duration::from_secs(10);

/// Why one client's session ended early.
#[derive(Debug, Error)]
pub enum SocksError {
    #[error("not SOCKS version 5 (version byte {0})")]
    Version(u8),
    #[error("the client offers no method without authentication")]
    NoAcceptableMethod,
    #[error("command {0} is not supported")]
    Command(u8),
    #[error("address type {0} is not supported")]
    AddressType(u8),
    #[error("the client sent nothing usable within {NEGOTIATE_WITHIN:?}")]
    Timeout,
    #[error("connecting to {to}: {source}")]
    Dial { to: SocketAddrV4, source: io::Error },
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Opens the connection a CONNECT asks for.
pub trait Dial: Send + Sync + 'static {
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// The stream and its local address (sent back to the client).
    fn dial(
        &self,
        to: SocketAddrV4,
    ) -> impl Future<Output = io::Result<(Self::Stream, SocketAddrV4)>> + Send;
}

impl Dial for Dialer {
    type Stream = netstack::TcpStream;

    async fn dial(&self, to: SocketAddrV4) -> io::Result<(netstack::TcpStream, SocketAddrV4)> {
        let stream = self.connect(to).await?;
        let local = stream.local_addr()?;
        Ok((stream, local))
    }
}

/// Through whatever link the daemon has at the moment of the request.
impl Dial for Daemon {
    type Stream = netstack::TcpStream;

    async fn dial(&self, to: SocketAddrV4) -> io::Result<(netstack::TcpStream, SocketAddrV4)> {
        let dialer = self.dialer().await.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotConnected,
                "meshplane is down or not in netstack mode",
            )
        })?;
        dialer.dial(to).await
    }
}

/// Serves SOCKS5 clients on `listener` until dropped (which also closes
/// every client's connection).
pub async fn serve<D: Dial>(listener: TcpListener, dial: Arc<D>) {
    let permits = Arc::new(Semaphore::new(MAX_CLIENTS));
    let mut clients = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((client, from)) => {
                    let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                        tracing::warn!("SOCKS5: {MAX_CLIENTS} clients connected; closing {from}");
                        continue;
                    };
                    let dial = Arc::clone(&dial);
                    clients.spawn(async move {
                        let _permit = permit;
                        if let Err(e) = session(client, dial.as_ref()).await {
                            tracing::debug!("SOCKS5 client {from}: {e}");
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors, say: give others time to close.
                    tracing::warn!("SOCKS5 listener: {e}");
                    tokio::time::sleep(ACCEPT_RETRY).await;
                }
            },
            Some(_) = clients.join_next() => {}
        }
    }
}

/// One client: negotiate, dial, then relay until both sides are done.
async fn session<C, D>(mut client: C, dial: &D) -> Result<(), SocksError>
where
    C: AsyncRead + AsyncWrite + Unpin,
    D: Dial,
{
    let to = timeout(NEGOTIATE_WITHIN, negotiate(&mut client))
        .await
        .map_err(|_| SocksError::Timeout)??;
    let dialled = timeout(CONNECT_WITHIN, dial.dial(to))
        .await
        .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()));
    let (mut upstream, local) = match dialled {
        Ok(ok) => ok,
        Err(source) => {
            answer(&mut client, reply_code(&source), None).await?;
            return Err(SocksError::Dial { to, source });
        }
    };
    answer(&mut client, reply::SUCCEEDED, Some(local)).await?;
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}

/// The greeting and the request; answers the ones it refuses.
async fn negotiate<C: AsyncRead + AsyncWrite + Unpin>(
    client: &mut C,
) -> Result<SocketAddrV4, SocksError> {
    let [version, count] = read_array(client).await?;
    if version != VERSION {
        return Err(SocksError::Version(version));
    }
    let mut methods = vec![0u8; usize::from(count)];
    client.read_exact(&mut methods).await?;
    if !methods.contains(&NO_AUTH) {
        client.write_all(&[VERSION, NO_ACCEPTABLE_METHOD]).await?;
        return Err(SocksError::NoAcceptableMethod);
    }
    client.write_all(&[VERSION, NO_AUTH]).await?;

    let [version, command, _reserved, address_type] = read_array(client).await?;
    if version != VERSION {
        return Err(SocksError::Version(version));
    }
    // Read the whole address even when it will be refused, so the reply
    // goes to a client that has finished sending.
    let to = match address_type {
        IPV4 => {
            let [a, b, c, d, p0, p1] = read_array(client).await?;
            Some(SocketAddrV4::new(
                Ipv4Addr::new(a, b, c, d),
                u16::from_be_bytes([p0, p1]),
            ))
        }
        DOMAIN => {
            let [len] = read_array(client).await?;
            let mut rest = vec![0u8; usize::from(len) + 2];
            client.read_exact(&mut rest).await?;
            None
        }
        IPV6 => {
            read_array::<18, _>(client).await?;
            None
        }
        _ => None,
    };
    let Some(to) = to else {
        answer(client, reply::ADDRESS_TYPE_NOT_SUPPORTED, None).await?;
        return Err(SocksError::AddressType(address_type));
    };
    if command != CONNECT {
        answer(client, reply::COMMAND_NOT_SUPPORTED, None).await?;
        return Err(SocksError::Command(command));
    }
    Ok(to)
}

async fn read_array<const N: usize, C: AsyncRead + Unpin>(client: &mut C) -> io::Result<[u8; N]> {
    let mut buf = [0u8; N];
    client.read_exact(&mut buf).await?;
    Ok(buf)
}

/// A reply; the bound address is 0.0.0.0:0 when there is none.
async fn answer<C: AsyncWrite + Unpin>(
    client: &mut C,
    code: u8,
    bound: Option<SocketAddrV4>,
) -> io::Result<()> {
    let bound = bound.unwrap_or(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));
    let mut reply = vec![VERSION, code, 0, IPV4];
    reply.extend_from_slice(&bound.ip().octets());
    reply.extend_from_slice(&bound.port().to_be_bytes());
    client.write_all(&reply).await
}

/// The reply code for a failed dial.
fn reply_code(e: &io::Error) -> u8 {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => reply::CONNECTION_REFUSED,
        io::ErrorKind::NetworkUnreachable | io::ErrorKind::NotConnected => {
            reply::NETWORK_UNREACHABLE
        }
        io::ErrorKind::HostUnreachable | io::ErrorKind::TimedOut => reply::HOST_UNREACHABLE,
        _ => reply::GENERAL_FAILURE,
    }
}

/// The listen address from `--socks5`: `IP:PORT`, or a port alone for
/// loopback.
pub fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    }
    text.parse::<SocketAddr>()
        .map_err(|_| format!("{text:?} is not PORT or IP:PORT"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Dials over the host's own TCP, so the protocol can be checked
    /// against real loopback services.
    struct HostTcp;

    impl Dial for HostTcp {
        type Stream = tokio::net::TcpStream;

        async fn dial(
            &self,
            to: SocketAddrV4,
        ) -> io::Result<(tokio::net::TcpStream, SocketAddrV4)> {
            let s = tokio::net::TcpStream::connect(to).await?;
            match s.local_addr()? {
                SocketAddr::V4(local) => Ok((s, local)),
                SocketAddr::V6(_) => Err(io::ErrorKind::Unsupported.into()),
            }
        }
    }

    async fn proxy() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let at = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, Arc::new(HostTcp)));
        at
    }

    /// Greets with `methods`, sends `request`; the method reply and the
    /// request's reply code.
    async fn ask(
        at: SocketAddr,
        methods: &[u8],
        request: &[u8],
    ) -> (tokio::net::TcpStream, [u8; 2], Option<u8>) {
        let mut s = tokio::net::TcpStream::connect(at).await.unwrap();
        let mut hello = vec![VERSION, methods.len() as u8];
        hello.extend_from_slice(methods);
        s.write_all(&hello).await.unwrap();
        let mut chosen = [0u8; 2];
        s.read_exact(&mut chosen).await.unwrap();
        if chosen[1] == NO_ACCEPTABLE_METHOD {
            return (s, chosen, None);
        }
        s.write_all(request).await.unwrap();
        let mut head = [0u8; 10];
        s.read_exact(&mut head).await.unwrap();
        assert_eq!((head[0], head[3]), (VERSION, IPV4));
        (s, chosen, Some(head[1]))
    }

    fn connect_to(at: SocketAddrV4) -> Vec<u8> {
        let mut r = vec![VERSION, CONNECT, 0, IPV4];
        r.extend_from_slice(&at.ip().octets());
        r.extend_from_slice(&at.port().to_be_bytes());
        r
    }

    fn free_port() -> SocketAddrV4 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        match l.local_addr().unwrap() {
            SocketAddr::V4(a) => a,
            SocketAddr::V6(_) => unreachable!("bound to IPv4"),
        }
    }

    #[tokio::test]
    async fn connect_relays_both_ways() {
        let at = proxy().await;
        let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let SocketAddr::V4(target) = echo.local_addr().unwrap() else {
            unreachable!("bound to IPv4")
        };
        tokio::spawn(async move {
            let (mut s, _) = echo.accept().await.unwrap();
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).await.unwrap();
            s.write_all(&buf).await.unwrap();
        });
        let (mut s, chosen, code) = ask(at, &[2, NO_AUTH], &connect_to(target)).await;
        assert_eq!(chosen, [VERSION, NO_AUTH]);
        assert_eq!(code, Some(reply::SUCCEEDED));
        s.write_all(b"hello").await.unwrap();
        let mut back = [0u8; 5];
        s.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"hello");
    }

    #[tokio::test]
    async fn refusals_carry_their_codes() {
        let at = proxy().await;
        let (_, chosen, code) = ask(at, &[2], &[]).await;
        assert_eq!((chosen, code), ([VERSION, NO_ACCEPTABLE_METHOD], None));

        let closed = free_port();
        let (_, _, code) = ask(at, &[NO_AUTH], &connect_to(closed)).await;
        assert_eq!(code, Some(reply::CONNECTION_REFUSED));

        let mut bind = connect_to(closed);
        bind[1] = 2;
        let (_, _, code) = ask(at, &[NO_AUTH], &bind).await;
        assert_eq!(code, Some(reply::COMMAND_NOT_SUPPORTED));

        let mut domain = vec![VERSION, CONNECT, 0, DOMAIN, 9];
        domain.extend_from_slice(b"localhost\x00\x50");
        let (_, _, code) = ask(at, &[NO_AUTH], &domain).await;
        assert_eq!(code, Some(reply::ADDRESS_TYPE_NOT_SUPPORTED));

        let mut v6 = vec![VERSION, CONNECT, 0, IPV6];
        v6.extend_from_slice(&[0; 18]);
        let (_, _, code) = ask(at, &[NO_AUTH], &v6).await;
        assert_eq!(code, Some(reply::ADDRESS_TYPE_NOT_SUPPORTED));
    }

    #[test]
    fn listen_address_defaults_to_loopback() {
        assert_eq!(
            parse_listen("1080").unwrap(),
            "127.0.0.1:1080".parse().unwrap()
        );
        assert_eq!(
            parse_listen("0.0.0.0:1081").unwrap(),
            "0.0.0.0:1081".parse().unwrap()
        );
        assert!(parse_listen("localhost").is_err());
    }
}

//! Reaching a relay or a management server: the URL forms a relay address
//! comes in, and a TCP connection with TLS when the scheme asks for it.

use std::sync::{Arc, OnceLock};

use http::Uri;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;

/// The path the relay's WebSocket is served on (NetBird's too).
pub const RELAY_PATH: &str = "/relay";

/// Why an address could not be reached.
#[derive(Debug, Error)]
pub enum DialError {
    #[error("invalid URL {url:?}: {why}")]
    Url { url: String, why: &'static str },
    #[error("cannot connect to {authority}: {source}")]
    Connect {
        authority: String,
        source: std::io::Error,
    },
    #[error("TLS with {authority}: {}", tls_reason(source))]
    Tls {
        authority: String,
        source: std::io::Error,
    },
}

/// Where to open a connection, from a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Whether the connection uses TLS.
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// Path and query, at least `/`.
    pub path: String,
}

/// How a connection is opened, beyond where to.
#[derive(Debug, Clone, Default)]
pub struct DialOptions {
    /// The fwmark (`SO_MARK`, Linux, best effort) of the TCP socket: a VPN
    /// client marks its own control connections so its policy routing
    /// keeps them out of its tunnel. Unmarked when `None`.
    pub mark: Option<u32>,
    /// The TLS client configuration, i.e. the roots a server's certificate
    /// is checked against (an operator's private CA beside the Mozilla
    /// roots); the Mozilla roots alone when `None`. It should offer ALPN
    /// `http/1.1`: the WebSocket and the key document are HTTP/1.1.
    pub tls: Option<Arc<ClientConfig>>,
}

impl Target {
    /// `host:port` (IPv6 hosts in brackets, as the URL had them).
    pub fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The WebSocket URL of this target (`ws://` or `wss://`).
    pub fn websocket_url(&self) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme}://{}{}", self.authority(), self.path)
    }

    /// The target of a relay address: `rel://host:port` (WebSocket at
    /// `/relay`, as NetBird's relay addresses read), `rels://` (the same
    /// over TLS), and `http(s)://` or `ws(s)://` URLs (`/relay` when they
    /// have no path).
    pub fn relay(url: &str) -> Result<Target, DialError> {
        let mut target = Target::parse(url, &["rel", "ws", "http"], &["rels", "wss", "https"])?;
        let scheme = url.split_once("://").map_or("", |(s, _)| s);
        if target.path == "/"
            || scheme.eq_ignore_ascii_case("rel")
            || scheme.eq_ignore_ascii_case("rels")
        {
            target.path = RELAY_PATH.to_string();
        }
        Ok(target)
    }

    /// The target of an `http://` or `https://` URL.
    pub fn http(url: &str) -> Result<Target, DialError> {
        Target::parse(url, &["http"], &["https"])
    }

    fn parse(url: &str, plain: &[&str], secure: &[&str]) -> Result<Target, DialError> {
        let bad = |why| DialError::Url {
            url: url.to_string(),
            why,
        };
        let uri: Uri = url.trim().parse().map_err(|_| bad("not a URL"))?;
        let scheme = uri.scheme_str().ok_or(bad("no scheme"))?;
        let known = |list: &[&str]| list.iter().any(|s| s.eq_ignore_ascii_case(scheme));
        let tls = if known(secure) {
            true
        } else if known(plain) {
            false
        } else {
            return Err(bad("unsupported scheme"));
        };
        let authority = uri.authority().ok_or(bad("no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad("credentials are not allowed in the URL"));
        }
        let host = authority.host();
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
        Ok(Target {
            tls,
            host: host.to_string(),
            port,
            path: if path.is_empty() { "/".into() } else { path },
        })
    }
}

/// A failed handshake in words: what a user can act on when it is that.
fn tls_reason(error: &std::io::Error) -> String {
    meshplane_tls::handshake_failure(error).map_or_else(|| error.to_string(), |f| f.to_string())
}

/// A byte stream, plain or TLS.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// Opens a connection to `target` as `options` say.
pub async fn connect(target: &Target, options: &DialOptions) -> Result<Box<dyn Io>, DialError> {
    let authority = target.authority();
    let host = target.host.trim_start_matches('[').trim_end_matches(']');
    let tcp = tcp_connect(host, target.port, options.mark)
        .await
        .map_err(|source| DialError::Connect {
            authority: authority.clone(),
            source,
        })?;
    let _ = tcp.set_nodelay(true);
    if !target.tls {
        return Ok(Box::new(tcp));
    }
    let name = ServerName::try_from(host.to_string()).map_err(|_| DialError::Url {
        url: authority.clone(),
        why: "not a valid TLS server name",
    })?;
    let config = options.tls.clone().unwrap_or_else(tls_config);
    let tls = TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|source| DialError::Tls { authority, source })?;
    Ok(Box::new(tls))
}

/// A TCP connection to the first of `host`'s addresses that answers, from
/// a socket marked with `mark` when given.
async fn tcp_connect(host: &str, port: u16, mark: Option<u32>) -> std::io::Result<TcpStream> {
    let Some(mark) = mark else {
        return TcpStream::connect((host, port)).await;
    };
    let mut last = None;
    for addr in tokio::net::lookup_host((host, port)).await? {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        // Best effort: without CAP_NET_ADMIN the connection goes unmarked
        // (and such a process has no policy routing to escape anyway).
        if let Err(e) = set_mark(&socket, mark) {
            tracing::debug!("cannot mark the connection to {addr}: {e}");
        }
        match socket.connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{host} has no address"),
        )
    }))
}

#[cfg(target_os = "linux")]
fn set_mark(socket: &TcpSocket, mark: u32) -> std::io::Result<()> {
    socket2::SockRef::from(socket).set_mark(mark)
}

/// Marks exist on Linux only; elsewhere the socket stays unmarked.
#[cfg(not(target_os = "linux"))]
fn set_mark(_: &TcpSocket, _: u32) -> std::io::Result<()> {
    Ok(())
}

/// The client TLS settings without a private CA, made once.
fn tls_config() -> Arc<ClientConfig> {
    static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| meshplane_tls::Trust::system().client_config(&[HTTP1]))
        .clone()
}

/// The ALPN name of HTTP/1.1, which a relay's WebSocket speaks.
pub const HTTP1: &[u8] = b"http/1.1";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_address_forms() {
        let rel = Target::relay("rel://relay.example:8080").expect("valid");
        assert_eq!(rel.websocket_url(), "ws://relay.example:8080/relay");
        let rels = Target::relay("rels://relay.example").expect("valid");
        assert_eq!(rels.websocket_url(), "wss://relay.example:443/relay");
        let http = Target::relay("http://127.0.0.1:33073").expect("valid");
        assert_eq!(http.websocket_url(), "ws://127.0.0.1:33073/relay");
        let path = Target::relay("https://example.net/custom/relay").expect("valid");
        assert_eq!(path.websocket_url(), "wss://example.net:443/custom/relay");
        let v6 = Target::relay("rel://[::1]:9").expect("valid");
        assert_eq!(v6.websocket_url(), "ws://[::1]:9/relay");
        assert!(Target::relay("ftp://x").is_err());
        assert!(Target::relay("relay.example:80").is_err());
        assert!(Target::relay("rel://user:pw@host:1").is_err());
        assert!(Target::http("rel://host:1").is_err());
    }
}

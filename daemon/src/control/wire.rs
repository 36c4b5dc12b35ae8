//! The messages of the control socket: one JSON request per line from the
//! CLI, one JSON reply per line from the daemon.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use meshplane_core::expose::ExposeRequest;
use meshplane_core::Timestamp;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::engine::netstack::Echo;
use crate::engine::wg::PeerStatus;
use crate::routing::{ExitNodeReport, RoutesReport};

/// What the CLI asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Request {
    /// Connect; both fields fall back to the saved settings (the URL) and
    /// to a plain login as the registered peer (no setup key).
    Up {
        management_url: Option<String>,
        /// A PEM file of the private CA of an `https://` server (an
        /// absolute path: the daemon reads it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        management_ca: Option<PathBuf>,
        setup_key: Option<String>,
    },
    Down,
    Status,
    /// Publish a local port through the reverse proxy. The connection
    /// stays open for as long as the service is exposed: the daemon answers
    /// [`Reply::Exposed`], and later one final line ([`Reply::ExposeStopped`]
    /// or [`Reply::Error`] when a renewal failed).
    Expose(ExposeRequest),
    /// On an expose connection: stop the session.
    StopExpose,
    /// One ICMP echo request from the daemon's userspace stack (netstack
    /// mode), waiting up to `wait_ms` for the reply.
    Ping {
        ip: Ipv4Addr,
        seq: u16,
        wait_ms: u64,
    },
}

/// The daemon's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    Up(UpInfo),
    Down,
    Status(Box<StatusReport>),
    Exposed(ExposeInfo),
    /// The expose session ended; `clean` when the server confirmed the
    /// stop.
    ExposeStopped {
        clean: bool,
    },
    /// The echo reply, or `None` when none came in time.
    Ping(Option<Echo>),
    Error(String),
}

/// This peer after `up`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpInfo {
    pub peer_id: String,
    pub ip: Ipv4Addr,
    pub fqdn: String,
}

/// An expose session as the CLI shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExposeInfo {
    pub name: String,
    pub url: String,
    pub domain: String,
    pub protocol: String,
    pub port: u16,
    /// When the server drops the session unless it is renewed.
    pub expires_at: Timestamp,
}

/// Everything `status` shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    pub up: bool,
    pub public_key: String,
    pub management_url: Option<String>,
    pub management_connected: bool,
    /// Why the management stream is down, while it is.
    pub management_error: Option<String>,
    pub peer_id: Option<String>,
    pub ip: Option<Ipv4Addr>,
    pub fqdn: Option<String>,
    /// `netstack` or `kernel <interface>`, while up.
    pub mode: Option<String>,
    /// The WireGuard UDP socket, while up.
    pub listen: Option<SocketAddr>,
    /// The addresses this peer announces to its peers (ICE candidate
    /// text: host and server-reflexive).
    pub candidates: Vec<String>,
    /// The relay this peer uses, when the server named one.
    pub relay: Option<String>,
    pub relay_connected: bool,
    /// Whether the signal stream (candidates to and from peers) is open.
    #[serde(default)]
    pub signal_connected: bool,
    /// Packets the peer firewall dropped since the tunnel came up.
    #[serde(default)]
    pub firewall_dropped: u64,
    pub peers: Vec<PeerReport>,
    /// The peer's resolver, while it runs (kernel TUN mode, DNS
    /// management on).
    #[serde(default)]
    pub dns: Option<Box<crate::dns::DnsReport>>,
    /// The exit node all internet traffic goes through, while one is in
    /// use.
    #[serde(default)]
    pub exit_node: Option<Box<ExitNodeReport>>,
    /// The networks this peer uses (with their chosen routing peer) and
    /// those it routes for others.
    #[serde(default)]
    pub routes: RoutesReport,
}

/// One remote peer in `status`: the engine's view of it, named from the
/// map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerReport {
    pub id: Option<String>,
    pub fqdn: Option<String>,
    #[serde(flatten)]
    pub wireguard: PeerStatus,
}

/// Writes one message (a request or a reply) as a line.
pub async fn send<W, M>(write: &mut W, message: &M) -> io::Result<()>
where
    W: AsyncWrite + Unpin,
    M: Serialize,
{
    let mut text = serde_json::to_string(message).map_err(io::Error::other)?;
    text.push('\n');
    write.write_all(text.as_bytes()).await
}

//! The control socket between the CLI and the daemon: a Unix socket
//! (mode 0600, so only the daemon's user may drive it) carrying one JSON
//! request per line and one JSON reply per line.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;

use meshplane_core::expose::ExposeRequest;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::io::{AsyncBufReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UnixListener;

use crate::expose::{self, ExposeInfo};
use crate::routing::{ExitNodeReport, RoutesReport};
use crate::service::Daemon;
use crate::wg::PeerStatus;

/// What the CLI asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Request {
    /// Connect; both fields fall back to the saved settings (the URL) and
    /// to a plain login as the registered peer (no setup key).
    Up {
        management_url: Option<String>,
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
    Status(StatusReport),
    Exposed(ExposeInfo),
    /// The expose session ended; `clean` when the server confirmed the
    /// stop.
    ExposeStopped {
        clean: bool,
    },
    /// The echo reply, or `None` when none came in time.
    Ping(Option<crate::netstack::Echo>),
    Error(String),
}

/// This peer after `up`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpInfo {
    pub peer_id: String,
    pub ip: Ipv4Addr,
    pub fqdn: String,
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
    pub peers: Vec<PeerReport>,
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

/// Why the CLI got no answer.
#[derive(Debug, Error)]
pub enum ControlError {
    #[error("the meshplane daemon is not running (start it with 'meshplane daemon')")]
    NotRunning,
    #[error("control socket {path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("the daemon sent a malformed reply: {0}")]
    Malformed(String),
}

/// Sends one request to the daemon at `socket` and waits for the reply.
pub fn call(socket: &Path, request: &Request) -> Result<Reply, ControlError> {
    let io_error = |source: io::Error| ControlError::Io {
        path: socket.display().to_string(),
        source,
    };
    let mut stream = UnixStream::connect(socket).map_err(|e| connect_error(socket, e))?;
    let mut line =
        serde_json::to_string(request).map_err(|e| ControlError::Malformed(e.to_string()))?;
    line.push('\n');
    stream.write_all(line.as_bytes()).map_err(io_error)?;
    let mut answer = String::new();
    BufReader::new(stream)
        .read_line(&mut answer)
        .map_err(io_error)?;
    if answer.is_empty() {
        return Err(ControlError::Malformed(
            "the daemon closed the connection".into(),
        ));
    }
    serde_json::from_str(&answer).map_err(|e| ControlError::Malformed(e.to_string()))
}

/// Opens a connection to the daemon at `socket` (for requests that keep it
/// open, such as `expose`).
pub async fn connect(socket: &Path) -> Result<tokio::net::UnixStream, ControlError> {
    tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|e| connect_error(socket, e))
}

/// A failed connect: no socket file, or nobody listening on it, means no
/// daemon.
fn connect_error(socket: &Path, e: io::Error) -> ControlError {
    match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => ControlError::NotRunning,
        _ => ControlError::Io {
            path: socket.display().to_string(),
            source: e,
        },
    }
}

/// Binds the control socket at `path`, refusing when another daemon
/// answers there and replacing a stale socket file left by a crash.
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    if UnixStream::connect(path).is_ok() {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!(
                "a meshplane daemon is already running on {}",
                path.display()
            ),
        ));
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Answers CLI connections for as long as the daemon runs.
pub async fn serve(listener: UnixListener, daemon: Arc<Daemon>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let daemon = Arc::clone(&daemon);
                tokio::spawn(async move {
                    if let Err(e) = answer(stream, &daemon).await {
                        tracing::debug!("control connection: {e}");
                    }
                });
            }
            Err(e) => tracing::warn!("control socket: {e}"),
        }
    }
}

/// Reads requests line by line and writes a reply to each; an `expose`
/// request takes over the rest of the connection.
async fn answer(stream: tokio::net::UnixStream, daemon: &Daemon) -> io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = tokio::io::BufReader::new(read).lines();
    while let Some(line) = lines.next_line().await? {
        let reply = match serde_json::from_str::<Request>(&line) {
            Ok(Request::Expose(request)) => {
                return expose::serve(daemon, &request, &mut lines, &mut write).await;
            }
            Ok(request) => daemon.handle(request).await,
            Err(e) => Reply::Error(format!("malformed request: {e}")),
        };
        send(&mut write, &reply).await?;
    }
    Ok(())
}

/// Writes one message (a request or a reply) as a line.
pub(crate) async fn send<W, M>(write: &mut W, message: &M) -> io::Result<()>
where
    W: AsyncWrite + Unpin,
    M: Serialize,
{
    let mut text = serde_json::to_string(message).map_err(io::Error::other)?;
    text.push('\n');
    write.write_all(text.as_bytes()).await
}

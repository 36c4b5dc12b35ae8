//! The daemon's side of the control socket: a Unix socket (mode 0600, so
//! only the daemon's user may drive it), each connection answered by a
//! [`Handler`] — the daemon — so this module knows the messages and not
//! what the daemon does with them.

use std::future::Future;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use meshplane_core::expose::ExposeRequest;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{UnixListener, UnixStream};

use crate::control::wire::{send, Reply, Request};

/// The lines still to come on a control connection.
pub type RequestLines = Lines<BufReader<OwnedReadHalf>>;

/// What answers control requests.
pub trait Handler: Send + Sync + 'static {
    /// Answers one request.
    fn handle(&self, request: Request) -> impl Future<Output = Reply> + Send;

    /// Serves an expose request, which takes over the rest of the
    /// connection: later lines (a stop) come from `lines`, replies go to
    /// `write`.
    fn expose(
        &self,
        request: &ExposeRequest,
        lines: &mut RequestLines,
        write: &mut OwnedWriteHalf,
    ) -> impl Future<Output = io::Result<()>> + Send;
}

/// Binds the control socket at `path`, refusing when another daemon
/// answers there and replacing a stale socket file left by a crash.
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
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
pub async fn serve<H: Handler>(listener: UnixListener, daemon: Arc<H>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let daemon = Arc::clone(&daemon);
                tokio::spawn(async move {
                    if let Err(e) = answer(stream, daemon.as_ref()).await {
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
async fn answer<H: Handler>(stream: UnixStream, daemon: &H) -> io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = tokio::io::BufReader::new(read).lines();
    while let Some(line) = lines.next_line().await? {
        let reply = match serde_json::from_str::<Request>(&line) {
            Ok(Request::Expose(request)) => {
                return daemon.expose(&request, &mut lines, &mut write).await;
            }
            Ok(request) => daemon.handle(request).await,
            Err(e) => Reply::Error(format!("malformed request: {e}")),
        };
        send(&mut write, &reply).await?;
    }
    Ok(())
}

//! The CLI's side of the control socket.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use thiserror::Error;

use crate::control::wire::{Reply, Request};

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

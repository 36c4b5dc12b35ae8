//! A daemon's connection to a relay: authenticate with a token from
//! management, then send payloads to peers by id and receive theirs.
//!
//! ```no_run
//! # async fn example(token: meshplane_relay::Token) -> Result<(), meshplane_relay::RelayError> {
//! use meshplane_relay::{PeerId, RelayClient};
//! let (sender, mut receiver) =
//!     RelayClient::connect("rel://mgmt.example:33073", "<own public key>", &token).await?;
//! sender.send(&PeerId::from_public_key("<their public key>"), b"wireguard packet").await?;
//! while let Some((from, packet)) = receiver.recv().await {
//!     // `from` sent `packet`, as the relay vouches.
//! }
//! # Ok(()) }
//! ```
//!
//! Two tasks carry the connection: one writes what the sender queues, one
//! reads, answers the relay's health checks and hands payloads to the
//! receiver. The connection ends when the relay closes it, when it has
//! been silent for [`SILENCE_LIMIT`] (it sends a health check every 25 s),
//! or when the sender (every clone) is dropped: a close frame goes out
//! first. Then `recv` returns `None` and `send` fails with
//! [`RelayError::Closed`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::batch::write_frames;
use crate::dial::{self, DialError, DialOptions, Io, Target};
use crate::protocol::{self, PeerId, ProtocolError, ServerFrame, MAX_MESSAGE_SIZE};
use crate::token::{Token, TokenError};

/// How long opening the connection (TCP, TLS, WebSocket) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the relay has to answer the auth frame (NetBird's clients
/// wait 8 s).
const AUTH_TIMEOUT: Duration = Duration::from_secs(8);
/// The connection is given up after this long without any frame from the
/// relay: its 25 s health-check interval and 10 s of grace, as NetBird's
/// clients count.
pub const SILENCE_LIMIT: Duration = Duration::from_secs(35);
/// Frames queued for sending before `send` waits.
const SEND_QUEUE: usize = 256;
/// Payloads received and not yet taken by `recv` before reading pauses.
const RECEIVE_QUEUE: usize = 256;

/// Why a relay connection failed.
#[derive(Debug, Error)]
pub enum RelayError {
    #[error(transparent)]
    Dial(#[from] DialError),
    #[error("relay WebSocket: {0}")]
    WebSocket(String),
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("the relay refused the connection: {0}")]
    Refused(String),
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    #[error("the relay did not answer in time")]
    Timeout,
    #[error("the relay connection is closed")]
    Closed,
}

impl From<tokio_tungstenite::tungstenite::Error> for RelayError {
    fn from(e: tokio_tungstenite::tungstenite::Error) -> RelayError {
        RelayError::WebSocket(e.to_string())
    }
}

/// Opens relay connections.
#[derive(Debug)]
pub struct RelayClient;

/// The sending half: queues payloads for peers.
#[derive(Debug, Clone)]
pub struct RelaySender {
    out: mpsc::Sender<Bytes>,
    /// Set by the reader when the connection ends, before `recv` sees the
    /// end: from then on `send` fails at once.
    ended: Arc<AtomicBool>,
    instance_url: String,
}

/// The receiving half: payloads from peers with the sender's id.
#[derive(Debug)]
pub struct RelayReceiver {
    inbound: mpsc::Receiver<(PeerId, Vec<u8>)>,
}

type Socket = WebSocketStream<Box<dyn Io>>;

/// The WebSocket limits both sides use: no message above the relay's
/// maximum, small buffers (a relay holds thousands of these). Writes
/// gather up to 32 KiB before they reach the socket; the writers flush
/// after each batch (see `batch.rs`).
pub(crate) fn websocket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE_SIZE))
        .max_frame_size(Some(MAX_MESSAGE_SIZE))
        .read_buffer_size(16 * 1024)
        .write_buffer_size(32 * 1024)
        .max_write_buffer_size(256 * 1024)
}

impl RelayClient {
    /// Connects to the relay at `url` (`rel://`, `rels://`, `http(s)://`,
    /// `ws(s)://`) as the peer with WireGuard public key `own_public_key`
    /// (base64), authenticating with `token`.
    pub async fn connect(
        url: &str,
        own_public_key: &str,
        token: &Token,
    ) -> Result<(RelaySender, RelayReceiver), RelayError> {
        Self::connect_with(url, own_public_key, token, &DialOptions::default()).await
    }

    /// [`RelayClient::connect`] as `options` say: from a TCP socket
    /// carrying a fwmark (Linux `SO_MARK`, needs CAP_NET_ADMIN), so that a
    /// client's policy routing can keep the relay connection out of its own
    /// tunnel, and checking a `rels://` relay against a private CA.
    pub async fn connect_with(
        url: &str,
        own_public_key: &str,
        token: &Token,
        options: &DialOptions,
    ) -> Result<(RelaySender, RelayReceiver), RelayError> {
        let target = Target::relay(url)?;
        let me = PeerId::from_public_key(own_public_key);
        let auth = protocol::auth(&me, &token.to_wire()?)?;
        let mut socket = tokio::time::timeout(CONNECT_TIMEOUT, open(&target, options))
            .await
            .map_err(|_| RelayError::Timeout)??;
        socket.send(Message::Binary(auth.into())).await?;
        let instance_url = tokio::time::timeout(AUTH_TIMEOUT, auth_response(&mut socket))
            .await
            .map_err(|_| RelayError::Timeout)??;
        let (out, queued) = mpsc::channel(SEND_QUEUE);
        let (deliver, inbound) = mpsc::channel(RECEIVE_QUEUE);
        let (sink, stream) = socket.split();
        let (stop_writer, writer_stopped) = oneshot::channel();
        let ended = Arc::new(AtomicBool::new(false));
        tokio::spawn(write(sink, queued, writer_stopped));
        tokio::spawn(read(
            stream,
            deliver,
            out.downgrade(),
            stop_writer,
            ended.clone(),
        ));
        let sender = RelaySender {
            out,
            ended,
            instance_url,
        };
        Ok((sender, RelayReceiver { inbound }))
    }
}

/// The WebSocket to `target`.
async fn open(target: &Target, options: &DialOptions) -> Result<Socket, RelayError> {
    let io = dial::connect(target, options).await?;
    let (socket, _) = tokio_tungstenite::client_async_with_config(
        target.websocket_url(),
        io,
        Some(websocket_config()),
    )
    .await?;
    Ok(socket)
}

/// Waits for the relay's answer to the auth frame: its instance URL, or
/// the reason it closed the connection.
async fn auth_response(socket: &mut Socket) -> Result<String, RelayError> {
    loop {
        let message = socket
            .next()
            .await
            .ok_or_else(|| RelayError::Refused("connection closed".into()))??;
        match message {
            Message::Binary(frame) => {
                return match ServerFrame::parse(&frame)? {
                    ServerFrame::AuthResponse { instance_url } => Ok(instance_url.to_string()),
                    ServerFrame::Close => Err(RelayError::Refused("closed by the relay".into())),
                    other => Err(RelayError::Refused(format!(
                        "unexpected frame before the auth response: {other:?}"
                    ))),
                }
            }
            Message::Close(frame) => {
                let why = frame
                    .map(|f| f.reason.to_string())
                    .filter(|r| !r.is_empty())
                    .unwrap_or_else(|| "connection closed".into());
                return Err(RelayError::Refused(why));
            }
            Message::Text(_) => {
                return Err(RelayError::Refused("unexpected text message".into()));
            }
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
        }
    }
}

/// Writes queued frames until the queue closes (the sender dropped: a
/// close frame goes out first) or the reader stops.
async fn write(
    mut sink: futures_util::stream::SplitSink<Socket, Message>,
    mut queued: mpsc::Receiver<Bytes>,
    mut reader_stopped: oneshot::Receiver<()>,
) {
    loop {
        tokio::select! {
            frame = queued.recv() => match frame {
                Some(frame) => {
                    if write_frames(&mut sink, frame, || queued.try_recv().ok()).await.is_err() {
                        break;
                    }
                }
                None => {
                    let _ = sink.send(Message::Binary(protocol::close().into())).await;
                    break;
                }
            },
            _ = &mut reader_stopped => break,
        }
    }
    let _ = sink.close().await;
}

/// Reads frames until the relay closes, goes silent or breaks the
/// protocol; answers health checks through the writer's queue.
async fn read(
    mut stream: futures_util::stream::SplitStream<Socket>,
    deliver: mpsc::Sender<(PeerId, Vec<u8>)>,
    out: mpsc::WeakSender<Bytes>,
    _stop_writer: oneshot::Sender<()>,
    ended: Arc<AtomicBool>,
) {
    read_frames(&mut stream, &deliver, &out).await;
    ended.store(true, Ordering::SeqCst);
}

/// The reading loop of [`read`].
async fn read_frames(
    stream: &mut futures_util::stream::SplitStream<Socket>,
    deliver: &mpsc::Sender<(PeerId, Vec<u8>)>,
    out: &mpsc::WeakSender<Bytes>,
) {
    loop {
        let message = match tokio::time::timeout(SILENCE_LIMIT, stream.next()).await {
            Err(_) => {
                tracing::info!("relay silent too long: closing the connection");
                break;
            }
            Ok(None) | Ok(Some(Err(_))) => break,
            Ok(Some(Ok(message))) => message,
        };
        let frame = match message {
            Message::Binary(frame) => frame,
            Message::Close(_) => break,
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
            Message::Text(_) => {
                tracing::warn!("relay sent a text message: closing the connection");
                break;
            }
        };
        match ServerFrame::parse(&frame) {
            Ok(ServerFrame::Transport { from, payload }) => {
                // The receiver may have been dropped while the sender
                // still works: its payloads are discarded.
                let _ = deliver.send((from, payload.to_vec())).await;
            }
            Ok(ServerFrame::HealthCheck) => {
                // Weak: the health answers must not keep a connection
                // whose sender is gone.
                let Some(out) = out.upgrade() else { break };
                if out.send(protocol::health_check().into()).await.is_err() {
                    break;
                }
            }
            Ok(ServerFrame::Close) => break,
            // This client subscribes to nothing; a relay may still tell.
            Ok(ServerFrame::PeersOnline(_) | ServerFrame::PeersWentOffline(_)) => {}
            Ok(ServerFrame::AuthResponse { .. }) => {}
            Err(e) => {
                tracing::warn!(error = %e, "bad frame from the relay: closing the connection");
                break;
            }
        }
    }
}

impl RelaySender {
    /// Queues `payload` for the peer `to`; waits while the queue is full.
    /// The relay drops it if `to` is not connected to it.
    pub async fn send(&self, to: &PeerId, payload: &[u8]) -> Result<(), RelayError> {
        if self.is_closed() {
            return Err(RelayError::Closed);
        }
        let frame = protocol::transport(to, payload)?;
        self.out
            .send(frame.into())
            .await
            .map_err(|_| RelayError::Closed)
    }

    /// Queues `payload` for `to` unless the queue is full (then the
    /// payload is dropped, as a congested UDP path would): for a data
    /// plane that must not wait.
    pub fn try_send(&self, to: &PeerId, payload: &[u8]) -> Result<bool, RelayError> {
        if self.is_closed() {
            return Err(RelayError::Closed);
        }
        let frame = protocol::transport(to, payload)?;
        match self.out.try_send(frame.into()) {
            Ok(()) => Ok(true),
            Err(mpsc::error::TrySendError::Full(_)) => Ok(false),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(RelayError::Closed),
        }
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.ended.load(Ordering::SeqCst) || self.out.is_closed()
    }

    /// The URL the relay gave as its own in the auth response.
    pub fn instance_url(&self) -> &str {
        &self.instance_url
    }
}

impl RelayReceiver {
    /// The next payload and its sender; `None` once the connection ended.
    pub async fn recv(&mut self) -> Option<(PeerId, Vec<u8>)> {
        self.inbound.recv().await
    }
}

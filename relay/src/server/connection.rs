//! One relay connection: the handshake, then a reader (this task) that
//! routes the client's frames and a writer task that drains its send
//! queue and asks for health checks.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt as _, StreamExt as _};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::admission::Admitted;
use super::queue::{self, Queued, SendQueue};
use super::registry::Forwarded;
use super::Relay;
use crate::batch::write_frames;
use crate::protocol::{self, ClientFrame, MsgType, PeerId};

type Socket = WebSocketStream<TokioIo<Upgraded>>;

/// Runs the connection until either side ends it; `_admitted` holds its
/// place under the connection caps until then.
pub(super) async fn run(
    mut socket: Socket,
    relay: Relay,
    connection: u64,
    instance_url: String,
    _admitted: Admitted,
) {
    let shared = &relay.shared;
    let handshake = tokio::time::timeout(
        shared.limits.handshake_timeout,
        authenticate(&mut socket, &relay),
    )
    .await
    .unwrap_or_else(|_| Err("no auth frame in time".to_string()));
    let peer = match handshake {
        Ok(peer) => peer,
        Err(why) => {
            tracing::debug!(why, "relay client refused");
            let close = CloseFrame {
                code: CloseCode::Policy,
                reason: why.into(),
            };
            let _ = socket.close(Some(close)).await;
            return;
        }
    };
    // Registered before the answer: a client told it is connected must
    // get what is sent to it from then on.
    let (queue, queued) = queue::send_queue(shared.limits.send_queue_bytes);
    let (stop, stopped) = watch::channel(false);
    shared
        .registry
        .insert(peer, connection, queue.clone(), stop);
    let response = protocol::auth_response(&instance_url)
        .or_else(|_| protocol::auth_response(""))
        .unwrap_or_default();
    if socket.send(Message::Binary(response.into())).await.is_err() {
        shared.registry.remove(&peer, connection);
        return;
    }
    tracing::debug!(%peer, "relay peer connected");
    let _session = Session::start();
    let answered = Arc::new(AtomicBool::new(true));
    let (sink, stream) = socket.split();
    let mut writer = tokio::spawn(write(
        sink,
        queued,
        stopped,
        answered.clone(),
        relay.clone(),
    ));
    tokio::select! {
        () = read(stream, &relay, &peer, connection, &queue, &answered) => writer.abort(),
        _ = &mut writer => {}
    }
    shared.registry.remove(&peer, connection);
    tracing::debug!(%peer, "relay peer disconnected");
}

/// An authenticated relay session, counted in the host's metrics (when it
/// installed a recorder) while it lives: `meshplane_relay_sessions_active`
/// and `meshplane_relay_sessions_total`.
struct Session;

impl Session {
    fn start() -> Session {
        metrics::counter!("meshplane_relay_sessions_total").increment(1);
        metrics::gauge!("meshplane_relay_sessions_active").increment(1.0);
        Session
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        metrics::gauge!("meshplane_relay_sessions_active").decrement(1.0);
    }
}

/// Reads the auth frame and checks its token; the peer id it proves.
async fn authenticate(socket: &mut Socket, relay: &Relay) -> Result<PeerId, String> {
    let frame = loop {
        match socket.next().await {
            Some(Ok(Message::Binary(frame))) => break frame,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            Some(Ok(_)) => return Err("the first message must be a binary auth frame".into()),
            Some(Err(e)) => return Err(e.to_string()),
            None => return Err("closed before authenticating".into()),
        }
    };
    match ClientFrame::parse(&frame).map_err(|e| e.to_string())? {
        ClientFrame::Auth { peer, token } => {
            relay
                .shared
                .verifier
                .verify(token, &peer, unix_now())
                .map_err(|e| e.to_string())?;
            Ok(peer)
        }
        other => Err(format!("expected an auth frame, got {other:?}")),
    }
}

/// Routes the client's frames until it closes, breaks the protocol or the
/// socket fails.
async fn read(
    mut stream: SplitStream<Socket>,
    relay: &Relay,
    peer: &PeerId,
    connection: u64,
    own_queue: &SendQueue,
    answered: &AtomicBool,
) {
    let registry = &relay.shared.registry;
    while let Some(Ok(message)) = stream.next().await {
        let frame = match message {
            Message::Binary(frame) => frame,
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
            Message::Close(_) => return,
            Message::Text(_) => {
                tracing::debug!(%peer, "text message on the relay: closing");
                return;
            }
        };
        let to = match ClientFrame::parse(&frame) {
            Ok(ClientFrame::Transport { to, .. }) => to,
            Ok(ClientFrame::HealthCheck) => {
                answered.store(true, Ordering::Relaxed);
                continue;
            }
            Ok(ClientFrame::Close) => return,
            Ok(ClientFrame::Subscribe(ids)) => {
                let online = registry.subscribe(peer, connection, &ids);
                if !online.is_empty() {
                    for frame in
                        protocol::peer_state(MsgType::PeersOnline, &online).unwrap_or_default()
                    {
                        own_queue.try_push(frame.into());
                    }
                }
                continue;
            }
            Ok(ClientFrame::Unsubscribe(ids)) => {
                registry.unsubscribe(peer, connection, &ids);
                continue;
            }
            Ok(ClientFrame::Auth { .. }) => {
                tracing::debug!(%peer, "second auth frame: closing");
                return;
            }
            Err(e) => {
                tracing::debug!(%peer, error = %e, "bad relay frame: closing");
                return;
            }
        };
        // Reuses the frame's buffer when nothing else holds it.
        let mut out = Vec::from(frame);
        if protocol::rewrite_transport(&mut out, peer).is_err() {
            return;
        }
        let len = out.len();
        match registry.forward(&to, out.into()) {
            Forwarded::Sent => {
                metrics::counter!("meshplane_relay_sent_bytes_total")
                    .increment(u64::try_from(len).unwrap_or(u64::MAX));
            }
            Forwarded::NoPeer => tracing::trace!(%peer, %to, "no such peer: dropped"),
            Forwarded::Congested => tracing::trace!(%peer, %to, "queue full: dropped"),
        }
    }
}

/// Sends queued frames and a health check every interval until the
/// connection is stopped (replaced, or the relay stops: a close frame
/// goes out), a health check stays unanswered, or the socket fails.
async fn write(
    mut sink: SplitSink<Socket, Message>,
    mut queued: Queued,
    mut stopped: watch::Receiver<bool>,
    answered: Arc<AtomicBool>,
    relay: Relay,
) {
    let limits = relay.shared.limits;
    let mut next_check = Instant::now() + limits.health_interval;
    let mut deadline: Option<Instant> = None;
    loop {
        let wake = deadline.map_or(next_check, |d| d.min(next_check));
        tokio::select! {
            frame = queued.recv() => {
                let Some(frame) = frame else { break };
                if write_frames(&mut sink, frame, || queued.try_recv()).await.is_err() {
                    return;
                }
            }
            () = tokio::time::sleep_until(wake) => {
                let now = Instant::now();
                if deadline.is_some_and(|d| now >= d) {
                    if !answered.load(Ordering::Relaxed) {
                        tracing::debug!("relay health check unanswered: closing");
                        break;
                    }
                    deadline = None;
                }
                if now >= next_check {
                    // One deadline at a time: checks sent while one runs
                    // do not push it back.
                    if deadline.is_none() {
                        answered.store(false, Ordering::Relaxed);
                        deadline = Some(now + limits.health_timeout);
                    }
                    if sink.send(Message::Binary(protocol::health_check().into())).await.is_err() {
                        return;
                    }
                    next_check = now + limits.health_interval;
                }
            }
            // The flag only ever becomes true (or its registry entry,
            // replaced, is gone): either way this connection is done.
            _ = stopped.changed() => {
                let _ = sink.send(Message::Binary(protocol::close().into())).await;
                break;
            }
        }
    }
    let _ = sink.close().await;
}

/// Seconds since the Unix epoch.
fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

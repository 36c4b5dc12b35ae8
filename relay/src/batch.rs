//! Writing queued frames in batches.
//!
//! One frame per write costs a system call per WireGuard packet at each
//! end of a relay connection. The writers instead take every frame queued
//! at the moment (up to [`BATCH`]) into the WebSocket's write buffer and
//! flush once, so a burst leaves in a few large writes while a lone
//! packet still leaves at once.

use bytes::Bytes;
use futures_util::{Sink, SinkExt as _};
use tokio_tungstenite::tungstenite::Message;

/// Frames written before one flush at most, so a busy queue cannot hold
/// back its flush for long.
const BATCH: usize = 64;

/// Writes `first` and the frames `next` gives now, then flushes.
pub(crate) async fn write_frames<S>(
    sink: &mut S,
    first: Bytes,
    mut next: impl FnMut() -> Option<Bytes>,
) -> Result<(), S::Error>
where
    S: Sink<Message> + Unpin,
{
    sink.feed(Message::Binary(first)).await?;
    for _ in 1..BATCH {
        let Some(frame) = next() else { break };
        sink.feed(Message::Binary(frame)).await?;
    }
    sink.flush().await
}

//! Bounds the long-lived streams (Sync, WatchServices) one peer key may
//! hold open.
//!
//! Each stream is exempt from the connection idle timeout, so without a
//! bound one key could open streams until memory runs out. When a key opens
//! one stream more than the limit, its **oldest** stream is closed rather
//! than the new one refused: the usual reason for a key to open another
//! stream is a daemon reconnecting while the server still holds its old
//! stream over a half-dead connection (until the HTTP/2 keep-alive notices),
//! and refusing would lock that daemon out until then. Only the holder of
//! the key can open its streams (every call is sealed), so no one can close
//! another peer's streams this way.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Notify;
use tonic::Status;

/// The open streams of one kind, by peer key.
#[derive(Debug, Clone)]
pub struct PeerStreams {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    limit: usize,
    open: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    next: u64,
    /// Oldest first: a stream's number and how to close it.
    by_key: HashMap<String, VecDeque<(u64, Arc<Notify>)>>,
}

/// One open stream's place; it is freed when dropped.
#[derive(Debug)]
pub struct StreamSlot {
    inner: Arc<Inner>,
    key: String,
    id: u64,
    closed: Arc<Notify>,
}

impl PeerStreams {
    /// At most `limit` (at least 1) streams per key.
    pub fn new(limit: u32) -> PeerStreams {
        PeerStreams {
            inner: Arc::new(Inner {
                limit: usize::try_from(limit).unwrap_or(usize::MAX).max(1),
                open: Mutex::default(),
            }),
        }
    }

    /// A place for a new stream of `key`, closing its oldest stream when
    /// the key is at the limit.
    pub fn open(&self, key: &str) -> StreamSlot {
        let mut open = self
            .inner
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        open.next += 1;
        let id = open.next;
        let closed = Arc::new(Notify::new());
        let streams = open.by_key.entry(key.to_string()).or_default();
        streams.push_back((id, closed.clone()));
        while streams.len() > self.inner.limit {
            if let Some((_, oldest)) = streams.pop_front() {
                oldest.notify_one();
            }
        }
        StreamSlot {
            inner: self.inner.clone(),
            key: key.to_string(),
            id,
            closed,
        }
    }
}

impl StreamSlot {
    /// Resolves once a newer stream of the key replaced this one.
    pub async fn replaced(&self) {
        self.closed.notified().await;
    }

    /// The status a replaced stream ends with.
    pub fn replaced_status(&self) -> Status {
        Status::resource_exhausted(format!(
            "more than {} streams for this peer: the oldest was closed",
            self.inner.limit
        ))
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self
            .inner
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(streams) = open.by_key.get_mut(&self.key) {
            streams.retain(|(id, _)| *id != self.id);
            if streams.is_empty() {
                open.by_key.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_oldest_stream_of_a_key_gives_way() {
        let streams = PeerStreams::new(2);
        let first = streams.open("a");
        let second = streams.open("a");
        let other = streams.open("b");
        let third = streams.open("a");
        first.replaced().await;
        for kept in [&second, &third, &other] {
            let waited = tokio::time::timeout(std::time::Duration::ZERO, kept.replaced()).await;
            assert!(waited.is_err(), "a stream within the limit was closed");
        }
        drop(second);
        let fourth = streams.open("a");
        let waited = tokio::time::timeout(std::time::Duration::ZERO, third.replaced()).await;
        assert!(waited.is_err(), "a freed place was not reused");
        drop(fourth);
    }
}

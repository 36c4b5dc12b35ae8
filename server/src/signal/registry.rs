//! The open signal streams by peer key, and delivery into them.
//!
//! Each stream has a bounded queue: a message for a stream whose queue is
//! full is dropped (signal messages are retried by their senders; an
//! unbounded queue would let one sender fill the server's memory with a
//! reader that never reads). A key holds at most `limit` streams; one more
//! closes its oldest, as NetBird's service lets a reconnecting client
//! replace its half-dead stream. A message for a key goes to every stream
//! of that key.
//!
//! Proven streams (their caller proved it holds the key) outrank unproven
//! ones: while a key has a proven stream, an unproven one is refused and
//! messages go to the proven ones only; a proven stream over the limit
//! closes the oldest unproven stream first.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use meshplane_proto::signal::EncryptedMessage;
use tokio::sync::{mpsc, oneshot};
use tonic::codegen::tokio_stream::Stream;
use tonic::Status;

/// The open streams.
#[derive(Debug, Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    limit: usize,
    queue: usize,
    open: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    next: u64,
    /// No new streams once the server stops.
    closed: bool,
    /// Oldest first.
    by_key: HashMap<String, Vec<Entry>>,
}

#[derive(Debug)]
struct Entry {
    id: u64,
    proven: bool,
    out: mpsc::Sender<EncryptedMessage>,
    /// Ends the stream with a status (replaced, or the server stops).
    end: oneshot::Sender<Status>,
}

/// What became of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// Streams it was queued in.
    pub queued: usize,
    /// Streams whose queue was full.
    pub dropped: usize,
}

impl Registry {
    /// At most `limit` streams per key (at least 1), `queue` messages
    /// waiting per stream (at least 1).
    pub fn new(limit: u32, queue: usize) -> Registry {
        Registry {
            inner: Arc::new(Inner {
                limit: usize::try_from(limit).unwrap_or(usize::MAX).max(1),
                queue: queue.max(1),
                open: Mutex::default(),
            }),
        }
    }

    fn open(&self) -> MutexGuard<'_, Open> {
        self.inner
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A new stream for `key`, closing the key's oldest (unproven first)
    /// when it is at the limit; UNAVAILABLE once the server stops,
    /// PERMISSION_DENIED for an unproven stream of a key with proven ones.
    pub fn register(&self, key: &str, proven: bool) -> Result<Outbox, Status> {
        let mut open = self.open();
        if open.closed {
            return Err(shutting_down());
        }
        let outranked = open
            .by_key
            .get(key)
            .is_some_and(|streams| streams.iter().any(|e| e.proven));
        if !proven && outranked {
            return Err(Status::permission_denied(
                "this peer's signal streams prove its key: one without the proof is refused",
            ));
        }
        open.next += 1;
        let id = open.next;
        let (out, messages) = mpsc::channel(self.inner.queue);
        let (end, ended) = oneshot::channel();
        let limit = self.inner.limit;
        let streams = open.by_key.entry(key.to_string()).or_default();
        streams.push(Entry {
            id,
            out,
            end,
            proven,
        });
        while streams.len() > limit {
            let at = streams.iter().position(|e| !e.proven).unwrap_or(0);
            let oldest = streams.remove(at);
            let _ = oldest.end.send(Status::resource_exhausted(format!(
                "more than {limit} signal streams for this peer: the oldest was closed"
            )));
        }
        Ok(Outbox {
            messages,
            ended,
            done: false,
            place: Place {
                registry: self.clone(),
                key: key.to_string(),
                id,
            },
        })
    }

    /// Queues `message` in every stream of its `remote_key` (its proven
    /// streams only, when it has any).
    pub fn deliver(&self, message: &EncryptedMessage) -> Delivery {
        let open = self.open();
        let mut delivery = Delivery {
            queued: 0,
            dropped: 0,
        };
        let streams = open.by_key.get(&message.remote_key);
        let proven = streams.is_some_and(|s| s.iter().any(|e| e.proven));
        for entry in streams.into_iter().flatten() {
            if proven && !entry.proven {
                continue;
            }
            match entry.out.try_send(message.clone()) {
                Ok(()) => delivery.queued += 1,
                // A closed queue belongs to a stream being dropped.
                Err(mpsc::error::TrySendError::Full(_) | mpsc::error::TrySendError::Closed(_)) => {
                    delivery.dropped += 1
                }
            }
        }
        delivery
    }

    /// Ends every stream (UNAVAILABLE, so clients reconnect to another
    /// server or later) and refuses new ones.
    pub fn close(&self) {
        let mut open = self.open();
        open.closed = true;
        for (_, streams) in open.by_key.drain() {
            for entry in streams {
                let _ = entry.end.send(shutting_down());
            }
        }
    }

    /// How many streams are open.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.open().by_key.values().map(Vec::len).sum()
    }
}

fn shutting_down() -> Status {
    Status::unavailable("the server is shutting down")
}

/// A registered stream's place; freed when dropped.
#[derive(Debug)]
struct Place {
    registry: Registry,
    key: String,
    id: u64,
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut open = self.registry.open();
        if let Some(streams) = open.by_key.get_mut(&self.key) {
            streams.retain(|e| e.id != self.id);
            if streams.is_empty() {
                open.by_key.remove(&self.key);
            }
        }
    }
}

/// The messages for one stream, as the response of `ConnectStream`: ends
/// with a status when replaced or when the server stops, and leaves the
/// registry when tonic drops it (the client went away).
#[derive(Debug)]
pub struct Outbox {
    messages: mpsc::Receiver<EncryptedMessage>,
    ended: oneshot::Receiver<Status>,
    done: bool,
    place: Place,
}

impl Outbox {
    /// A handle that resolves when this stream is gone, for the task that
    /// reads what the client writes into the same call.
    pub fn gone(&self) -> Gone {
        let open = self.place.registry.open();
        let out = open
            .by_key
            .get(&self.place.key)
            .and_then(|s| s.iter().find(|e| e.id == self.place.id))
            .map(|e| e.out.clone());
        Gone(out)
    }
}

/// See [`Outbox::gone`].
#[derive(Debug)]
pub struct Gone(Option<mpsc::Sender<EncryptedMessage>>);

impl Gone {
    /// Resolves once the stream's outbox is dropped.
    pub async fn wait(&self) {
        if let Some(out) = &self.0 {
            out.closed().await;
        }
    }
}

impl Stream for Outbox {
    type Item = Result<EncryptedMessage, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        if let Poll::Ready(ended) = Pin::new(&mut self.ended).poll(cx) {
            self.done = true;
            return Poll::Ready(ended.ok().map(Err));
        }
        self.messages.poll_recv(cx).map(|m| m.map(Ok))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;

    fn message(to: &str, body: u8) -> EncryptedMessage {
        EncryptedMessage {
            key: "from".into(),
            remote_key: to.into(),
            body: vec![body],
        }
    }

    async fn next(outbox: &mut Outbox) -> Option<Result<EncryptedMessage, Status>> {
        poll_fn(|cx| Pin::new(&mut *outbox).poll_next(cx)).await
    }

    #[tokio::test]
    async fn delivers_to_every_stream_of_the_key_and_bounds_queues() {
        let registry = Registry::new(2, 2);
        let mut a1 = registry.register("a", false).unwrap();
        let mut a2 = registry.register("a", false).unwrap();
        let _b = registry.register("b", false).unwrap();
        let sent = registry.deliver(&message("a", 1));
        assert_eq!(
            sent,
            Delivery {
                queued: 2,
                dropped: 0
            }
        );
        assert_eq!(next(&mut a1).await.unwrap().unwrap().body, [1]);
        assert_eq!(next(&mut a2).await.unwrap().unwrap().body, [1]);
        // Nobody reads: the third message finds full queues.
        registry.deliver(&message("a", 2));
        registry.deliver(&message("a", 3));
        let full = registry.deliver(&message("a", 4));
        assert_eq!(
            full,
            Delivery {
                queued: 0,
                dropped: 2
            }
        );
        let none = registry.deliver(&message("c", 5));
        assert_eq!(
            none,
            Delivery {
                queued: 0,
                dropped: 0
            }
        );
    }

    #[tokio::test]
    async fn the_oldest_stream_gives_way_and_dropping_leaves() {
        let registry = Registry::new(2, 4);
        let mut first = registry.register("a", false).unwrap();
        let second = registry.register("a", false).unwrap();
        let third = registry.register("a", false).unwrap();
        let status = next(&mut first).await.unwrap().unwrap_err();
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert!(next(&mut first).await.is_none());
        drop(first);
        assert_eq!(registry.len(), 2);
        drop((second, third));
        assert_eq!(registry.len(), 0);
    }

    #[tokio::test]
    async fn proven_streams_outrank_unproven_ones() {
        let registry = Registry::new(2, 4);
        let mut squatter = registry.register("a", false).unwrap();
        let mut own = registry.register("a", true).unwrap();
        // While a proven stream is open, messages go to it alone and an
        // unproven stream is refused.
        registry.deliver(&message("a", 1));
        assert_eq!(next(&mut own).await.unwrap().unwrap().body, [1]);
        assert_eq!(
            registry.register("a", false).unwrap_err().code(),
            tonic::Code::PermissionDenied
        );
        // A second proven stream closes the unproven one, not the first.
        let _second = registry.register("a", true).unwrap();
        let status = next(&mut squatter).await.unwrap().unwrap_err();
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        registry.deliver(&message("a", 2));
        assert_eq!(next(&mut own).await.unwrap().unwrap().body, [2]);
    }

    #[tokio::test]
    async fn closing_ends_streams_and_refuses_new_ones() {
        let registry = Registry::new(4, 4);
        let mut open = registry.register("a", false).unwrap();
        let gone = open.gone();
        registry.close();
        let status = next(&mut open).await.unwrap().unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert_eq!(
            registry.register("a", false).unwrap_err().code(),
            tonic::Code::Unavailable
        );
        drop(open);
        gone.wait().await;
    }
}

//! A connection's send queue, bounded by the bytes it holds.
//!
//! Frames on a relay differ in size by two orders of magnitude: a
//! WireGuard keep-alive is a few dozen bytes, a full packet about 1.5 KB,
//! the largest frame [`MAX_MESSAGE_SIZE`](crate::protocol::MAX_MESSAGE_SIZE).
//! A bound counted in frames must be small enough for the largest, and is
//! then too small for a burst of ordinary packets: a TCP sender on a
//! userspace peer puts its whole window on the wire at once (hundreds of
//! packets), a queue of 64 frames dropped most of each burst, and the
//! senders' TCP spent seconds recovering from every one. Counted in bytes,
//! the same memory per connection holds the whole burst.
//!
//! Each frame is charged its length plus [`FRAME_OVERHEAD`], so a queue of
//! empty frames is bounded too.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;

/// What a queued frame costs beyond its bytes (the queue's slot and the
/// buffer's header), charged so that tiny frames cannot queue unbounded.
const FRAME_OVERHEAD: usize = 64;

/// A queue holding at most `limit` bytes of frames (as charged); the
/// sending half is cheap to clone.
pub(crate) fn send_queue(limit: usize) -> (SendQueue, Queued) {
    let (frames, queued) = mpsc::unbounded_channel();
    let held = Arc::new(AtomicUsize::new(0));
    (
        SendQueue {
            frames,
            held: held.clone(),
            limit,
        },
        Queued {
            frames: queued,
            held,
        },
    )
}

fn charge(frame: &Bytes) -> usize {
    frame.len().saturating_add(FRAME_OVERHEAD)
}

/// The sending half of a [`send_queue`].
#[derive(Debug, Clone)]
pub(crate) struct SendQueue {
    frames: mpsc::UnboundedSender<Bytes>,
    held: Arc<AtomicUsize>,
    limit: usize,
}

impl SendQueue {
    /// Queues `frame` unless that would take the queue past its limit or
    /// the connection is gone; whether it was queued. Never waits.
    pub(crate) fn try_push(&self, frame: Bytes) -> bool {
        let cost = charge(&frame);
        // Reserve first, so that concurrent senders cannot together pass
        // the limit.
        let reserved = self
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(cost).filter(|&after| after <= self.limit)
            });
        if reserved.is_err() {
            return false;
        }
        if self.frames.send(frame).is_err() {
            self.held.fetch_sub(cost, Ordering::AcqRel);
            return false;
        }
        true
    }
}

/// The receiving half of a [`send_queue`].
#[derive(Debug)]
pub(crate) struct Queued {
    frames: mpsc::UnboundedReceiver<Bytes>,
    held: Arc<AtomicUsize>,
}

impl Queued {
    /// The next frame, waiting for one; `None` once every sender is gone.
    pub(crate) async fn recv(&mut self) -> Option<Bytes> {
        let frame = self.frames.recv().await?;
        Some(self.release(frame))
    }

    /// The next frame if one is queued now.
    pub(crate) fn try_recv(&mut self) -> Option<Bytes> {
        let frame = self.frames.try_recv().ok()?;
        Some(self.release(frame))
    }

    fn release(&self, frame: Bytes) -> Bytes {
        self.held.fetch_sub(charge(&frame), Ordering::AcqRel);
        frame
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(len: usize) -> Bytes {
        Bytes::from(vec![7; len])
    }

    #[tokio::test]
    async fn frames_are_dropped_past_the_byte_limit_and_room_returns_as_they_leave() {
        // Room for two 1,000-byte frames with their overhead, not three.
        let (queue, mut queued) = send_queue(2 * (1000 + FRAME_OVERHEAD) + 10);
        assert!(queue.try_push(frame(1000)));
        assert!(queue.clone().try_push(frame(1000)));
        assert!(!queue.try_push(frame(1000)), "past the limit");
        assert!(!queue.try_push(frame(0)), "an empty frame is charged too");
        assert_eq!(queued.recv().await.map(|f| f.len()), Some(1000));
        assert!(queue.try_push(frame(1000)), "room returned");
        assert_eq!(queued.try_recv().map(|f| f.len()), Some(1000));
        assert_eq!(queued.try_recv().map(|f| f.len()), Some(1000));
        assert_eq!(queued.try_recv(), None);
        drop(queue);
        assert_eq!(queued.recv().await, None);
    }

    #[test]
    fn many_small_frames_are_bounded_by_their_overhead() {
        let (queue, _queued) = send_queue(100 * FRAME_OVERHEAD);
        let queued = (0..1000).filter(|_| queue.try_push(Bytes::new())).count();
        assert_eq!(queued, 100);
    }

    #[test]
    fn the_limit_holds_under_concurrent_senders() {
        let limit = 64 * 1024;
        let (queue, mut queued) = send_queue(limit);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let queue = queue.clone();
                std::thread::spawn(move || {
                    (0..1000).filter(|_| queue.try_push(frame(1400))).count()
                })
            })
            .collect();
        let pushed: usize = threads.into_iter().map(|t| t.join().unwrap_or(0)).sum();
        assert_eq!(pushed, limit / (1400 + FRAME_OVERHEAD));
        let mut drained = 0;
        while queued.try_recv().is_some() {
            drained += 1;
        }
        assert_eq!(drained, pushed);
        assert!(queue.try_push(frame(1400)), "drained: room again");
    }

    #[test]
    fn a_closed_queue_takes_nothing_and_keeps_no_charge() {
        let (queue, queued) = send_queue(10 * 1024);
        drop(queued);
        assert!(!queue.try_push(frame(100)));
        assert_eq!(queue.held.load(Ordering::Acquire), 0);
    }
}

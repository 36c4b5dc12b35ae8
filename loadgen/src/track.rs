//! What the peers' streams delivered: bytes and messages, and for the
//! change under way, when each peer first held a map reflecting it.
//!
//! A change is identified by content, not by serial: a policy change opens
//! a TCP port no earlier change used, a join adds a key no map listed
//! before. The goal is set before the change is made, so a map that
//! satisfies it can only come from that change.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use meshplane_core::netmap::PeerMap;
use tokio::sync::Notify;

/// What a map must show for its peer to have converged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Goal {
    /// Any map at all (a new stream's first).
    AnyMap,
    /// A firewall rule for this TCP port.
    Port(u16),
    /// The peer with this key listed; the peer at `index` (the one that
    /// joined) only needs its first map.
    Listed { key: String, index: usize },
}

impl Goal {
    fn holds(&self, index: usize, map: &PeerMap) -> bool {
        match self {
            Goal::AnyMap => true,
            Goal::Port(port) => map.firewall_rules.iter().any(|r| r.port == Some(*port)),
            Goal::Listed { key, index: joined } => {
                index == *joined || map.peers.iter().any(|p| &p.key == key)
            }
        }
    }
}

/// One goal and who reached it when.
#[derive(Debug)]
struct Round {
    goal: Goal,
    /// Peers `0..targets` must reach the goal.
    targets: usize,
    reached: Mutex<Vec<Option<Instant>>>,
    remaining: AtomicUsize,
}

/// Shared by every peer's stream task and the driver.
#[derive(Debug)]
pub struct Tracker {
    started: Instant,
    round: RwLock<Option<Arc<Round>>>,
    done: Notify,
    bytes: AtomicU64,
    messages: AtomicU64,
    /// Microseconds after `started` of the latest message.
    last_message_us: AtomicU64,
    failure: Mutex<Option<String>>,
    finished: AtomicBool,
}

impl Default for Tracker {
    fn default() -> Self {
        Tracker {
            started: Instant::now(),
            round: RwLock::new(None),
            done: Notify::new(),
            bytes: AtomicU64::new(0),
            messages: AtomicU64::new(0),
            last_message_us: AtomicU64::new(0),
            failure: Mutex::new(None),
            finished: AtomicBool::new(false),
        }
    }
}

/// Why waiting for a goal ended without every peer reaching it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitError {
    /// A stream failed; its error.
    Stream(String),
    /// The deadline passed with this many peers still short of the goal.
    Timeout { missing: usize, of: usize },
}

impl Tracker {
    /// Starts waiting for `goal` on peers `0..targets`.
    pub fn set_goal(&self, goal: Goal, targets: usize) {
        let round = Round {
            goal,
            targets,
            reached: Mutex::new(vec![None; targets]),
            remaining: AtomicUsize::new(targets),
        };
        *self.round.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(round));
    }

    /// A map peer `index` decoded from a message of `bytes` bytes.
    pub fn observe(&self, index: usize, map: &PeerMap, bytes: usize) {
        let now = Instant::now();
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        self.messages.fetch_add(1, Ordering::Relaxed);
        let since = u64::try_from(now.duration_since(self.started).as_micros()).unwrap_or(u64::MAX);
        self.last_message_us.fetch_max(since, Ordering::Relaxed);
        let round = self
            .round
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let Some(round) = round else { return };
        if index >= round.targets || !round.goal.holds(index, map) {
            return;
        }
        let mut reached = round.reached.lock().unwrap_or_else(PoisonError::into_inner);
        if reached[index].is_none() {
            reached[index] = Some(now);
            if round.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
                self.done.notify_one();
            }
        }
    }

    /// A stream failed.
    pub fn fail(&self, reason: String) {
        self.failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert(reason);
        self.done.notify_one();
    }

    /// The run is over: streams ending now are expected.
    pub fn finish(&self) {
        self.finished.store(true, Ordering::Relaxed);
    }

    pub fn finished(&self) -> bool {
        self.finished.load(Ordering::Relaxed)
    }

    /// Waits until every target reached the current goal, a stream failed
    /// or `deadline` passed; when each peer reached it.
    pub async fn wait(&self, deadline: Instant) -> Result<Vec<Instant>, WaitError> {
        loop {
            if let Some(reason) = self
                .failure
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
            {
                return Err(WaitError::Stream(reason));
            }
            let round = self
                .round
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            let Some(round) = round else {
                return Ok(Vec::new());
            };
            let missing = round.remaining.load(Ordering::Acquire);
            if missing == 0 {
                let reached = round.reached.lock().unwrap_or_else(PoisonError::into_inner);
                return Ok(reached.iter().flatten().copied().collect());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(WaitError::Timeout {
                    missing,
                    of: round.targets,
                });
            }
            // Wake up now and then in case a notification raced the check.
            let _ =
                tokio::time::timeout(left.min(Duration::from_millis(200)), self.done.notified())
                    .await;
        }
    }

    /// Waits until no message arrived for `quiet` (or `deadline` passed),
    /// so the bytes of a change's trailing messages count for that change.
    pub async fn settle(&self, quiet: Duration, deadline: Instant) {
        loop {
            let last =
                self.started + Duration::from_micros(self.last_message_us.load(Ordering::Relaxed));
            let now = Instant::now();
            let since = now.saturating_duration_since(last);
            if since >= quiet || now >= deadline {
                return;
            }
            tokio::time::sleep(quiet - since).await;
        }
    }

    /// Bytes and messages received so far.
    pub fn received(&self) -> (u64, u64) {
        (
            self.bytes.load(Ordering::Relaxed),
            self.messages.load(Ordering::Relaxed),
        )
    }
}

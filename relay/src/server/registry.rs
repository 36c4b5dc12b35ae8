//! The peers connected to this relay, by id, with what each is waiting to
//! hear about (NetBird's peer-state subscriptions).
//!
//! One connection per id: a newer connection for an id replaces the older
//! one, which is told to close (a daemon that reconnected must not lose
//! its packets to its own stale connection).

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError};

use bytes::Bytes;
use tokio::sync::watch;

use super::queue::SendQueue;
use crate::protocol::{self, MsgType, PeerId};

/// Peer ids one connection may subscribe to; more are ignored.
pub(crate) const MAX_SUBSCRIPTIONS: usize = 4096;

/// A connected peer as the registry holds it.
#[derive(Debug)]
struct Entry {
    /// Which connection of this id it is.
    connection: u64,
    /// Its send queue.
    queue: SendQueue,
    /// Set to true to make the connection close.
    stop: watch::Sender<bool>,
    /// Ids to announce once when they come online.
    online_interest: HashSet<PeerId>,
    /// Ids to announce whenever they go offline.
    offline_interest: HashSet<PeerId>,
}

/// What became of a transport frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Forwarded {
    Sent,
    /// The destination is not connected.
    NoPeer,
    /// The destination's queue is full: dropped.
    Congested,
}

#[derive(Debug, Default)]
pub(crate) struct Registry {
    peers: Mutex<HashMap<PeerId, Entry>>,
}

impl Registry {
    /// Registers `connection` as `peer`, closing the connection it
    /// replaces, and tells the peers waiting for `peer` that it is online.
    pub(crate) fn insert(
        &self,
        peer: PeerId,
        connection: u64,
        queue: SendQueue,
        stop: watch::Sender<bool>,
    ) {
        let mut peers = self.lock();
        let entry = Entry {
            connection,
            queue,
            stop,
            online_interest: HashSet::new(),
            offline_interest: HashSet::new(),
        };
        if let Some(old) = peers.insert(peer, entry) {
            tracing::debug!(%peer, "a newer connection replaces this peer's");
            old.stop.send_replace(true);
        }
        let frames = protocol::peer_state(MsgType::PeersOnline, &[peer]).unwrap_or_default();
        for other in peers.values_mut() {
            if other.online_interest.remove(&peer) {
                for frame in &frames {
                    other.queue.try_push(Bytes::from(frame.clone()));
                }
            }
        }
    }

    /// Removes `peer` if `connection` is still the one registered for it
    /// and tells the peers waiting for it that it went offline.
    pub(crate) fn remove(&self, peer: &PeerId, connection: u64) {
        let mut peers = self.lock();
        if peers.get(peer).map(|e| e.connection) != Some(connection) {
            return;
        }
        peers.remove(peer);
        let frames = protocol::peer_state(MsgType::PeersWentOffline, &[*peer]).unwrap_or_default();
        for other in peers.values() {
            if other.offline_interest.contains(peer) {
                for frame in &frames {
                    other.queue.try_push(Bytes::from(frame.clone()));
                }
            }
        }
    }

    /// Queues `frame` for `to` without waiting.
    pub(crate) fn forward(&self, to: &PeerId, frame: Bytes) -> Forwarded {
        let peers = self.lock();
        let Some(entry) = peers.get(to) else {
            return Forwarded::NoPeer;
        };
        if entry.queue.try_push(frame) {
            Forwarded::Sent
        } else {
            Forwarded::Congested
        }
    }

    /// Records that `peer` (on `connection`, unless a newer one replaced
    /// it) wants to hear about `ids`; returns those online now (the caller
    /// announces them).
    pub(crate) fn subscribe(&self, peer: &PeerId, connection: u64, ids: &[PeerId]) -> Vec<PeerId> {
        let mut peers = self.lock();
        let online: Vec<PeerId> = ids
            .iter()
            .filter(|id| peers.contains_key(id))
            .copied()
            .collect();
        if let Some(entry) = peers.get_mut(peer).filter(|e| e.connection == connection) {
            for id in ids {
                if entry.offline_interest.len() >= MAX_SUBSCRIPTIONS
                    && !entry.offline_interest.contains(id)
                {
                    break;
                }
                entry.offline_interest.insert(*id);
                if !online.contains(id) {
                    entry.online_interest.insert(*id);
                }
            }
        }
        online
    }

    /// Forgets `peer`'s interest in `ids`.
    pub(crate) fn unsubscribe(&self, peer: &PeerId, connection: u64, ids: &[PeerId]) {
        let mut peers = self.lock();
        if let Some(entry) = peers.get_mut(peer).filter(|e| e.connection == connection) {
            for id in ids {
                entry.online_interest.remove(id);
                entry.offline_interest.remove(id);
            }
        }
    }

    /// Tells every connection to close (the relay stops).
    pub(crate) fn stop_all(&self) {
        for entry in self.lock().values() {
            entry.stop.send_replace(true);
        }
    }

    /// Peers connected now.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PeerId, Entry>> {
        self.peers.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

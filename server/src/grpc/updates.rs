//! Keeps every open Sync stream's map current.
//!
//! Each account with at least one open stream has a hub: one task that
//! listens for the store's commit notices about that account, reloads the
//! account and recomputes the maps of the peers with open streams (sharing
//! work between them through one [`MapBuilder`]), and publishes them as one
//! snapshot. The hub also recomputes when an expose session of the account
//! begins or ends: the maps are computed from the account with the access
//! its sessions grant the reverse proxy (`Expose::granted`). Streams
//! compare their peer's map with the last one they sent and send only when
//! it differs, converted into the protocol of the stream (ours or
//! NetBird's, [`crate::netbird`]).
//!
//! For streams that take deltas the hub also remembers, per peer, the last
//! map sent and the last map the peer acknowledged holding (one of each,
//! shared with the snapshot that computed it): a stream diffs against what
//! it sent last, and a reconnecting peer that names its acknowledged map
//! gets a delta from it. Entries of peers no longer in the account are
//! dropped at each computation, and all of them when the hub ends.
//!
//! Bursts are coalesced: the first change after a quiet spell is recomputed
//! at once, later ones at most once per [`COALESCE`], so a change reaches
//! peers well within a second however busy the REST API is. Without any
//! change the maps are still recomputed every [`REVALIDATE`], because a
//! login expires with time alone. A hub ends when its last stream does.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use meshplane_core::index::AccountIndex;
use meshplane_core::model::Account;
use meshplane_core::netmap::delta::{digest, MapDigest};
use meshplane_core::netmap::{MapBuilder, PeerMap};
use meshplane_core::posture;
use meshplane_core::registration::{check_login, RegistrationError};
use meshplane_core::{ErrorCode, Timestamp};
use meshplane_proto::status::code_of;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tonic::{Code, Status};

use super::internal;
use crate::domain::account_view::snapshot;
use crate::expose::Expose;
use crate::ids;
use crate::records::AccountRecord;
use crate::store::Store;

/// Least time between two recomputations of one account.
const COALESCE: Duration = Duration::from_millis(100);
/// Longest time between two recomputations of one account.
const REVALIDATE: Duration = Duration::from_secs(15);

/// What a stream should do for its peer.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    /// Send this map and these process paths (those the posture checks
    /// applying to the peer name) unless both are the ones last sent.
    Map {
        map: Arc<PeerMap>,
        process_check_paths: Arc<[String]>,
        serial: u64,
        /// The map's digest ([`digest`]).
        digest: MapDigest,
    },
    /// End the stream with this status (the peer was deleted, blocked, or
    /// its login expired).
    Close { code: Code, message: String },
}

impl Update {
    fn close(e: &impl ErrorCode) -> Update {
        Update::Close {
            code: code_of(e.kind()),
            message: e.to_string(),
        }
    }
}

/// One computation of an account's maps.
#[derive(Debug, Default)]
struct Snapshot {
    /// Counts computations; a stream waits for one newer than it.
    generation: u64,
    /// By peer id, for the peers that had streams when it was computed.
    updates: BTreeMap<String, Update>,
}

/// A peer with open streams.
#[derive(Debug)]
struct Member {
    /// Its WireGuard key, for the login checks.
    key: String,
    streams: usize,
}

/// A map a peer was sent, by the serial and digest of the response.
#[derive(Debug, Clone)]
pub struct Held {
    pub serial: u64,
    pub digest: MapDigest,
    pub map: Arc<PeerMap>,
}

/// The maps the hub remembers for one peer.
#[derive(Debug, Default)]
struct PeerMaps {
    /// The last one sent on any of its delta streams.
    sent: Option<Held>,
    /// The last one it acknowledged holding.
    acked: Option<Held>,
}

/// What an acknowledgement told the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    /// The peer holds the map last sent; remembered as its base.
    Holds,
    /// It names a map this hub did not send last (an older one, or one of
    /// another server); nothing is remembered.
    Unknown,
    /// It holds another map than the one sent with that serial.
    Differs,
}

/// The shared state of one account's hub.
#[derive(Debug)]
struct Hub {
    snapshots: watch::Sender<Arc<Snapshot>>,
    members: Mutex<BTreeMap<String, Member>>,
    /// By peer id; see the module documentation.
    maps: Mutex<HashMap<String, PeerMaps>>,
    /// Asks for a recomputation (a new stream wants its first map).
    poke: Notify,
}

/// Every account's hub.
#[derive(Debug, Clone)]
pub struct Hubs {
    store: Store,
    /// The expose sessions: their grants shape the maps, and a session
    /// beginning or ending recomputes its account's maps.
    expose: Expose,
    hubs: Arc<Mutex<HashMap<String, Arc<Hub>>>>,
    /// The account and peer id of each key with an open stream, so that an
    /// acknowledgement finds its hub without reading the store.
    keys: Arc<Mutex<HashMap<String, (String, String)>>>,
}

/// An open stream's view of its account's hub.
#[derive(Debug)]
pub struct Subscription {
    hub: Arc<Hub>,
    keys: Arc<Mutex<HashMap<String, (String, String)>>>,
    key: String,
    peer_id: String,
    seen: u64,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    left: bool,
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Hubs {
    pub fn new(store: Store, expose: Expose) -> Hubs {
        Hubs {
            store,
            expose,
            hubs: Arc::default(),
            keys: Arc::default(),
        }
    }

    /// Joins the hub of `account` for the peer `peer_id` holding `key`,
    /// starting the hub if it is not running; asks for a fresh computation.
    pub fn subscribe(&self, account: &str, peer_id: &str, key: &str) -> Subscription {
        let mut hubs = locked(&self.hubs);
        let hub = hubs
            .entry(account.to_string())
            .or_insert_with(|| {
                let hub = Arc::new(Hub {
                    snapshots: watch::Sender::new(Arc::default()),
                    members: Mutex::default(),
                    maps: Mutex::default(),
                    poke: Notify::new(),
                });
                tokio::spawn(run(self.clone(), account.to_string(), hub.clone()));
                hub
            })
            .clone();
        locked(&hub.members)
            .entry(peer_id.to_string())
            .or_insert_with(|| {
                crate::metrics::peer_connected(true);
                Member {
                    key: key.to_string(),
                    streams: 0,
                }
            })
            .streams += 1;
        locked(&self.keys).insert(key.to_string(), (account.to_string(), peer_id.to_string()));
        let snapshots = hub.snapshots.subscribe();
        let seen = snapshots.borrow().generation;
        hub.poke.notify_one();
        Subscription {
            hub,
            keys: self.keys.clone(),
            key: key.to_string(),
            peer_id: peer_id.to_string(),
            seen,
            snapshots,
            left: false,
        }
    }

    /// Records that the peer holding `key` holds the map of `serial` with
    /// `digest`. Reads no store: a peer without an open stream here has
    /// nothing to acknowledge ([`Ack::Unknown`]).
    pub fn ack(&self, key: &str, serial: u64, digest: &MapDigest) -> Ack {
        let Some((account, peer_id)) = locked(&self.keys).get(key).cloned() else {
            return Ack::Unknown;
        };
        let Some(hub) = locked(&self.hubs).get(&account).cloned() else {
            return Ack::Unknown;
        };
        let mut maps = locked(&hub.maps);
        let Some(entry) = maps.get_mut(&peer_id) else {
            return Ack::Unknown;
        };
        match &entry.sent {
            Some(sent) if sent.serial == serial && sent.digest == *digest => {
                entry.acked = Some(sent.clone());
                Ack::Holds
            }
            Some(sent) if sent.serial == serial => Ack::Differs,
            _ => Ack::Unknown,
        }
    }

    /// Removes the hub of `account` if no stream uses it any more.
    fn retire(&self, account: &str, hub: &Hub) -> bool {
        let mut hubs = locked(&self.hubs);
        if hub.snapshots.receiver_count() > 0 {
            return false;
        }
        hubs.remove(account);
        true
    }
}

impl Subscription {
    /// The next update for this peer, computed after the subscription
    /// began; `None` when the hub stopped.
    pub async fn next(&mut self) -> Option<Update> {
        loop {
            {
                let snapshot = self.snapshots.borrow_and_update();
                if snapshot.generation > self.seen {
                    self.seen = snapshot.generation;
                    if let Some(update) = snapshot.updates.get(&self.peer_id) {
                        return Some(update.clone());
                    }
                }
            }
            self.snapshots.changed().await.ok()?;
        }
    }

    /// The map this peer acknowledged holding, if it is the one of
    /// `serial` and `digest`.
    pub fn acknowledged(&self, serial: u64, digest: &MapDigest) -> Option<Arc<PeerMap>> {
        let maps = locked(&self.hub.maps);
        let acked = maps.get(&self.peer_id)?.acked.as_ref()?;
        (acked.serial == serial && acked.digest == *digest).then(|| acked.map.clone())
    }

    /// Records the map just sent to this peer as a delta stream's base.
    pub fn sent(&self, held: Held) {
        locked(&self.hub.maps)
            .entry(self.peer_id.clone())
            .or_default()
            .sent = Some(held);
    }

    /// The peer this stream serves.
    pub fn peer_id(&self) -> &str {
        &self.peer_id
    }

    /// Ends this stream; true when it was its peer's last open stream.
    pub fn leave(mut self) -> bool {
        self.release()
    }

    fn release(&mut self) -> bool {
        if self.left {
            return false;
        }
        self.left = true;
        let mut members = locked(&self.hub.members);
        let Some(member) = members.get_mut(&self.peer_id) else {
            return false;
        };
        member.streams -= 1;
        if member.streams > 0 {
            return false;
        }
        members.remove(&self.peer_id);
        crate::metrics::peer_connected(false);
        locked(&self.keys).remove(&self.key);
        true
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.release();
    }
}

/// The hub task of `account`.
async fn run(hubs: Hubs, account: String, hub: Arc<Hub>) {
    let mut changes = hubs.store.changes();
    let mut sessions = hubs.expose.changes();
    let mut generation = 0;
    let mut serial = 0;
    let mut last: Option<Instant> = None;
    loop {
        tokio::select! {
            () = hub.snapshots.closed() => {
                if hubs.retire(&account, &hub) {
                    return;
                }
                continue;
            }
            () = hub.poke.notified() => {}
            () = tokio::time::sleep(REVALIDATE) => {}
            change = changes.recv() => match change {
                Ok(touched) if touched != account => continue,
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return,
            },
            change = sessions.recv() => match change {
                Ok(touched) if touched != account => continue,
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return,
            },
        }
        if let Some(at) = last {
            tokio::time::sleep_until(at + COALESCE).await;
        }
        // Whatever was committed until now is in the account read below.
        while !matches!(
            changes.try_recv(),
            Err(TryRecvError::Empty | TryRecvError::Closed)
        ) {}
        while !matches!(
            sessions.try_recv(),
            Err(TryRecvError::Empty | TryRecvError::Closed)
        ) {}
        last = Some(Instant::now());
        let members: Vec<(String, String)> = locked(&hub.members)
            .iter()
            .map(|(id, m)| (id.clone(), m.key.clone()))
            .collect();
        let now = ids::now();
        // A serial that only grows, also across hubs and restarts.
        serial = u64::try_from(now.as_millis()).unwrap_or(0).max(serial + 1);
        match compute(&hubs, &hub, &account, members, now, serial).await {
            Ok(updates) => {
                crate::metrics::maps_computed(last.map(|at| at.elapsed()), updates.len());
                generation += 1;
                hub.snapshots.send_replace(Arc::new(Snapshot {
                    generation,
                    updates,
                }));
            }
            Err(e) => tracing::warn!(account, error = %e, "network maps not recomputed"),
        }
    }
}

/// The updates of `members` (peer id, key) from the stored account, with
/// the access its expose sessions grant.
async fn compute(
    hubs: &Hubs,
    hub: &Hub,
    account_id: &str,
    members: Vec<(String, String)>,
    now: Timestamp,
    serial: u64,
) -> Result<BTreeMap<String, Update>, Status> {
    let mut tx = hubs.store.read().await.map_err(internal)?;
    let record = tx
        .get::<AccountRecord>(account_id, account_id)
        .await
        .map_err(internal)?;
    if record.is_none() {
        let gone = Update::close(&RegistrationError::NotRegistered);
        return Ok(members
            .into_iter()
            .map(|(id, _)| (id, gone.clone()))
            .collect());
    }
    let account = snapshot(&hubs.store, &mut tx, account_id)
        .await
        .map_err(internal)?;
    drop(tx);
    locked(&hub.maps).retain(|id, _| account.peers.iter().any(|p| p.id.as_str() == id));
    let account = hubs.expose.granted(&account).await;
    crate::cpu::run(move || updates(&account, &members, now, serial))
        .await
        .map_err(internal)
}

/// Each member's map, or why its stream must end. CPU-bound.
fn updates(
    account: &Account,
    members: &[(String, String)],
    now: Timestamp,
    serial: u64,
) -> BTreeMap<String, Update> {
    let index = AccountIndex::new(account);
    let mut maps = MapBuilder::new(&index, now);
    members
        .iter()
        .map(|(id, key)| {
            let update = match check_login(account, key, now) {
                Err(e) => Update::close(&e),
                Ok(peer) if peer.id.as_str() != id => {
                    Update::close(&RegistrationError::NotRegistered)
                }
                Ok(_) => match index.rank(id) {
                    None => Update::close(&RegistrationError::NotRegistered),
                    Some(rank) => {
                        let map = PeerMap::from(&maps.map(rank));
                        Update::Map {
                            digest: digest(&map),
                            map: Arc::new(map),
                            process_check_paths: posture::process_paths(&index, rank).into(),
                            serial,
                        }
                    }
                },
            };
            (id.clone(), update)
        })
        .collect()
}

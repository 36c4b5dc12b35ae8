//! Keeps every open Sync stream's map current.
//!
//! Each account with at least one open stream has a hub: one task that
//! drives the account's [`Fanout`] (the core decides what to recompute,
//! when, and which peers get what) with the streams opening and closing,
//! the store's commit notices, expose sessions beginning and ending (the
//! maps are computed from the account with the access its sessions grant
//! the reverse proxy, `Expose::granted`) and the machine's own deadlines.
//! Each peer with open streams has one watch its streams read; the hub
//! puts there what the machine hands out, converted by each stream into
//! its protocol (ours or NetBird's, [`crate::netbird`]).
//!
//! For streams that take deltas the hub also remembers, per peer, the last
//! map sent and the last map the peer acknowledged holding: a stream diffs
//! against what it sent last, and a reconnecting peer that names its
//! acknowledged map gets a delta from it. Entries of peers no longer in the
//! account are dropped at each load, and all of them when the hub ends. A
//! hub ends when its last stream does.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use meshplane_core::model::Account;
use meshplane_core::netmap::delta::MapDigest;
use meshplane_core::netmap::fanout::Fanout;
pub use meshplane_core::netmap::fanout::Update;
use meshplane_core::netmap::PeerMap;
use meshplane_core::Timestamp;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tonic::Status;

use super::internal;
use crate::domain::account_view::{mapped, ViewError};
use crate::expose::Expose;
use crate::ids;
use crate::store::Store;

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

/// A peer with open streams.
#[derive(Debug)]
struct Member {
    streams: usize,
    /// What its streams are to hold; `None` until its first map.
    updates: watch::Sender<Option<Update>>,
}

/// What a stream tells its account's [`Fanout`] through the hub task.
#[derive(Debug)]
enum Command {
    /// The first stream of a peer opened.
    Subscribe { peer_id: String, key: String },
    /// The last stream of a peer closed.
    Unsubscribe { peer_id: String },
}

/// The shared state of one account's hub.
#[derive(Debug)]
struct Hub {
    /// One receiver per open stream: the hub ends when none is left.
    alive: watch::Sender<()>,
    members: Mutex<BTreeMap<String, Member>>,
    /// By peer id; see the module documentation.
    maps: Mutex<HashMap<String, PeerMaps>>,
    /// To the hub task, in the order the streams opened and closed.
    commands: mpsc::UnboundedSender<Command>,
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
    updates: watch::Receiver<Option<Update>>,
    /// Whether the update held when the stream opened is still to be read.
    first: bool,
    _alive: watch::Receiver<()>,
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
    /// starting the hub if it is not running. A peer that already has a
    /// stream shares its map at once; another one's is computed.
    pub fn subscribe(&self, account: &str, peer_id: &str, key: &str) -> Subscription {
        let mut hubs = locked(&self.hubs);
        let hub = hubs
            .entry(account.to_string())
            .or_insert_with(|| {
                let (commands, received) = mpsc::unbounded_channel();
                let hub = Arc::new(Hub {
                    alive: watch::Sender::new(()),
                    members: Mutex::default(),
                    maps: Mutex::default(),
                    commands,
                });
                tokio::spawn(run(
                    self.clone(),
                    account.to_string(),
                    hub.clone(),
                    received,
                ));
                hub
            })
            .clone();
        let alive = hub.alive.subscribe();
        drop(hubs);
        let updates = {
            let mut members = locked(&hub.members);
            let member = members.entry(peer_id.to_string()).or_insert_with(|| {
                crate::metrics::peer_connected(true);
                // Sent under the lock, so the task sees the first and last
                // streams of a peer in the order they happened.
                let _ = hub.commands.send(Command::Subscribe {
                    peer_id: peer_id.to_string(),
                    key: key.to_string(),
                });
                Member {
                    streams: 0,
                    updates: watch::Sender::new(None),
                }
            });
            member.streams += 1;
            member.updates.subscribe()
        };
        locked(&self.keys).insert(key.to_string(), (account.to_string(), peer_id.to_string()));
        Subscription {
            hub,
            keys: self.keys.clone(),
            key: key.to_string(),
            peer_id: peer_id.to_string(),
            updates,
            first: true,
            _alive: alive,
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
        if hub.alive.receiver_count() > 0 {
            return false;
        }
        hubs.remove(account);
        true
    }
}

impl Subscription {
    /// The next update for this peer: at first the one its other streams
    /// hold, if any; `None` when the hub stopped.
    pub async fn next(&mut self) -> Option<Update> {
        loop {
            if !std::mem::take(&mut self.first) {
                self.updates.changed().await.ok()?;
            }
            if let Some(update) = self.updates.borrow_and_update().clone() {
                return Some(update);
            }
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
        let _ = self.hub.commands.send(Command::Unsubscribe {
            peer_id: self.peer_id.clone(),
        });
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

/// The hub task of `account`: drives its [`Fanout`] with the streams'
/// commands, the store's commit notices, expose sessions beginning and
/// ending, and the machine's own deadlines, and hands each update to the
/// streams of its peer.
async fn run(
    hubs: Hubs,
    account: String,
    hub: Arc<Hub>,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let mut changes = hubs.store.changes();
    let mut sessions = hubs.expose.changes();
    let mut fanout = Fanout::new();
    loop {
        let wake = fanout.poll_timeout().map(instant_of);
        tokio::select! {
            () = hub.alive.closed() => {
                if hubs.retire(&account, &hub) {
                    return;
                }
                continue;
            }
            Some(command) = commands.recv() => match command {
                Command::Subscribe { peer_id, key } => {
                    fanout.handle_subscribe(&peer_id, &key, ids::now());
                }
                Command::Unsubscribe { peer_id } => fanout.handle_unsubscribe(&peer_id),
            },
            () = sleep_until_some(wake) => {
                let now = ids::now();
                match computing(fanout, move |f| f.handle_timeout(now)).await {
                    Some(f) => fanout = f,
                    None => return,
                }
            }
            change = changes.recv() => match change {
                Ok(touched) if touched != account => continue,
                Ok(_) | Err(RecvError::Lagged(_)) => fanout.handle_change(ids::now()),
                Err(RecvError::Closed) => return,
            },
            change = sessions.recv() => match change {
                Ok(touched) if touched != account => continue,
                Ok(_) | Err(RecvError::Lagged(_)) => fanout.handle_change(ids::now()),
                Err(RecvError::Closed) => return,
            },
        }
        if fanout.poll_load() {
            match load(&hubs, &account).await {
                Ok(loaded) => {
                    let now = ids::now();
                    match computing(fanout, move |f| f.handle_account(loaded, now)).await {
                        Some(f) => fanout = f,
                        None => return,
                    }
                    if let Some(account) = fanout.account() {
                        // A set, not a walk over the peers per kept map:
                        // that was quadratic in the account's peers.
                        let ids: HashSet<&str> =
                            account.peers.iter().map(|p| p.id.as_str()).collect();
                        locked(&hub.maps).retain(|id, _| ids.contains(id.as_str()));
                    }
                }
                Err(e) => {
                    tracing::warn!(account, error = %e, "network maps not recomputed");
                    fanout.handle_load_failed(ids::now());
                }
            }
        }
        let members = locked(&hub.members);
        while let Some((peer_id, update)) = fanout.poll_send() {
            if let Some(member) = members.get(&peer_id) {
                member.updates.send_replace(Some(update));
            }
        }
    }
}

/// Runs `work` on the machine on a CPU thread, timing the maps it builds;
/// `None` if the thread failed.
async fn computing(
    mut fanout: Fanout,
    work: impl FnOnce(&mut Fanout) + Send + 'static,
) -> Option<Fanout> {
    let began = Instant::now();
    let fanout = crate::cpu::run(move || {
        work(&mut fanout);
        fanout
    })
    .await
    .inspect_err(|e| tracing::error!(error = %e, "network map computation failed"))
    .ok()?;
    if fanout.computed() > 0 {
        crate::metrics::maps_computed(Some(began.elapsed()), fanout.computed());
    }
    Some(fanout)
}

/// The account as the maps see it (with the access its expose sessions
/// grant); `None` when it no longer exists.
async fn load(hubs: &Hubs, account_id: &str) -> Result<Option<Arc<Account>>, Status> {
    let mut tx = hubs.store.read().await.map_err(internal)?;
    match mapped(&hubs.store, &hubs.expose, &mut tx, account_id).await {
        Ok(account) => Ok(Some(account)),
        Err(ViewError::Missing(_)) => Ok(None),
        Err(ViewError::Store(e)) => Err(internal(e)),
    }
}

/// The tokio instant of a machine deadline on the wall clock.
fn instant_of(at: Timestamp) -> Instant {
    let wait = (at - ids::now()).as_millis().max(0);
    Instant::now() + Duration::from_millis(wait.unsigned_abs())
}

/// Sleeps until `at`, or forever without one.
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

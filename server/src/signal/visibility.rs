//! Who may signal whom: a peer may open a signal stream while it may log in
//! (registered, its user not blocked, its login not expired, approved), and
//! may send to the peers its network map lists, exactly as the maps see
//! the account (with the access its expose sessions grant the reverse
//! proxy).
//!
//! Signal messages are frequent (every candidate of every connection
//! attempt), so they must not recompute maps: each account's answer is
//! computed once ([`AccountView`]: every peer's visible set as a bit set
//! over peer ranks) and kept until the store announces a commit to that
//! account or one of its expose sessions begins or ends (the invalidation
//! task [`Visibility::follow`]), or until the next login of the account
//! expires (logins expire with time alone). After a commit the account is
//! read again, and a commit that changed nothing the maps read (a peer
//! connecting or disconnecting) keeps the view as it was. Concurrent askers
//! of one account share one computation. A key's account is remembered with the view, so a
//! message costs two hash lookups; a key that is no peer costs one indexed
//! store lookup and is not remembered (no memory for strangers).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use meshplane_core::index::{AccountIndex, PeerSet};
use meshplane_core::model::{Account, Peer};
use meshplane_core::netmap::fanout::{next_login_expiry, same_for_maps};
use meshplane_core::netmap::MapBuilder;
use meshplane_core::registration::{check_login, RegistrationError};
use meshplane_core::Timestamp;
use thiserror::Error;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::OnceCell;

use crate::domain::account_view::{mapped, ViewError};
use crate::expose::Expose;
use crate::grpc::key_entry;
use crate::ids;
use crate::store::{Store, StoreError};

/// Why a key may not signal, or a message not pass.
#[derive(Debug, Error)]
pub enum Refusal {
    /// The key is no peer's, or the peer may not log in now.
    #[error("{0}")]
    Login(RegistrationError),
    /// The peer waits for an administrator's approval.
    #[error("peer is pending approval")]
    Pending,
    /// The recipient is not in the sender's network map.
    #[error("the remote peer is not reachable from this peer")]
    NotVisible,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot compute the account's visibility: {0}")]
    Compute(String),
}

impl From<ViewError> for Refusal {
    fn from(e: ViewError) -> Refusal {
        match e {
            ViewError::Missing(_) => Refusal::Login(RegistrationError::NotRegistered),
            ViewError::Store(e) => Refusal::Store(e),
        }
    }
}

/// Whether a peer may signal, and whom.
#[derive(Debug)]
enum Admission {
    /// It may, to the peers of this set of ranks.
    Admitted(PeerSet),
    /// It may not log in.
    Refused(RegistrationError),
    /// It waits for approval.
    Pending,
}

/// One account's answer at one time.
#[derive(Debug)]
struct AccountView {
    /// The account it was computed from.
    account: Arc<Account>,
    /// When the next login of the account expires: the view holds until
    /// then.
    until: Option<Timestamp>,
    /// By peer key: its rank and admission.
    peers: HashMap<String, (u32, Admission)>,
}

impl AccountView {
    /// Every peer's visible set in `account` at `now`. CPU-bound.
    fn compute(account: Arc<Account>, now: Timestamp) -> AccountView {
        let index = AccountIndex::new(&account);
        let mut maps = MapBuilder::new(&index, now).all();
        let mut peers = HashMap::with_capacity(account.peers.len());
        for peer in &account.peers {
            let Some(rank) = index.rank(peer.id.as_str()) else {
                continue;
            };
            let admission = match check_login(&account, &peer.key, now) {
                Err(e) => Admission::Refused(e),
                Ok(_) if !index.approved().contains(rank) => Admission::Pending,
                Ok(_) => {
                    let mut visible = PeerSet::empty(index.peer_count());
                    if let Some(map) = maps.remove(&peer.id) {
                        for seen in map.peers() {
                            if let Some(r) = index.rank(seen.id.as_str()) {
                                visible.insert(r);
                            }
                        }
                    }
                    Admission::Admitted(visible)
                }
            };
            peers.insert(peer.key.clone(), (rank, admission));
        }
        drop(maps);
        drop(index);
        AccountView {
            until: next_login_expiry(&account, now),
            account,
            peers,
        }
    }

    /// Whether the view still holds at `now`.
    fn fresh(&self, now: Timestamp) -> bool {
        self.until.is_none_or(|at| now < at)
    }

    /// Whom the holder of `key` may signal, or why it may not.
    fn admitted(&self, key: &str) -> Result<&PeerSet, Refusal> {
        match self.peers.get(key) {
            None => Err(Refusal::Login(RegistrationError::NotRegistered)),
            Some((_, Admission::Admitted(visible))) => Ok(visible),
            Some((_, Admission::Refused(e))) => Err(Refusal::Login(e.clone())),
            Some((_, Admission::Pending)) => Err(Refusal::Pending),
        }
    }
}

/// One account's view being computed or computed; replaced (not cleared)
/// when invalidated, so a computation that started before a change never
/// lands in the cache.
type Slot = Arc<OnceCell<Arc<AccountView>>>;

#[derive(Debug, Default)]
struct Cache {
    accounts: HashMap<String, Slot>,
    /// The last view computed of each account, kept across invalidations
    /// for commits that change nothing it depends on.
    last: HashMap<String, Arc<AccountView>>,
    /// The account of each key seen in a computed view.
    keys: HashMap<String, String>,
}

/// The visibility answers of every account in use.
#[derive(Debug, Clone)]
pub struct Visibility {
    store: Store,
    expose: Expose,
    cache: Arc<Mutex<Cache>>,
}

impl Visibility {
    pub fn new(store: Store, expose: Expose) -> Visibility {
        Visibility {
            store,
            expose,
            cache: Arc::default(),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the holder of `key` may open a signal stream now.
    pub async fn admit(&self, key: &str) -> Result<(), Refusal> {
        let view = self.view_of(key).await?;
        view.admitted(key).map(|_| ())
    }

    /// Whether `from` may send to `to` now: both may signal and `to` is in
    /// `from`'s map (or is `from` itself, a client's liveness probe).
    pub async fn check(&self, from: &str, to: &str) -> Result<(), Refusal> {
        let view = self.view_of(from).await?;
        let visible = view.admitted(from)?;
        if from == to {
            return Ok(());
        }
        // The maps still list a blocked user's peers; they receive nothing.
        match view.peers.get(to) {
            Some((rank, Admission::Admitted(_))) if visible.contains(*rank) => Ok(()),
            _ => Err(Refusal::NotVisible),
        }
    }

    /// The current view of the account holding `key`.
    async fn view_of(&self, key: &str) -> Result<Arc<AccountView>, Refusal> {
        let remembered = self.cache().keys.get(key).cloned();
        if let Some(account) = remembered {
            let view = self.view(&account).await?;
            if view.peers.contains_key(key) {
                return Ok(view);
            }
            // The key left that account since (deleted, registered again
            // elsewhere): look it up afresh.
            self.cache().keys.remove(key);
        }
        let mut tx = self.store.read().await?;
        let found = tx.find_secret::<Peer>(&key_entry(key)).await?;
        drop(tx);
        match found {
            Some((account, _)) => self.view(&account).await,
            None => Err(Refusal::Login(RegistrationError::NotRegistered)),
        }
    }

    /// The current view of `account`: the cached one while it is fresh.
    async fn view(&self, account: &str) -> Result<Arc<AccountView>, Refusal> {
        for _ in 0..2 {
            let slot = self
                .cache()
                .accounts
                .entry(account.to_string())
                .or_default()
                .clone();
            let view = slot
                .get_or_try_init(|| self.compute(account))
                .await?
                .clone();
            if view.fresh(ids::now()) {
                return Ok(view);
            }
            self.invalidate_if(account, &slot);
        }
        // Computed twice in a row and already stale (a stalled machine):
        // use a fresh one without caching it.
        self.compute(account).await
    }

    /// Computes the view of `account` (the last one, when what it depends
    /// on did not change) and remembers its keys.
    async fn compute(&self, account: &str) -> Result<Arc<AccountView>, Refusal> {
        let mut tx = self.store.read().await?;
        let snapshot = mapped(&self.store, &self.expose, &mut tx, account).await?;
        drop(tx);
        let now = ids::now();
        let last = self.cache().last.get(account).cloned();
        if let Some(last) = last {
            if last.fresh(now) && same_for_maps(&last.account, &snapshot) {
                return Ok(last);
            }
        }
        let view = crate::cpu::run(move || AccountView::compute(snapshot, now))
            .await
            .map_err(|e| Refusal::Compute(e.to_string()))?;
        let view = Arc::new(view);
        let mut cache = self.cache();
        cache.last.insert(account.to_string(), view.clone());
        for key in view.peers.keys() {
            cache.keys.insert(key.clone(), account.to_string());
        }
        Ok(view)
    }

    /// Forgets `account`'s view if `slot` is still the cached one.
    fn invalidate_if(&self, account: &str, slot: &Slot) {
        let mut cache = self.cache();
        if cache
            .accounts
            .get(account)
            .is_some_and(|s| Arc::ptr_eq(s, slot))
        {
            cache.accounts.remove(account);
        }
    }

    /// Forgets `account`'s view and its keys.
    fn invalidate(&self, account: &str) {
        let mut cache = self.cache();
        cache.accounts.remove(account);
        cache.keys.retain(|_, a| a != account);
    }

    /// Forgets every view.
    fn invalidate_all(&self) {
        let mut cache = self.cache();
        cache.accounts.clear();
        cache.keys.clear();
    }

    /// Invalidates views as the store commits changes to their accounts and
    /// expose sessions begin or end; runs until the store stops.
    pub async fn follow(self) {
        let mut changes = self.store.changes();
        let mut sessions = self.expose.changes();
        loop {
            let change = tokio::select! {
                change = changes.recv() => change,
                change = sessions.recv() => change,
            };
            match change {
                Ok(account) => self.invalidate(&account),
                // Missed notices: anything may have changed.
                Err(RecvError::Lagged(_)) => self.invalidate_all(),
                Err(RecvError::Closed) => return,
            }
        }
    }
}

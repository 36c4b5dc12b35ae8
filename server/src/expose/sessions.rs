//! The expose sessions of every server sharing the database, and the tasks
//! around them.
//!
//! Sessions live in the store (`expose_sessions`), so a daemon whose next
//! call lands on another server finds its session there. The core's
//! [`SessionTable`] still decides everything (permission, limits, names,
//! TTLs, expiry): every change loads the account's sessions it concerns
//! (the peer's for a create, one row for a renewal or stop, the due ones
//! for the reaper) in a write transaction holding the account's lock,
//! restores them into a fresh table, runs the table's operation at the
//! current time, and writes back what the table changed together with the
//! audit events it produced. Renewals are stored in batches, one
//! transaction for all that arrive while the previous one commits. The
//! lock makes the servers decide about one account one at a time, so
//!
//! - the per-peer limit holds however many servers create at once;
//! - a session ends exactly once, with one audit event, whether a stop, a
//!   renewal arriving too late, a peer deletion or the reaper of any server
//!   ends it: whoever deletes the row writes the event in the same commit;
//! - a renewal racing the reaper of another server either comes first
//!   (and the reaper finds a later deadline) or finds the session expired.
//!
//! Domains are unique across accounts (the table's primary key): a create
//! whose generated name another account took meanwhile draws a new one.
//! PIN and password hashing (tens of milliseconds) happens on a copy of
//! the account's sessions before the write transaction, so it never holds
//! the store's writer; the shared table then admits the result, checking
//! the limit and the domain again.
//!
//! Each server keeps a replica of all sessions in memory: the Sync maps
//! (which access the sessions grant the proxy), the proxy's service table
//! and the REST views read it without a database round trip. A server's own
//! changes update it at once; creating or ending a session is also a
//! change of its account in the store, which reaches every other server
//! through the store's change notices (PostgreSQL LISTEN/NOTIFY), and each
//! server then reloads that account's sessions, unless the account's
//! session version (raised by every create and end) shows it holds them
//! already, as after its own changes. Renewals announce nothing:
//! another server's replica may hold an older deadline, which only wakes
//! its reaper early to find the session renewed (and reload it).
//!
//! Every server runs a reaper that sleeps until the earliest deadline in
//! its replica (or until the replica changes) and then expires the due
//! sessions through the store as above.
//!
//! A SQLite server is alone on its database: it empties the table when it
//! starts, which is the seed's "a restart clears all sessions and
//! services". On PostgreSQL the sessions live as long as the cluster does:
//! a server that restarts finds them, and the sessions of daemons that
//! went away with a server expire by their TTL on the others.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex as SyncMutex, MutexGuard, PoisonError};
use std::time::Duration as StdDuration;

use meshplane_core::expose::grants::{grant, proxy_peers, ExposeTarget};
use meshplane_core::expose::{
    ExposeContext, ExposeError, ExposeEvent, ExposeEventKind, ExposeRequest, PublicUrl, Session,
    SessionTable, TableConfig,
};
use meshplane_core::model::{Account, AuditEvent, PeerId};
use meshplane_core::validate::Domain;
use meshplane_core::{Duration, Timestamp};
use rand_core::OsRng;
use thiserror::Error;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc, oneshot, Mutex, Notify};

use super::senders::Senders;
use crate::domain::audit::meta;
use crate::ids;
use crate::store::{SessionScope, Store, StoreError, Tx};

/// The audit initiator of what the server does by itself (expiry).
const SYSTEM_INITIATOR: &str = "sys";
/// Account-change notices a slow listener may fall behind by before it is
/// told it lagged (and must assume every account changed).
const CHANGE_BACKLOG: usize = 1024;
/// Sessions each peer may hold (SEMANTICS.md).
const MAX_SESSIONS_PER_PEER: usize = 10;
/// Renewals one transaction stores at most; renewals arriving while one
/// batch commits wait for the next (a commit's fsync serves them all).
const RENEW_BATCH: usize = 512;
/// Renewals that may wait for a batch before callers wait to queue.
const RENEW_BACKLOG: usize = 4096;
/// The reaper's pause after the store refused an expiry, before it tries
/// again.
const REAP_RETRY: StdDuration = StdDuration::from_secs(1);

/// Why a session operation failed.
#[derive(Debug, Clone, Error)]
pub enum SessionError {
    /// The table refused it (the caller's error).
    #[error(transparent)]
    Refused(#[from] ExposeError),
    /// The store failed (shared: one failed batch of renewals fails each).
    #[error(transparent)]
    Store(Arc<StoreError>),
    /// The renewal writer is gone: the server is stopping.
    #[error("the server is shutting down")]
    Stopping,
}

impl From<StoreError> for SessionError {
    fn from(e: StoreError) -> SessionError {
        SessionError::Store(Arc::new(e))
    }
}

/// What one operation decided, to publish once its transaction commits.
#[derive(Debug)]
struct Decided {
    account: String,
    /// The stored sessions it read, and the same ones after it.
    before: Vec<Session>,
    after: Vec<Session>,
    events: Vec<ExposeEvent>,
    /// The account's session version it raised, if a session began or
    /// ended.
    version: Option<i64>,
}

/// A renewal waiting for the next batch.
#[derive(Debug)]
struct Renewal {
    account: String,
    peer: PeerId,
    domain: String,
    done: oneshot::Sender<Result<Timestamp, SessionError>>,
}

/// The server settings of peer expose.
#[derive(Debug, Clone)]
pub struct ExposeConfig {
    /// Lifetime of a session without renewal.
    pub ttl: Duration,
    /// The reverse proxy's domain: generated names live under it.
    pub proxy_domain: Domain,
    /// The name of the group of an account's reverse-proxy peers.
    pub proxy_group: String,
}

/// This server's copy of the stored sessions.
#[derive(Debug, Default)]
struct Replica {
    /// Each account's sessions by domain.
    accounts: HashMap<String, BTreeMap<String, Session>>,
    /// (deadline, domain, account) of every session: the next one due
    /// first.
    deadlines: BTreeSet<(Timestamp, String, String)>,
    /// Counts changes of the sessions (creates and ends, not renewals).
    revision: u64,
    /// Per account, the stored session version the replica holds (see
    /// `Tx::expose_version`).
    versions: HashMap<String, i64>,
    /// Where each account's proxy says visitors reach it (the last one to
    /// open WatchServices on this server; kept while it reconnects).
    /// Service URLs use its scheme and port; an account without one gets
    /// HTTPS on 443.
    public: HashMap<String, PublicUrl>,
}

impl Replica {
    /// `session` with the URL its account's proxy serves it at.
    fn served(&self, account: &str, mut session: Session) -> Session {
        let base = self.public.get(account).cloned().unwrap_or_default();
        session.url = base.service_url(&session.domain);
        session
    }

    /// Notes that this server's own commit raised `account`'s session
    /// version to `version`: the replica holds it if it held the one
    /// before (else a change of another server is still to be reloaded).
    fn saw(&mut self, account: &str, version: i64) {
        if self.versions.get(account) == Some(&(version - 1)) {
            self.versions.insert(account.to_string(), version);
        }
    }

    fn insert(&mut self, account: &str, session: Session) -> Option<Session> {
        let old = self.remove(account, &session.domain);
        self.deadlines.insert((
            session.deadline,
            session.domain.clone(),
            account.to_string(),
        ));
        self.accounts
            .entry(account.to_string())
            .or_default()
            .insert(session.domain.clone(), session);
        old
    }

    fn remove(&mut self, account: &str, domain: &str) -> Option<Session> {
        let sessions = self.accounts.get_mut(account)?;
        let old = sessions.remove(domain)?;
        if sessions.is_empty() {
            self.accounts.remove(account);
        }
        self.deadlines
            .remove(&(old.deadline, old.domain.clone(), account.to_string()));
        Some(old)
    }

    /// Replaces `before`, sessions of `account` as the store held them, by
    /// `after`, the same ones now; whether a session began or ended (a
    /// renewal alone is no change).
    fn merge(&mut self, account: &str, before: &[Session], after: &[Session]) -> bool {
        let kept: BTreeSet<&str> = after.iter().map(|s| s.domain.as_str()).collect();
        let mut changed = false;
        for gone in before.iter().filter(|s| !kept.contains(s.domain.as_str())) {
            changed |= self.remove(account, &gone.domain).is_some();
        }
        for session in after {
            let created_at = session.created_at;
            let old = self.insert(account, session.clone());
            changed |= old.is_none_or(|o| o.created_at != created_at);
        }
        if changed {
            self.revision += 1;
        }
        changed
    }

    /// Puts `sessions` in place of all of `account`'s (see [`Replica::merge`]).
    fn set(&mut self, account: &str, sessions: &[Session]) -> bool {
        let before: Vec<Session> = self
            .accounts
            .get(account)
            .map(|s| s.values().cloned().collect())
            .unwrap_or_default();
        self.merge(account, &before, sessions)
    }

    /// The sessions of `account`, sorted by domain.
    fn of(&self, account: &str) -> impl Iterator<Item = &Session> {
        self.accounts
            .get(account)
            .into_iter()
            .flat_map(BTreeMap::values)
    }

    /// The earliest deadline of any session.
    fn next_deadline(&self) -> Option<Timestamp> {
        self.deadlines.first().map(|(at, _, _)| *at)
    }

    /// The accounts with a session due at `now`.
    fn due(&self, now: Timestamp) -> BTreeSet<String> {
        self.deadlines
            .iter()
            .take_while(|(at, _, _)| *at <= now)
            .map(|(_, _, account)| account.clone())
            .collect()
    }
}

#[derive(Debug)]
struct Inner {
    config: ExposeConfig,
    store: Store,
    replica: SyncMutex<Replica>,
    /// Held while an account's sessions are read and put in the replica,
    /// so an older read never replaces a newer one.
    refreshing: Mutex<()>,
    /// Wakes the reaper: the earliest deadline may have moved.
    wake: Notify,
    /// The id of each account whose sessions changed.
    changes: broadcast::Sender<String>,
    /// Who may call.
    senders: Senders,
    /// Renewals for the batch writer.
    renewals: mpsc::Sender<Renewal>,
}

/// The handle every part of the server shares.
#[derive(Debug, Clone)]
pub struct Expose {
    inner: Arc<Inner>,
}

impl Expose {
    /// The sessions of `store` (none on SQLite: it empties them), with the
    /// reaper and the replica's follower running.
    pub async fn start(store: Store, config: ExposeConfig) -> Result<Expose, StoreError> {
        if !store.shared() {
            let mut tx = store.write().await?;
            tx.clear_expose_sessions().await?;
            tx.commit().await?;
        }
        // Subscribed before the first read: a change committed meanwhile
        // is read again.
        let changes = store.changes();
        let mut replica = Replica::default();
        let mut tx = store.read().await?;
        for (account, session) in tx.all_expose_sessions().await? {
            replica.insert(&account, session);
        }
        drop(tx);
        let (renewals, pending) = mpsc::channel(RENEW_BACKLOG);
        let expose = Expose {
            inner: Arc::new(Inner {
                config,
                senders: Senders::start(store.clone()),
                store,
                replica: SyncMutex::new(replica),
                refreshing: Mutex::new(()),
                wake: Notify::new(),
                changes: broadcast::channel(CHANGE_BACKLOG).0,
                renewals,
            }),
        };
        tokio::spawn(renew_in_batches(expose.clone(), pending));
        tokio::spawn(reap(expose.clone()));
        tokio::spawn(follow(expose.clone(), changes));
        Ok(expose)
    }

    pub fn config(&self) -> &ExposeConfig {
        &self.inner.config
    }

    /// The checks of a call's sender.
    pub fn senders(&self) -> &Senders {
        &self.inner.senders
    }

    fn replica(&self) -> MutexGuard<'_, Replica> {
        self.inner
            .replica
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// An empty table with this server's settings.
    fn table(&self) -> SessionTable {
        SessionTable::new(TableConfig {
            ttl: self.inner.config.ttl,
            max_sessions_per_peer: MAX_SESSIONS_PER_PEER,
            proxy_domain: self.inner.config.proxy_domain.to_string(),
        })
    }

    /// A session of the peer in `ctx`, of `account`, made on a copy of the
    /// account's sessions as this server knows them: it still has to be
    /// [`admit`](Self::admit)ted. Hashes a PIN or password (argon2, tens of
    /// milliseconds): call it on a blocking thread.
    pub fn draft(
        &self,
        account: &str,
        ctx: &ExposeContext<'_>,
        request: &ExposeRequest,
    ) -> Result<Session, ExposeError> {
        let mut copy = self.table();
        for session in self.replica().of(account) {
            if session.peer_id == ctx.peer.id {
                copy.restore(session.clone());
            }
        }
        copy.create(ctx, request, &mut OsRng, ids::now())
    }

    /// Adds a [`draft`](Self::draft)ed session to the stored ones: refused
    /// with the limit if the peer reached it meanwhile, and with
    /// `DomainTaken` if its domain was taken meanwhile (draft again).
    pub async fn admit(&self, account: &str, session: Session) -> Result<Session, SessionError> {
        let peer = session.peer_id.clone();
        self.apply(
            account,
            |_| SessionScope::Peer(peer.as_str()),
            None,
            |table, now| table.admit(session, now),
        )
        .await
        .map(|session| self.replica().served(account, session))
    }

    /// Records where `account`'s proxy is reached, for the URLs of its
    /// services from now on.
    pub async fn set_public_url(&self, account: &str, url: PublicUrl) {
        self.replica().public.insert(account.to_string(), url);
    }

    /// Renews `peer`'s session on `domain`; its new deadline. Renewals
    /// are stored in batches (see [`renew_in_batches`]).
    pub async fn renew(
        &self,
        account: &str,
        peer: &PeerId,
        domain: &str,
    ) -> Result<Timestamp, SessionError> {
        let (done, renewed) = oneshot::channel();
        let renewal = Renewal {
            account: account.to_string(),
            peer: peer.clone(),
            domain: domain.to_string(),
            done,
        };
        // The batch writer runs as long as the runtime does.
        let stopping = |_| SessionError::Stopping;
        self.inner.renewals.send(renewal).await.map_err(stopping)?;
        renewed.await.map_err(|_| SessionError::Stopping)?
    }

    /// Stores a batch of renewals in one transaction: each decided by the
    /// table on its session alone, in account order (so that servers
    /// batching at once take the accounts' locks in one order).
    async fn renew_all(
        &self,
        batch: &mut [Renewal],
    ) -> Result<Vec<Result<Timestamp, ExposeError>>, SessionError> {
        batch.sort_by(|a, b| a.account.cmp(&b.account));
        let mut tx = self.inner.store.write().await?;
        let now = ids::now();
        let mut decided = Vec::with_capacity(batch.len());
        let mut results = Vec::with_capacity(batch.len());
        for r in batch.iter() {
            let (d, result) = self
                .decide(
                    &mut tx,
                    &r.account,
                    SessionScope::Domain(&r.domain),
                    Some(&r.domain),
                    now,
                    |table, now| table.renew(&r.peer, &r.domain, now),
                )
                .await?;
            decided.push(d);
            results.push(result);
        }
        self.commit(tx, decided).await?;
        Ok(results)
    }

    /// Stops `peer`'s session on `domain`.
    pub async fn stop(
        &self,
        account: &str,
        peer: &PeerId,
        domain: &str,
    ) -> Result<(), SessionError> {
        self.apply(
            account,
            |_| SessionScope::Domain(domain),
            Some(domain),
            |table, now| table.stop(peer, domain, now),
        )
        .await
    }

    /// Ends every session of a deleted peer. A failure is logged: the
    /// sessions then end by their TTL.
    pub async fn remove_peer(&self, peer: &PeerId) {
        if let Err(e) = self.try_remove_peer(peer).await {
            tracing::error!(error = %e, %peer, "expose sessions of a deleted peer not ended");
        }
    }

    async fn try_remove_peer(&self, peer: &PeerId) -> Result<(), SessionError> {
        let accounts = {
            let mut tx = self.inner.store.read().await?;
            tx.expose_accounts_of(peer.as_str()).await?
        };
        for account in accounts {
            self.apply(
                &account,
                |_| SessionScope::Peer(peer.as_str()),
                None,
                |table, now| {
                    table.remove_peer(peer, now);
                    Ok(())
                },
            )
            .await?;
        }
        Ok(())
    }

    /// Runs `op` at the current time on the stored sessions of `account`
    /// in `scope` (given that time: the ones `op` decides about) and stores
    /// what it changed, with its audit events, in one commit.
    async fn apply<'a, T>(
        &self,
        account: &str,
        scope: impl FnOnce(Timestamp) -> SessionScope<'a>,
        domain: Option<&str>,
        op: impl FnOnce(&mut SessionTable, Timestamp) -> Result<T, ExposeError>,
    ) -> Result<T, SessionError> {
        let mut tx = self.inner.store.write().await?;
        let now = ids::now();
        let (decided, done) = self
            .decide(&mut tx, account, scope(now), domain, now, op)
            .await?;
        self.commit(tx, vec![decided]).await?;
        Ok(done?)
    }

    /// Runs `op` at `now` on the stored sessions of `account` in `scope`
    /// and writes what it changed, with its audit events, into `tx`.
    /// `domain`, when another account's live session holds it, is put in
    /// the table too, so that `op` tells the caller it is not theirs rather
    /// than that it does not exist; it is never changed.
    async fn decide<T>(
        &self,
        tx: &mut Tx,
        account: &str,
        scope: SessionScope<'_>,
        domain: Option<&str>,
        now: Timestamp,
        op: impl FnOnce(&mut SessionTable, Timestamp) -> Result<T, ExposeError>,
    ) -> Result<(Decided, Result<T, ExposeError>), SessionError> {
        let before = tx.expose_sessions(account, scope).await?;
        let mut table = self.table();
        for session in &before {
            table.restore(session.clone());
        }
        let mut foreign = None;
        if let Some(domain) = domain.filter(|_| before.is_empty()) {
            if let Some((holder, session)) = tx.expose_session(domain).await? {
                if holder != account && session.deadline > now {
                    foreign = Some(session.domain.clone());
                    table.restore(session);
                }
            }
        }
        let done = op(&mut table, now);
        let after: Vec<Session> = table
            .sessions()
            .filter(|s| Some(&s.domain) != foreign.as_ref())
            .cloned()
            .collect();
        let version = write_back(tx, account, &before, &after).await?;
        let events: Vec<ExposeEvent> = std::iter::from_fn(|| table.poll_event()).collect();
        for event in &events {
            audit(tx, account, event).await?;
        }
        let decided = Decided {
            account: account.to_string(),
            before,
            after,
            events,
            version,
        };
        Ok((decided, done))
    }

    /// Commits `tx`, then brings the replica to what it `decided` and
    /// announces the accounts whose sessions began or ended.
    async fn commit(&self, tx: Tx, decided: Vec<Decided>) -> Result<(), StoreError> {
        // The replica follows the commit under the refresh lock, so a
        // reload that read before this commit cannot land after it.
        let refreshing = self.inner.refreshing.lock().await;
        tx.commit().await?;
        let changed: BTreeSet<&str> = {
            let mut replica = self.replica();
            decided
                .iter()
                .filter(|d| {
                    if let Some(version) = d.version {
                        replica.saw(&d.account, version);
                    }
                    replica.merge(&d.account, &d.before, &d.after)
                })
                .map(|d| d.account.as_str())
                .collect()
        };
        drop(refreshing);
        for event in decided.iter().flat_map(|d| &d.events) {
            log(event);
            crate::metrics::expose_session(match event.kind {
                ExposeEventKind::Exposed => "created",
                ExposeEventKind::Unexposed => "stopped",
                ExposeEventKind::Expired => "expired",
            });
        }
        for account in changed {
            // Nobody listening is fine: no view needs refreshing.
            let _ = self.inner.changes.send(account.to_string());
        }
        self.inner.wake.notify_one();
        Ok(())
    }

    /// Reads `accounts`' sessions from the store into the replica (all
    /// accounts' when `None`), and announces the accounts whose sessions
    /// began or ended. An account whose stored session version the replica
    /// holds already is not read again.
    async fn reload(&self, accounts: Option<Vec<String>>) -> Result<(), StoreError> {
        let refreshing = self.inner.refreshing.lock().await;
        let mut tx = self.inner.store.read().await?;
        let mut stored: Vec<(String, Option<i64>, Vec<Session>)> = Vec::new();
        match accounts {
            Some(accounts) => {
                for account in accounts {
                    // The version before the rows: rows newer than it only
                    // cost one more reload later.
                    let version = tx.expose_version(&account).await?;
                    if self.replica().versions.get(&account) == Some(&version) {
                        continue;
                    }
                    let sessions = tx.expose_sessions(&account, SessionScope::All).await?;
                    stored.push((account, Some(version), sessions));
                }
            }
            None => {
                let mut all: BTreeMap<String, Vec<Session>> = self
                    .replica()
                    .accounts
                    .keys()
                    .map(|a| (a.clone(), Vec::new()))
                    .collect();
                for (account, session) in tx.all_expose_sessions().await? {
                    all.entry(account).or_default().push(session);
                }
                self.replica().versions.clear();
                stored.extend(all.into_iter().map(|(a, s)| (a, None, s)));
            }
        }
        drop(tx);
        let changed: Vec<String> = {
            let mut replica = self.replica();
            stored
                .into_iter()
                .filter_map(|(account, version, sessions)| {
                    if let Some(version) = version {
                        replica.versions.insert(account.clone(), version);
                    }
                    replica.set(&account, &sessions).then_some(account)
                })
                .collect()
        };
        drop(refreshing);
        for account in changed {
            let _ = self.inner.changes.send(account);
        }
        self.inner.wake.notify_one();
        Ok(())
    }

    /// The id of every account whose sessions changed, as they change.
    pub fn changes(&self) -> broadcast::Receiver<String> {
        self.inner.changes.subscribe()
    }

    /// The active sessions of `account`, sorted by domain, and the
    /// replica's revision they were read at.
    pub async fn sessions(&self, account: &str) -> (Vec<Session>, u64) {
        let replica = self.replica();
        let sessions = replica
            .of(account)
            .map(|s| replica.served(account, s.clone()))
            .collect();
        (sessions, replica.revision)
    }

    /// `account` as the network maps see it (see [`Expose::granted`]),
    /// without a copy when it has no reverse-proxy peers: what the REST
    /// views of reachability (`accessible-peers`, the peer list's counts)
    /// must agree with.
    pub async fn as_mapped(&self, account: Arc<Account>) -> Arc<Account> {
        if proxy_peers(&account, &self.inner.config.proxy_group).is_empty() {
            account
        } else {
            Arc::new(self.granted(&account).await)
        }
    }

    /// `account` with the access its active sessions grant its proxy peers
    /// (see [`meshplane_core::expose::grants`]): what Sync maps are
    /// computed from.
    pub async fn granted(&self, account: &Account) -> Account {
        let proxies = proxy_peers(account, &self.inner.config.proxy_group);
        let targets: Vec<ExposeTarget> = self
            .replica()
            .of(account.id.as_str())
            .map(|s| ExposeTarget {
                peer: s.peer_id.clone(),
                port: s.port.get(),
            })
            .collect();
        grant(account, &proxies, &targets)
    }
}

/// Stores the difference between `before` and `after`, the sessions of
/// `account`: ended ones deleted, created ones inserted (refused when
/// another account holds the domain), renewed ones updated. When a session
/// began or ended, the account's raised session version.
async fn write_back(
    tx: &mut Tx,
    account: &str,
    before: &[Session],
    after: &[Session],
) -> Result<Option<i64>, SessionError> {
    let old: HashMap<&str, &Session> = before.iter().map(|s| (s.domain.as_str(), s)).collect();
    let new: HashMap<&str, &Session> = after.iter().map(|s| (s.domain.as_str(), s)).collect();
    let mut changed = false;
    for domain in old.keys().filter(|d| !new.contains_key(*d)) {
        changed |= tx.delete_expose_session(account, domain).await?;
    }
    for (domain, session) in &new {
        match old.get(domain) {
            None => {
                if !tx.insert_expose_session(account, session).await? {
                    return Err(ExposeError::DomainTaken.into());
                }
                changed = true;
            }
            Some(was) if was.deadline != session.deadline => {
                tx.renew_expose_session(account, session).await?;
            }
            Some(_) => {}
        }
    }
    if changed {
        Ok(Some(tx.raise_expose_version(account).await?))
    } else {
        Ok(None)
    }
}

/// Every session's begin and end in the server log (no secrets: the
/// event holds none).
fn log(event: &ExposeEvent) {
    tracing::info!(
        peer = %event.peer_id,
        domain = event.domain,
        event = ?event.kind,
        "expose session"
    );
}

/// Appends the audit event of a session of `account`.
async fn audit(tx: &mut Tx, account: &str, event: &ExposeEvent) -> Result<(), StoreError> {
    let initiator = match event.kind {
        ExposeEventKind::Expired => SYSTEM_INITIATOR,
        ExposeEventKind::Exposed | ExposeEventKind::Unexposed => event.peer_id.as_str(),
    };
    let details = meta([
        ("peer_name", event.peer_name.as_str()),
        ("domain", event.domain.as_str()),
        (
            "auth_enabled",
            if event.auth_enabled { "true" } else { "false" },
        ),
    ]);
    tx.append_event(account, |seq| {
        AuditEvent::new(
            seq.to_string(),
            event.at,
            event.kind.activity(),
            initiator,
            event.domain.as_str(),
            details,
        )
    })
    .await
}

/// Stores renewals in batches, forever: whatever arrived while the last
/// batch committed goes into the next transaction, so under load one
/// commit (one fsync on SQLite) serves hundreds of renewals.
async fn renew_in_batches(expose: Expose, mut pending: mpsc::Receiver<Renewal>) {
    let mut batch = Vec::with_capacity(RENEW_BATCH);
    while pending.recv_many(&mut batch, RENEW_BATCH).await > 0 {
        match expose.renew_all(&mut batch).await {
            Ok(results) => {
                for (renewal, result) in batch.drain(..).zip(results) {
                    // A caller that hung up needs no answer.
                    let _ = renewal.done.send(result.map_err(SessionError::from));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, renewals = batch.len(), "expose renewals not stored");
                for renewal in batch.drain(..) {
                    let _ = renewal.done.send(Err(e.clone()));
                }
            }
        }
    }
}

/// Expires sessions at their deadlines, forever.
async fn reap(expose: Expose) {
    loop {
        let next = expose.replica().next_deadline();
        match next {
            None => {
                expose.inner.wake.notified().await;
                continue;
            }
            Some(deadline) => {
                let wait = deadline.as_millis() - ids::now().as_millis();
                if wait > 0 {
                    let wait = StdDuration::from_millis(u64::try_from(wait).unwrap_or(0));
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = expose.inner.wake.notified() => continue,
                    }
                }
            }
        }
        let due = expose.replica().due(ids::now());
        for account in due {
            let expired = expose
                .apply(
                    &account,
                    |now| SessionScope::DueAt(now.as_millis()),
                    None,
                    |table, now| {
                        table.handle_timeout(now);
                        Ok(())
                    },
                )
                .await;
            if let Err(e) = expired {
                tracing::error!(error = %e, account, "expose sessions not expired; retrying");
                tokio::time::sleep(REAP_RETRY).await;
            }
        }
    }
}

/// Keeps the replica in step with the store: reloads the sessions of every
/// account a commit (this server's or, on PostgreSQL, another's) touched.
async fn follow(expose: Expose, mut changes: broadcast::Receiver<String>) {
    loop {
        let accounts = match changes.recv().await {
            Ok(account) => Some(vec![account]),
            // Lagged: any account may have changed.
            Err(RecvError::Lagged(_)) => None,
            Err(RecvError::Closed) => return,
        };
        if let Err(e) = expose.reload(accounts).await {
            // The next notice reads again; until then the replica is
            // behind, as when a notice is late.
            tracing::error!(error = %e, "expose sessions not reloaded");
        }
    }
}

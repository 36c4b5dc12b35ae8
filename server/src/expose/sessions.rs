//! The server's table of expose sessions, where it is kept, and the tasks
//! around it.
//!
//! The core's [`SessionTable`] decides everything (permission, limits,
//! names, TTLs, expiry). Each server holds one table in memory, behind a
//! mutex, together with the account of every exposing peer (the table
//! knows peers only by id); the Sync maps' grants, the proxies' service
//! tables and the REST views read it without a database round trip. What
//! differs by store is only where a decision is made and kept
//! ([`Persistence`], chosen at start):
//!
//! - **SQLite** (one server on its database): the table is all there is.
//!   Every operation runs on it directly and nothing is stored; audit
//!   events (111/112/113) go to a writer task that stores them in batches,
//!   so a burst of creates costs one transaction, not one each. A server
//!   start begins with an empty table: the seed's "a restart clears all
//!   sessions and services".
//! - **PostgreSQL** (servers sharing the database): sessions live in the
//!   store (`expose_sessions`) so a daemon whose next call lands on another
//!   server finds its session there, and the table is this server's
//!   replica of them. Every operation loads the sessions it decides about
//!   (the peer's for a create, one row for a renewal or stop, the account's
//!   for the reaper) in a write transaction holding the account's lock,
//!   restores them into a fresh table, runs the same table operation at
//!   the current time, and writes back what changed together with the audit
//!   events it produced; once that commits, the replica takes the result.
//!   Renewals are stored in batches, one transaction for all that arrive
//!   while the previous one commits. The lock makes the servers decide
//!   about one account one at a time, so the per-peer limit holds however
//!   many servers create at once, and a session ends exactly once, with one
//!   audit event, whoever ends it (a stop, a late renewal, a peer deletion
//!   or the reaper of any server).
//!
//! On PostgreSQL, creating or ending a session is also a change of its
//! account in the store, which reaches every other server through the
//! store's change notices (LISTEN/NOTIFY); each then reloads that account's
//! sessions into its replica, unless the account's session version (raised
//! by every create and end) shows it holds them already, as after its own
//! changes. Renewals announce nothing: another server's replica may hold
//! an older deadline, which only wakes its reaper early to find the session
//! renewed (and take the new deadline). The sessions live as long as the
//! cluster does: a restarting server loads them, and those whose daemons
//! stop renewing end by their TTL on any server.
//!
//! A create runs on a blocking thread, as a PIN or password is hashed
//! (tens of milliseconds) there ([`Expose::draft`]): in memory on the table
//! itself; for the store on a copy of the peer's sessions, outside any
//! transaction, after which the stored sessions
//! [`admit`](Expose::admit) the result, checking the limit and the domain
//! again.
//!
//! Every server runs a reaper that sleeps until the table's next deadline
//! (or until the table changes) and then expires the due sessions of each
//! account as above.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
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
use tokio::sync::{broadcast, mpsc, oneshot, Mutex, MutexGuard, Notify};

use super::senders::Senders;
use crate::domain::audit::meta;
use crate::ids;
use crate::store::{SessionScope, Store, StoreError, Tx};

/// The audit initiator of what the server does by itself (expiry).
const SYSTEM_INITIATOR: &str = "sys";
/// Most audit events written in one transaction (SQLite).
const AUDIT_BATCH: usize = 512;
/// Account-change notices a slow listener may fall behind by before it is
/// told it lagged (and must assume every account changed).
const CHANGE_BACKLOG: usize = 1024;
/// Sessions each peer may hold (SEMANTICS.md).
const MAX_SESSIONS_PER_PEER: usize = 10;
/// Renewals one transaction stores at most (PostgreSQL); renewals arriving
/// while one batch commits wait for the next.
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

/// An empty table with `config`'s settings.
fn table(config: &ExposeConfig) -> SessionTable {
    SessionTable::new(TableConfig {
        ttl: config.ttl,
        max_sessions_per_peer: MAX_SESSIONS_PER_PEER,
        proxy_domain: config.proxy_domain.to_string(),
    })
}

/// The table and what the shell keeps beside it.
#[derive(Debug)]
struct State {
    table: SessionTable,
    /// The account of every peer with at least one session.
    accounts: HashMap<PeerId, String>,
    /// Counts changes of the table (creates and ends, not renewals).
    revision: u64,
    /// Where each account's proxy says visitors reach it (the last one to
    /// open WatchServices on this server; kept while it reconnects).
    /// Service URLs use its scheme and port; an account without one gets
    /// HTTPS on 443.
    public: HashMap<String, PublicUrl>,
    /// Per account, the stored session version the table holds (see
    /// `Tx::expose_version`; PostgreSQL only).
    versions: HashMap<String, i64>,
}

impl State {
    /// `session` with the URL its account's proxy serves it at.
    fn served(&self, account: &str, mut session: Session) -> Session {
        let base = self.public.get(account).cloned().unwrap_or_default();
        session.url = base.service_url(&session.domain);
        session
    }

    /// The events the table produced, each with its account: a session
    /// that began is of `account`, the one the operation was about.
    fn drain(&mut self, account: &str) -> Vec<(String, ExposeEvent)> {
        let mut events = Vec::new();
        while let Some(event) = self.table.poll_event() {
            let owner = match event.kind {
                ExposeEventKind::Exposed => {
                    self.accounts
                        .insert(event.peer_id.clone(), account.to_string());
                    account.to_string()
                }
                ExposeEventKind::Unexposed | ExposeEventKind::Expired => self
                    .accounts
                    .get(&event.peer_id)
                    .cloned()
                    .unwrap_or_else(|| account.to_string()),
            };
            events.push((owner, event));
        }
        if !events.is_empty() {
            self.revision += 1;
        }
        for (_, event) in &events {
            self.unmap(&event.peer_id);
        }
        events
    }

    /// Forgets `peer`'s account once it holds no session.
    fn unmap(&mut self, peer: &PeerId) {
        if self.table.sessions_of(peer).next().is_none() {
            self.accounts.remove(peer);
        }
    }

    /// The sessions of `account`.
    fn of(&self, account: &str) -> Vec<Session> {
        let peers: BTreeSet<&PeerId> = self
            .accounts
            .iter()
            .filter(|(_, a)| a.as_str() == account)
            .map(|(p, _)| p)
            .collect();
        peers
            .into_iter()
            .flat_map(|p| self.table.sessions_of(p))
            .cloned()
            .collect()
    }

    /// Replaces `before`, sessions of `account` as the store held them, by
    /// `after`, the same ones now, without events (the server that made
    /// the change reported it); whether a session began or ended (a
    /// renewal alone is no change).
    fn merge(&mut self, account: &str, before: &[Session], after: &[Session]) -> bool {
        let kept: BTreeSet<&str> = after.iter().map(|s| s.domain.as_str()).collect();
        let mut changed = false;
        for gone in before.iter().filter(|s| !kept.contains(s.domain.as_str())) {
            if let Some(session) = self.table.forget(&gone.domain) {
                self.unmap(&session.peer_id);
                changed = true;
            }
        }
        for session in after {
            let held = self.table.get(&session.domain).map(|s| s.created_at);
            changed |= held != Some(session.created_at);
            self.accounts
                .insert(session.peer_id.clone(), account.to_string());
            self.table.restore(session.clone());
        }
        if changed {
            self.revision += 1;
        }
        changed
    }

    /// Puts `sessions` in place of all of `account`'s (see [`State::merge`]).
    fn set(&mut self, account: &str, sessions: &[Session]) -> bool {
        let before = self.of(account);
        self.merge(account, &before, sessions)
    }

    /// Notes that this server's own commit raised `account`'s session
    /// version to `version`: the table holds it if it held the one before
    /// (else a change of another server is still to be reloaded).
    fn saw(&mut self, account: &str, version: i64) {
        if self.versions.get(account) == Some(&(version - 1)) {
            self.versions.insert(account.to_string(), version);
        }
    }
}

/// Where the sessions are kept besides this server's table, chosen at
/// start by the store.
#[derive(Debug)]
enum Persistence {
    /// SQLite: only in the table; audit events for the batch writer.
    Memory { audit: mpsc::UnboundedSender<Audit> },
    /// PostgreSQL: in the store, the table being this server's replica;
    /// renewals for the batch writer.
    Stored { renewals: mpsc::Sender<Renewal> },
}

/// What one stored operation decided, for the replica once its
/// transaction commits.
#[derive(Debug)]
struct Decided {
    account: String,
    /// The stored sessions it read, and the same ones after it.
    before: Vec<Session>,
    after: Vec<Session>,
    /// Whether it read all of the account's sessions (the replica then
    /// drops any others it holds).
    whole: bool,
    events: Vec<ExposeEvent>,
    /// The account's session version it raised, if a session began or
    /// ended.
    version: Option<i64>,
}

/// What [`Expose::draft`] made.
#[derive(Debug)]
pub enum Drafted {
    /// A session created (in memory).
    Created(Session),
    /// A session for the store to [`admit`](Expose::admit).
    Draft(Session),
}

/// A renewal waiting for the next batch.
#[derive(Debug)]
struct Renewal {
    account: String,
    peer: PeerId,
    domain: String,
    done: oneshot::Sender<Result<Timestamp, SessionError>>,
}

#[derive(Debug)]
struct Inner {
    config: ExposeConfig,
    store: Store,
    /// An async mutex: a create in memory holds it while hashing a PIN or
    /// password (tens of milliseconds, on a blocking thread), and calls
    /// waiting meanwhile must not block the async workers.
    state: Mutex<State>,
    persistence: Persistence,
    /// Held while stored sessions are read into the table or a commit's
    /// result is put there, so an older read never replaces a newer one
    /// (PostgreSQL only).
    refreshing: Mutex<()>,
    /// Wakes the reaper: the earliest deadline may have moved.
    wake: Notify,
    /// The id of each account whose sessions changed.
    changes: broadcast::Sender<String>,
    /// Who may call.
    senders: Senders,
}

/// The handle every part of the server shares.
#[derive(Debug, Clone)]
pub struct Expose {
    inner: Arc<Inner>,
}

/// The receiving ends of a [`Persistence`], for its tasks.
enum Tasks {
    Memory(mpsc::UnboundedReceiver<Audit>),
    Stored(mpsc::Receiver<Renewal>, broadcast::Receiver<String>),
}

impl Expose {
    /// The table of sessions over `store`: empty on SQLite, the stored
    /// sessions on PostgreSQL; with the reaper and the tasks of its
    /// persistence running.
    pub async fn start(store: Store, config: ExposeConfig) -> Result<Expose, StoreError> {
        let mut state = State {
            table: table(&config),
            accounts: HashMap::new(),
            revision: 0,
            public: HashMap::new(),
            versions: HashMap::new(),
        };
        let (persistence, tasks) = if store.shared() {
            // Subscribed before the first read: a change committed
            // meanwhile is read again.
            let changes = store.changes();
            let mut tx = store.read().await?;
            for (account, session) in tx.all_expose_sessions().await? {
                state.accounts.insert(session.peer_id.clone(), account);
                state.table.restore(session);
            }
            drop(tx);
            let (renewals, pending) = mpsc::channel(RENEW_BACKLOG);
            (
                Persistence::Stored { renewals },
                Tasks::Stored(pending, changes),
            )
        } else {
            let (audit, pending) = mpsc::unbounded_channel();
            (Persistence::Memory { audit }, Tasks::Memory(pending))
        };
        let expose = Expose {
            inner: Arc::new(Inner {
                config,
                senders: Senders::start(store.clone()),
                store,
                state: Mutex::new(state),
                persistence,
                refreshing: Mutex::new(()),
                wake: Notify::new(),
                changes: broadcast::channel(CHANGE_BACKLOG).0,
            }),
        };
        match tasks {
            Tasks::Memory(pending) => {
                tokio::spawn(write_audit(expose.inner.store.clone(), pending));
            }
            Tasks::Stored(pending, changes) => {
                tokio::spawn(renew_in_batches(expose.clone(), pending));
                tokio::spawn(follow(expose.clone(), changes));
            }
        }
        tokio::spawn(reap(expose.clone()));
        Ok(expose)
    }

    /// Waits until every audit event so far is written: on shutdown, after
    /// the last connection ended (ending sessions) and before the store
    /// closes. (Stored sessions are audited in their own commits.)
    pub async fn flush_audit(&self) {
        let Persistence::Memory { audit } = &self.inner.persistence else {
            return;
        };
        let (done, written) = oneshot::channel();
        if audit.send(Audit::Flush(done)).is_ok() {
            let _ = written.await;
        }
    }

    pub fn config(&self) -> &ExposeConfig {
        &self.inner.config
    }

    /// The checks of a call's sender.
    pub fn senders(&self) -> &Senders {
        &self.inner.senders
    }

    async fn state(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().await
    }

    /// Creates a session of the peer in `ctx`, of `account`: in memory on
    /// the table itself; for the store on a copy of the peer's sessions as
    /// this server knows them, a draft that still has to be
    /// [`admit`](Self::admit)ted. Hashes a PIN or password (argon2, tens of
    /// milliseconds) and blocks on the table's lock: call it on a blocking
    /// thread.
    pub fn draft(
        &self,
        account: &str,
        ctx: &ExposeContext<'_>,
        request: &ExposeRequest,
    ) -> Result<Drafted, ExposeError> {
        let Persistence::Memory { audit } = &self.inner.persistence else {
            let mut copy = table(&self.inner.config);
            for session in self
                .inner
                .state
                .blocking_lock()
                .table
                .sessions_of(&ctx.peer.id)
            {
                copy.restore(session.clone());
            }
            return Ok(Drafted::Draft(copy.create(
                ctx,
                request,
                &mut OsRng,
                ids::now(),
            )?));
        };
        let mut state = self.inner.state.blocking_lock();
        let created = state.table.create(ctx, request, &mut OsRng, ids::now());
        let events = state.drain(account);
        let created = created.map(|session| state.served(account, session));
        drop(state);
        self.settle(audit, events);
        Ok(Drafted::Created(created?))
    }

    /// Adds a [`draft`](Self::draft)ed session of `account`: refused with
    /// the limit if the peer reached it meanwhile, and with `DomainTaken`
    /// if its domain was taken meanwhile (draft again).
    pub async fn admit(&self, account: &str, session: Session) -> Result<Session, SessionError> {
        let peer = session.peer_id.clone();
        let admitted = self
            .apply(
                account,
                SessionScope::Peer(peer.as_str()),
                None,
                |table, now| table.admit(session, now),
            )
            .await?;
        Ok(self.state().await.served(account, admitted))
    }

    /// Records where `account`'s proxy is reached, for the URLs of its
    /// services from now on.
    pub async fn set_public_url(&self, account: &str, url: PublicUrl) {
        self.state().await.public.insert(account.to_string(), url);
    }

    /// Renews `peer`'s session on `domain`; its new deadline. Stored
    /// renewals go in batches (see [`renew_in_batches`]).
    pub async fn renew(
        &self,
        account: &str,
        peer: &PeerId,
        domain: &str,
    ) -> Result<Timestamp, SessionError> {
        let Persistence::Stored { renewals } = &self.inner.persistence else {
            return self
                .apply(
                    account,
                    SessionScope::Domain(domain),
                    Some(domain),
                    |table, now| table.renew(peer, domain, now),
                )
                .await;
        };
        let (done, renewed) = oneshot::channel();
        let renewal = Renewal {
            account: account.to_string(),
            peer: peer.clone(),
            domain: domain.to_string(),
            done,
        };
        // The batch writer runs as long as the runtime does.
        let stopping = |_| SessionError::Stopping;
        renewals.send(renewal).await.map_err(stopping)?;
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
            SessionScope::Domain(domain),
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
        let accounts = match &self.inner.persistence {
            Persistence::Memory { .. } => {
                let state = self.state().await;
                state.accounts.get(peer).cloned().into_iter().collect()
            }
            Persistence::Stored { .. } => {
                let mut tx = self.inner.store.read().await?;
                tx.expose_accounts_of(peer.as_str()).await?
            }
        };
        for account in accounts {
            self.apply(
                &account,
                SessionScope::Peer(peer.as_str()),
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

    /// Runs `op` at the current time on the sessions of `account`: on the
    /// table itself in memory; in the store on those in `scope` (the ones
    /// `op` decides about, see [`Expose::decide`]), then on the table.
    /// Publishes what changed.
    async fn apply<T>(
        &self,
        account: &str,
        scope: SessionScope<'_>,
        domain: Option<&str>,
        op: impl FnOnce(&mut SessionTable, Timestamp) -> Result<T, ExposeError>,
    ) -> Result<T, SessionError> {
        let Persistence::Memory { audit } = &self.inner.persistence else {
            let mut tx = self.inner.store.write().await?;
            let now = ids::now();
            let (decided, done) = self
                .decide(&mut tx, account, scope, domain, now, op)
                .await?;
            self.commit(tx, vec![decided]).await?;
            return Ok(done?);
        };
        let mut state = self.state().await;
        let done = op(&mut state.table, ids::now());
        let events = state.drain(account);
        drop(state);
        self.settle(audit, events);
        Ok(done?)
    }

    /// Publishes the `events` of the table in memory and hands them to the
    /// audit writer.
    fn settle(&self, audit: &mpsc::UnboundedSender<Audit>, events: Vec<(String, ExposeEvent)>) {
        let touched: BTreeSet<String> = events.iter().map(|(a, _)| a.clone()).collect();
        self.publish(events.iter().map(|(_, e)| e), touched);
        for (account, event) in events {
            // The writer only stops with the runtime.
            let _ = audit.send(Audit::Event(account, event));
        }
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
        let mut table = table(&self.inner.config);
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
            whole: matches!(scope, SessionScope::All),
            events,
            version,
        };
        Ok((decided, done))
    }

    /// Commits `tx`, then brings the table to what it `decided` and
    /// publishes the changes.
    async fn commit(&self, tx: Tx, decided: Vec<Decided>) -> Result<(), StoreError> {
        // The table follows the commit under the refresh lock, so a reload
        // that read before this commit cannot land after it.
        let refreshing = self.inner.refreshing.lock().await;
        tx.commit().await?;
        let changed: BTreeSet<String> = {
            let mut state = self.state().await;
            decided
                .iter()
                .filter(|d| {
                    if let Some(version) = d.version {
                        state.saw(&d.account, version);
                    }
                    if d.whole {
                        state.set(&d.account, &d.after)
                    } else {
                        state.merge(&d.account, &d.before, &d.after)
                    }
                })
                .map(|d| d.account.clone())
                .collect()
        };
        drop(refreshing);
        self.publish(decided.iter().flat_map(|d| &d.events), changed);
        Ok(())
    }

    /// Logs and counts `events`, announces the `changed` accounts, and
    /// wakes the reaper; nothing when neither is there (a renewal).
    fn publish<'a>(
        &self,
        events: impl Iterator<Item = &'a ExposeEvent>,
        changed: BTreeSet<String>,
    ) {
        let mut any = !changed.is_empty();
        for event in events {
            any = true;
            log(event);
            crate::metrics::expose_session(match event.kind {
                ExposeEventKind::Exposed => "created",
                ExposeEventKind::Unexposed => "stopped",
                ExposeEventKind::Expired => "expired",
            });
        }
        if !any {
            return;
        }
        for account in changed {
            // Nobody listening is fine: no view needs refreshing.
            let _ = self.inner.changes.send(account);
        }
        self.inner.wake.notify_one();
    }

    /// Reads `accounts`' stored sessions into the table (all accounts'
    /// when `None`), and announces the accounts whose sessions began or
    /// ended. An account whose stored session version the table holds
    /// already is not read again.
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
                    if self.state().await.versions.get(&account) == Some(&version) {
                        continue;
                    }
                    let sessions = tx.expose_sessions(&account, SessionScope::All).await?;
                    stored.push((account, Some(version), sessions));
                }
            }
            None => {
                let mut all: BTreeMap<String, Vec<Session>> = {
                    let mut state = self.state().await;
                    state.versions.clear();
                    state
                        .accounts
                        .values()
                        .map(|a| (a.clone(), Vec::new()))
                        .collect()
                };
                for (account, session) in tx.all_expose_sessions().await? {
                    all.entry(account).or_default().push(session);
                }
                stored.extend(all.into_iter().map(|(a, s)| (a, None, s)));
            }
        }
        drop(tx);
        let changed: BTreeSet<String> = {
            let mut state = self.state().await;
            stored
                .into_iter()
                .filter_map(|(account, version, sessions)| {
                    if let Some(version) = version {
                        state.versions.insert(account.clone(), version);
                    }
                    state.set(&account, &sessions).then_some(account)
                })
                .collect()
        };
        drop(refreshing);
        self.publish(std::iter::empty(), changed);
        Ok(())
    }

    /// The id of every account whose sessions changed, as they change.
    pub fn changes(&self) -> broadcast::Receiver<String> {
        self.inner.changes.subscribe()
    }

    /// The active sessions of `account`, sorted by domain, and the table's
    /// revision they were read at.
    pub async fn sessions(&self, account: &str) -> (Vec<Session>, u64) {
        let state = self.state().await;
        let sessions = state
            .table
            .sessions()
            .filter(|s| state.accounts.get(&s.peer_id).map(String::as_str) == Some(account))
            .map(|s| state.served(account, s.clone()))
            .collect();
        (sessions, state.revision)
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
        let targets: Vec<ExposeTarget> = {
            let state = self.state().await;
            let peers: BTreeMap<&PeerId, &String> = state
                .accounts
                .iter()
                .filter(|(_, a)| a.as_str() == account.id.as_str())
                .collect();
            peers
                .keys()
                .flat_map(|p| state.table.sessions_of(p))
                .map(|s| ExposeTarget {
                    peer: s.peer_id.clone(),
                    port: s.port.get(),
                })
                .collect()
        };
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

/// Expires sessions at their deadlines, forever: the due sessions of one
/// account at a time (in memory the first expires all that are due).
async fn reap(expose: Expose) {
    loop {
        let next = expose.state().await.table.poll_timeout();
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
        let due: BTreeSet<String> = {
            let state = expose.state().await;
            state
                .table
                .due(ids::now())
                .filter_map(|s| state.accounts.get(&s.peer_id).cloned())
                .collect()
        };
        for account in due {
            // All the account's stored sessions: the table may hold an
            // older deadline of one another server renewed, or one it
            // ended.
            let expired = expose
                .apply(&account, SessionScope::All, None, |table, now| {
                    table.handle_timeout(now);
                    Ok(())
                })
                .await;
            if let Err(e) = expired {
                tracing::error!(error = %e, account, "expose sessions not expired; retrying");
                tokio::time::sleep(REAP_RETRY).await;
            }
        }
    }
}

/// Stores renewals in batches, forever: whatever arrived while the last
/// batch committed goes into the next transaction, so under load one
/// commit serves hundreds of renewals.
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

/// Keeps the table in step with the store: reloads the sessions of every
/// account a commit (this server's or another's) touched.
async fn follow(expose: Expose, mut changes: broadcast::Receiver<String>) {
    loop {
        let accounts = match changes.recv().await {
            Ok(account) => Some(vec![account]),
            // Lagged: any account may have changed.
            Err(RecvError::Lagged(_)) => None,
            Err(RecvError::Closed) => return,
        };
        if let Err(e) = expose.reload(accounts).await {
            // The next notice reads again; until then the table is behind,
            // as when a notice is late.
            tracing::error!(error = %e, "expose sessions not reloaded");
        }
    }
}

/// What the audit writer receives (SQLite).
#[derive(Debug)]
enum Audit {
    /// An event of the table, with its account.
    Event(String, ExposeEvent),
    /// Answer once every event sent before has been written.
    Flush(oneshot::Sender<()>),
}

/// Writes the audit events of the table, in batches, in order.
async fn write_audit(store: Store, mut pending: mpsc::UnboundedReceiver<Audit>) {
    let mut received = Vec::new();
    let mut batch = Vec::new();
    while pending.recv_many(&mut received, AUDIT_BATCH).await > 0 {
        let mut flushed = Vec::new();
        for item in received.drain(..) {
            match item {
                Audit::Event(account, event) => batch.push((account, event)),
                Audit::Flush(done) => flushed.push(done),
            }
        }
        if !batch.is_empty() {
            if let Err(e) = append(&store, &batch).await {
                tracing::error!(error = %e, events = batch.len(), "expose events not audited");
            }
            batch.clear();
        }
        for done in flushed {
            let _ = done.send(());
        }
    }
}

async fn append(store: &Store, batch: &[(String, ExposeEvent)]) -> Result<(), StoreError> {
    let mut tx = store.write().await?;
    for (account, event) in batch {
        audit(&mut tx, account, event).await?;
    }
    tx.commit().await
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

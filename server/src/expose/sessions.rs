//! The server's one table of expose sessions, and the tasks around it.
//!
//! The core's [`SessionTable`] decides everything (permission, limits,
//! names, TTLs); this shell owns it behind a mutex and
//!
//! - remembers which account each exposing peer belongs to (the table keys
//!   sessions by domain and knows peers only by id);
//! - runs a reaper that sleeps until the table's next deadline (or until
//!   the table changes) and expires sessions at exactly that instant;
//! - after every table call, hands the drained events to an audit writer
//!   task (111/112/113, written in batches so a burst of creates costs one
//!   transaction, not one each) and announces the accounts whose sessions
//!   changed, which recomputes their maps and service tables.
//!
//! Nothing is persisted: a server start begins with an empty table, which
//! is the seed's "a restart clears all sessions and services".

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
use tokio::sync::{broadcast, mpsc, oneshot, Mutex, MutexGuard, Notify};

use super::senders::Senders;
use crate::domain::audit::meta;
use crate::ids;
use crate::store::{Store, StoreError};

/// The audit initiator of what the server does by itself (expiry).
const SYSTEM_INITIATOR: &str = "sys";
/// Most audit events written in one transaction.
const AUDIT_BATCH: usize = 512;
/// Account-change notices a slow listener may fall behind by before it is
/// told it lagged (and must assume every account changed).
const CHANGE_BACKLOG: usize = 1024;
/// Sessions each peer may hold (SEMANTICS.md).
const MAX_SESSIONS_PER_PEER: usize = 10;

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

/// The table and what the shell keeps beside it.
#[derive(Debug)]
struct State {
    table: SessionTable,
    /// The account of every peer with at least one session.
    accounts: HashMap<PeerId, String>,
    /// Counts changes of the table (creates and ends, not renewals).
    revision: u64,
    /// Where each account's proxy says visitors reach it (the last one to
    /// open WatchServices; kept while it reconnects). Service URLs use its
    /// scheme and port; an account without one gets HTTPS on 443.
    public: HashMap<String, PublicUrl>,
}

impl State {
    /// `session` with the URL its account's proxy serves it at.
    fn served(&self, account: &str, mut session: Session) -> Session {
        let base = self.public.get(account).cloned().unwrap_or_default();
        session.url = base.service_url(&session.domain);
        session
    }
}

#[derive(Debug)]
struct Inner {
    config: ExposeConfig,
    /// An async mutex: a create holds it while hashing a PIN or password
    /// (tens of milliseconds, on a blocking thread), and calls waiting
    /// meanwhile must not block the async workers.
    state: Mutex<State>,
    /// Wakes the reaper: the earliest deadline may have moved.
    wake: Notify,
    /// The id of each account whose sessions changed.
    changes: broadcast::Sender<String>,
    /// Events (with their account) for the audit writer.
    audit: mpsc::UnboundedSender<Audit>,
    /// Who may call.
    senders: Senders,
}

/// The handle every part of the server shares.
#[derive(Debug, Clone)]
pub struct Expose {
    inner: Arc<Inner>,
}

impl Expose {
    /// An empty table over `store` (for the audit log), with its reaper
    /// and audit writer running.
    pub fn start(store: Store, config: ExposeConfig) -> Expose {
        let table = SessionTable::new(TableConfig {
            ttl: config.ttl,
            max_sessions_per_peer: MAX_SESSIONS_PER_PEER,
            proxy_domain: config.proxy_domain.to_string(),
        });
        let (audit, pending) = mpsc::unbounded_channel();
        let expose = Expose {
            inner: Arc::new(Inner {
                config,
                state: Mutex::new(State {
                    table,
                    accounts: HashMap::new(),
                    revision: 0,
                    public: HashMap::new(),
                }),
                wake: Notify::new(),
                changes: broadcast::channel(CHANGE_BACKLOG).0,
                audit,
                senders: Senders::start(store.clone()),
            }),
        };
        tokio::spawn(write_audit(store, pending));
        tokio::spawn(reap(expose.clone()));
        expose
    }

    /// Waits until every audit event so far is written: on shutdown, after
    /// the last connection ended (ending sessions) and before the store
    /// closes.
    pub async fn flush_audit(&self) {
        let (done, written) = oneshot::channel();
        if self.inner.audit.send(Audit::Flush(done)).is_ok() {
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

    /// Creates a session of the peer in `ctx`, of `account`. Hashes a PIN or
    /// password (argon2, tens of milliseconds) and blocks on the table:
    /// call it on a blocking thread.
    pub fn create(
        &self,
        account: &str,
        ctx: &ExposeContext<'_>,
        request: &ExposeRequest,
    ) -> Result<Session, ExposeError> {
        let mut state = self.inner.state.blocking_lock();
        let created = state
            .table
            .create(ctx, request, &mut OsRng, ids::now())
            .map(|session| state.served(account, session));
        if created.is_ok() {
            state
                .accounts
                .insert(ctx.peer.id.clone(), account.to_string());
        }
        self.settle(state);
        created
    }

    /// Records where `account`'s proxy is reached, for the URLs of its
    /// services from now on.
    pub async fn set_public_url(&self, account: &str, url: PublicUrl) {
        self.state().await.public.insert(account.to_string(), url);
    }

    /// Renews `peer`'s session on `domain`; its new deadline.
    pub async fn renew(&self, peer: &PeerId, domain: &str) -> Result<Timestamp, ExposeError> {
        let mut state = self.state().await;
        let renewed = state.table.renew(peer, domain, ids::now());
        self.settle(state);
        renewed
    }

    /// Stops `peer`'s session on `domain`.
    pub async fn stop(&self, peer: &PeerId, domain: &str) -> Result<(), ExposeError> {
        let mut state = self.state().await;
        let stopped = state.table.stop(peer, domain, ids::now());
        self.settle(state);
        stopped
    }

    /// Ends every session of a deleted peer.
    pub async fn remove_peer(&self, peer: &PeerId) {
        let mut state = self.state().await;
        state.table.remove_peer(peer, ids::now());
        self.settle(state);
    }

    /// Drains the table's events: audit, account notices, reaper wake-up.
    fn settle(&self, mut state: MutexGuard<'_, State>) {
        let mut events = Vec::new();
        while let Some(event) = state.table.poll_event() {
            let account = state.accounts.get(&event.peer_id).cloned();
            events.push((account, event));
        }
        if events.is_empty() {
            return;
        }
        state.revision += 1;
        for (_, event) in &events {
            if state.table.sessions_of(&event.peer_id).next().is_none() {
                state.accounts.remove(&event.peer_id);
            }
        }
        drop(state);
        let mut touched = BTreeSet::new();
        for (account, event) in events {
            let Some(account) = account else {
                tracing::warn!(peer = %event.peer_id, "expose event of a peer without account");
                continue;
            };
            log(&event);
            crate::metrics::expose_session(match event.kind {
                ExposeEventKind::Exposed => "created",
                ExposeEventKind::Unexposed => "stopped",
                ExposeEventKind::Expired => "expired",
            });
            // The writer only stops with the runtime.
            let _ = self.inner.audit.send(Audit::Event(account.clone(), event));
            touched.insert(account);
        }
        for account in touched {
            // Nobody listening is fine: no view needs refreshing.
            let _ = self.inner.changes.send(account);
        }
        self.inner.wake.notify_one();
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

/// Expires sessions at their deadlines, forever.
async fn reap(expose: Expose) {
    loop {
        let next = expose.state().await.table.poll_timeout();
        match next {
            None => expose.inner.wake.notified().await,
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
        let mut state = expose.state().await;
        state.table.handle_timeout(ids::now());
        expose.settle(state);
    }
}

/// What the audit writer receives.
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
        .await?;
    }
    tx.commit().await
}

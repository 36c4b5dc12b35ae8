//! The store: sqlx over SQLite (embedded, WAL) or PostgreSQL, chosen by URL.
//!
//! Every resource is one row of `objects` holding the JSON of its core model
//! type, keyed by (account, kind, id). Secrets are found through `secrets`
//! (hash -> owner) and the audit log is `events`. One request's writes happen
//! in one transaction; writers are serialised inside the process so that a
//! read-check-write sequence never races another request, and SQLite runs
//! with `synchronous = FULL` so an acknowledged commit survives `kill -9`.
//!
//! Write transactions have a connection of their own, apart from the pool
//! readers share: however many reads are in flight, the one writer never
//! queues behind them for a connection (SQLite's WAL lets the readers go on
//! while it writes).
//!
//! Several servers may share one PostgreSQL database: a write transaction
//! takes a transaction-scoped advisory lock on each account before it first
//! reads or writes it, so read-check-write sequences of different processes
//! on one account run one after the other (SQLite has one writer anyway).
//! Each committed write raises the account's row in `account_versions`,
//! which lets readers reuse an account they decoded before ([`Snapshots`]),
//! and is announced to the live views of every server ([`notify`]).

mod expose_sessions;
mod notify;
mod snapshots;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use meshplane_core::model::Account;
use serde::de::DeserializeOwned;
use serde::Serialize;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyPool, Executor, Row, Transaction};
use thiserror::Error;
use tokio::sync::{broadcast, Mutex, OwnedMutexGuard};
use tokio::task::AbortHandle;

pub use expose_sessions::SessionScope;
use notify::Changes;
pub use snapshots::{Change, Snapshots};

/// How many committed-write notices a slow listener may fall behind before
/// it is told it lagged (and must assume every account changed).
const CHANGE_BACKLOG: usize = 1024;

/// Migrations shared by both backends (the SQL is portable).
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Pragmas every SQLite connection gets.
const SQLITE_PRAGMAS: &str =
    "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;";

/// Connections read transactions share, per backend.
const SQLITE_READERS: u32 = 4;
const POSTGRES_READERS: u32 = 8;

/// How many ids one `IN (…)` list binds: well under SQLite's limit of
/// bound parameters.
const IDS_PER_QUERY: usize = 500;

/// A failure of the database or of stored data.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data does not decode: {0}")]
    Decode(#[from] serde_json::Error),
}

/// A resource kept in the `objects` table.
pub trait Stored: Serialize + DeserializeOwned {
    /// The `kind` column value.
    const KIND: &'static str;
    /// The field of the stored JSON that holds [`Stored::label`].
    const LABEL: &'static str;
    /// Whether values of this kind are part of the decoded [`Account`]:
    /// writing one of another kind leaves an account carried forward by
    /// [`Tx::put_carried`] as it is.
    const IN_ACCOUNT: bool = true;
    /// The `id` column value.
    fn key(&self) -> &str;
    /// What the audit log calls it (its name, where it has one).
    fn label(&self) -> &str;
}

/// The connection pools plus the in-process writer lock.
#[derive(Debug, Clone)]
pub struct Store {
    /// Connections of read transactions.
    readers: AnyPool,
    /// The one connection of write transactions (taken under `writer`).
    writers: AnyPool,
    /// Whether the database is PostgreSQL (shared by several servers).
    postgres: bool,
    writer: Arc<Mutex<()>>,
    /// Accounts decoded by earlier reads, by version.
    accounts: Arc<Snapshots<Account>>,
    /// The id of each account a committed write transaction touched (by
    /// this server or, on PostgreSQL, another), so live views (the gRPC
    /// Sync streams) learn about every change.
    changed: Arc<Changes>,
    /// The task listening for other servers' commits (PostgreSQL only).
    listener: Option<AbortHandle>,
}

impl Store {
    /// Connects to `url` (`sqlite://…` or `postgres://…`) and applies pending
    /// migrations.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let sqlite = url.starts_with("sqlite:");
        // The writer's connection first: it creates a new SQLite file.
        let writers = connect(url, sqlite, 1).await?;
        MIGRATOR.run(&writers).await?;
        let readers = if sqlite {
            SQLITE_READERS
        } else {
            POSTGRES_READERS
        };
        let readers = connect(url, sqlite, readers).await?;
        let changed = Arc::new(Changes::new(CHANGE_BACKLOG));
        let listener = if sqlite {
            None
        } else {
            Some(notify::listen(url, changed.clone()).await?)
        };
        Ok(Store {
            readers,
            writers,
            postgres: !sqlite,
            writer: Arc::new(Mutex::new(())),
            accounts: Arc::default(),
            changed,
            listener,
        })
    }

    /// A transaction for reading.
    pub async fn read(&self) -> Result<Tx, StoreError> {
        Ok(Tx {
            tx: self.readers.begin().await?,
            postgres: self.postgres,
            _writer: None,
            changed: None,
            accounts: None,
            touched: BTreeSet::new(),
            carried: BTreeMap::new(),
            locked: None,
            _timer: TxTimer::start("read"),
        })
    }

    /// A transaction for writing; holds the writer lock until it ends.
    pub async fn write(&self) -> Result<Tx, StoreError> {
        let guard = self.writer.clone().lock_owned().await;
        Ok(Tx {
            tx: self.writers.begin().await?,
            postgres: self.postgres,
            _writer: Some(guard),
            changed: Some(self.changed.clone()),
            accounts: Some(self.accounts.clone()),
            touched: BTreeSet::new(),
            carried: BTreeMap::new(),
            locked: self.postgres.then(BTreeSet::new),
            _timer: TxTimer::start("write"),
        })
    }

    /// Whether other servers may share the database (PostgreSQL).
    pub fn shared(&self) -> bool {
        self.postgres
    }

    /// Accounts decoded by earlier reads (see [`Snapshots`]).
    pub fn accounts(&self) -> &Snapshots<Account> {
        &self.accounts
    }

    /// Receives the id of every account a write transaction changed, after
    /// its commit.
    pub fn changes(&self) -> broadcast::Receiver<String> {
        self.changed.subscribe()
    }

    /// Whether the database answers a query on one of its tables (for the
    /// health check): a reader connection and a round trip.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1 FROM _sqlx_migrations LIMIT 1")
            .execute(&self.readers)
            .await?;
        Ok(())
    }

    /// Closes every connection (used on shutdown).
    pub async fn close(&self) {
        if let Some(listener) = &self.listener {
            listener.abort();
        }
        self.readers.close().await;
        self.writers.close().await;
    }
}

/// A pool of at most `size` connections to `url`.
async fn connect(url: &str, sqlite: bool, size: u32) -> Result<AnyPool, StoreError> {
    let pool = AnyPoolOptions::new()
        .max_connections(size)
        .after_connect(move |conn, _meta| {
            Box::pin(async move {
                if sqlite {
                    conn.execute(SQLITE_PRAGMAS).await?;
                }
                Ok(())
            })
        })
        .connect(url)
        .await?;
    Ok(pool)
}

/// One transaction. Dropping it without [`Tx::commit`] rolls back.
#[derive(Debug)]
pub struct Tx {
    tx: Transaction<'static, Any>,
    /// Whether the database is PostgreSQL (where SQL differs).
    postgres: bool,
    _writer: Option<OwnedMutexGuard<()>>,
    /// Where the commit announces `touched` (write transactions only).
    changed: Option<Arc<Changes>>,
    /// Where the commit keeps the accounts it carries forward (write
    /// transactions only).
    accounts: Option<Arc<Snapshots<Account>>>,
    /// The accounts this transaction wrote to.
    touched: BTreeSet<String>,
    /// Per account written to, what its writes did to the decoded account
    /// when every one of them said so ([`Tx::put_carried`]).
    carried: BTreeMap<String, Carried>,
    /// The accounts whose advisory lock this transaction holds (PostgreSQL
    /// write transactions only; `None` where no lock is needed).
    locked: Option<BTreeSet<String>>,
    /// Times the transaction for the metrics, until commit or rollback.
    _timer: TxTimer,
}

/// What a write transaction's writes did to one decoded account.
enum Carried {
    /// These changes, on the version the transaction began on.
    Changes {
        before: i64,
        changes: Vec<Change<Account>>,
    },
    /// Something no change describes.
    Unknown,
}

impl std::fmt::Debug for Carried {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Carried::Changes { before, changes } => f
                .debug_struct("Changes")
                .field("before", before)
                .field("changes", &changes.len())
                .finish(),
            Carried::Unknown => f.write_str("Unknown"),
        }
    }
}

/// Records how long a transaction was open when it ends, committed or not.
#[derive(Debug)]
struct TxTimer {
    kind: &'static str,
    begun: std::time::Instant,
}

impl TxTimer {
    fn start(kind: &'static str) -> TxTimer {
        TxTimer {
            kind,
            begun: std::time::Instant::now(),
        }
    }
}

impl Drop for TxTimer {
    fn drop(&mut self) {
        crate::metrics::transaction(self.kind, self.begun);
    }
}

fn decode<T: DeserializeOwned>(row: &AnyRow) -> Result<T, StoreError> {
    let data: String = row.try_get("data")?;
    Ok(serde_json::from_str(&data)?)
}

/// The per-account counters a write transaction raises.
#[derive(Debug, Clone, Copy)]
enum Counter {
    /// `account_versions`: every committed write to the account.
    AccountVersions,
    /// `expose_versions`: every expose session begun or ended.
    ExposeVersions,
}

impl Tx {
    pub async fn commit(mut self) -> Result<(), StoreError> {
        let touched = std::mem::take(&mut self.touched);
        let mut versions = Vec::with_capacity(touched.len());
        for account in &touched {
            let version = self.raise(Counter::AccountVersions, account).await?;
            if self.postgres {
                notify::send(&mut self.tx, account, version).await?;
            }
            versions.push((account, version));
        }
        self.tx.commit().await?;
        if let Some(accounts) = &self.accounts {
            for (account, version) in &versions {
                if let Some(Carried::Changes { before, changes }) = self.carried.remove(*account) {
                    accounts.carry(account, before, *version, changes);
                }
            }
        }
        if let Some(changed) = self.changed {
            for (account, version) in versions {
                changed.announce(account, version);
            }
        }
        Ok(())
    }

    /// Raises `account`'s `counter` (from 0 when it has none); the new
    /// value.
    async fn raise(&mut self, counter: Counter, account: &str) -> Result<i64, StoreError> {
        let sql = match counter {
            Counter::AccountVersions => {
                "INSERT INTO account_versions (account_id, version) VALUES ($1, 1) \
                 ON CONFLICT (account_id) DO UPDATE SET version = account_versions.version + 1 \
                 RETURNING version"
            }
            Counter::ExposeVersions => {
                "INSERT INTO expose_versions (account_id, version) VALUES ($1, 1) \
                 ON CONFLICT (account_id) DO UPDATE SET version = expose_versions.version + 1 \
                 RETURNING version"
            }
        };
        let version = sqlx::query_scalar(sql)
            .bind(account)
            .fetch_one(&mut *self.tx)
            .await?;
        Ok(version)
    }

    /// Takes `account`'s advisory lock the first time this write
    /// transaction names the account (PostgreSQL only); it is released when
    /// the transaction ends. Every read and write naming an account calls
    /// this first, so the lock is held before anything is read.
    async fn lock(&mut self, account: &str) -> Result<(), StoreError> {
        let Some(locked) = &mut self.locked else {
            return Ok(());
        };
        if locked.insert(account.to_string()) {
            sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
                .bind(account)
                .execute(&mut *self.tx)
                .await?;
        }
        Ok(())
    }

    /// Whether this transaction wrote to `account` (its reads see changes
    /// no committed version holds).
    pub fn wrote(&self, account: &str) -> bool {
        self.touched.contains(account)
    }

    /// The account's version: raised by every committed write to it (0
    /// before the first).
    pub async fn version(&mut self, account: &str) -> Result<i64, StoreError> {
        self.lock(account).await?;
        let row = sqlx::query("SELECT version FROM account_versions WHERE account_id = $1")
            .bind(account)
            .fetch_optional(&mut *self.tx)
            .await?;
        row.map_or(Ok(0), |r| r.try_get::<i64, _>("version"))
            .map_err(StoreError::from)
    }

    /// One resource by id.
    pub async fn get<T: Stored>(
        &mut self,
        account: &str,
        id: &str,
    ) -> Result<Option<T>, StoreError> {
        self.lock(account).await?;
        let row =
            sqlx::query("SELECT data FROM objects WHERE account_id = $1 AND kind = $2 AND id = $3")
                .bind(account)
                .bind(T::KIND)
                .bind(id)
                .fetch_optional(&mut *self.tx)
                .await?;
        row.as_ref().map(decode).transpose()
    }

    /// The resources of a kind in an account whose ids are among `ids`,
    /// ordered by id; ids without one are left out. Costs what the ids
    /// cost, however large the account.
    pub async fn get_many<T: Stored>(
        &mut self,
        account: &str,
        ids: &[impl std::fmt::Display],
    ) -> Result<Vec<T>, StoreError> {
        self.lock(account).await?;
        let ids: BTreeSet<String> = ids.iter().map(ToString::to_string).collect();
        let ids: Vec<String> = ids.into_iter().collect();
        let mut found = Vec::new();
        for chunk in ids.chunks(IDS_PER_QUERY) {
            let marks: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 3)).collect();
            let sql = format!(
                "SELECT data FROM objects WHERE account_id = $1 AND kind = $2 AND id IN ({}) \
                 ORDER BY id",
                marks.join(", ")
            );
            let mut query = sqlx::query(&sql).bind(account).bind(T::KIND);
            for id in chunk {
                query = query.bind(id.as_str());
            }
            for row in query.fetch_all(&mut *self.tx).await? {
                found.push(decode(&row)?);
            }
        }
        Ok(found)
    }

    /// The resources of a kind in an account whose label field (see
    /// [`Stored::LABEL`]) is `label`. The match is made by the database on
    /// the stored JSON, so only matching rows are decoded.
    pub async fn labelled<T: Stored>(
        &mut self,
        account: &str,
        label: &str,
    ) -> Result<Vec<T>, StoreError> {
        self.lock(account).await?;
        // The field name is a constant of the type, never input.
        let field = if self.postgres {
            format!("CAST(data AS jsonb) ->> '{}'", T::LABEL)
        } else {
            format!("json_extract(data, '$.{}')", T::LABEL)
        };
        let sql = format!(
            "SELECT data FROM objects WHERE account_id = $1 AND kind = $2 AND {field} = $3 \
             ORDER BY id"
        );
        let rows = sqlx::query(&sql)
            .bind(account)
            .bind(T::KIND)
            .bind(label)
            .fetch_all(&mut *self.tx)
            .await?;
        let mut found = Vec::new();
        for row in &rows {
            let value: T = decode(row)?;
            if value.label() == label {
                found.push(value);
            }
        }
        Ok(found)
    }

    /// Every resource of a kind in an account, ordered by id.
    pub async fn list<T: Stored>(&mut self, account: &str) -> Result<Vec<T>, StoreError> {
        self.lock(account).await?;
        let rows =
            sqlx::query("SELECT data FROM objects WHERE account_id = $1 AND kind = $2 ORDER BY id")
                .bind(account)
                .bind(T::KIND)
                .fetch_all(&mut *self.tx)
                .await?;
        rows.iter().map(decode).collect()
    }

    /// The ids of every account that holds a resource of this kind.
    pub async fn accounts_with<T: Stored>(&mut self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT DISTINCT account_id FROM objects WHERE kind = $1 ORDER BY account_id",
        )
        .bind(T::KIND)
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter()
            .map(|r| {
                r.try_get::<String, _>("account_id")
                    .map_err(StoreError::from)
            })
            .collect()
    }

    /// Inserts or replaces a resource.
    pub async fn put<T: Stored>(&mut self, account: &str, value: &T) -> Result<(), StoreError> {
        let data = serde_json::to_string(value)?;
        self.put_json::<T>(account, value.key(), data).await
    }

    /// Stores `data`, the JSON of a `T` with id `key`.
    async fn put_json<T: Stored>(
        &mut self,
        account: &str,
        key: &str,
        data: String,
    ) -> Result<(), StoreError> {
        self.lock(account).await?;
        self.touch(account, T::IN_ACCOUNT);
        sqlx::query(
            "INSERT INTO objects (account_id, kind, id, data) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (account_id, kind, id) DO UPDATE SET data = excluded.data",
        )
        .bind(account)
        .bind(T::KIND)
        .bind(key)
        .bind(data)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// [`Tx::put`], saying where the value goes in the decoded account
    /// (`place` puts it there, as a reader would decode it): when every
    /// write of this transaction to `account` says so, the commit keeps the
    /// account it leaves without anyone decoding it ([`Snapshots::carry`]).
    pub async fn put_carried<T: Stored + Send + Sync + 'static>(
        &mut self,
        account: &str,
        value: &T,
        place: fn(&mut Account, &T),
    ) -> Result<(), StoreError> {
        let data = serde_json::to_string(value)?;
        let stored: T = serde_json::from_str(&data)?;
        let change: Change<Account> = Arc::new(move |a: &mut Account| place(a, &stored));
        let carried = match self.carried.remove(account) {
            None => Carried::Changes {
                before: self.version(account).await?,
                changes: Vec::new(),
            },
            Some(carried) => carried,
        };
        self.put_json::<T>(account, value.key(), data).await?;
        let carried = match carried {
            Carried::Changes {
                before,
                mut changes,
            } => {
                changes.push(change);
                Carried::Changes { before, changes }
            }
            Carried::Unknown => Carried::Unknown,
        };
        self.carried.insert(account.to_string(), carried);
        Ok(())
    }

    /// Notes a write to `account`; one that changes the decoded account
    /// without saying how ends its carrying.
    fn touch(&mut self, account: &str, in_account: bool) {
        self.touched.insert(account.to_string());
        if in_account {
            self.carried.insert(account.to_string(), Carried::Unknown);
        }
    }

    /// Deletes a resource and any secret pointing at it; true if it existed.
    pub async fn delete<T: Stored>(&mut self, account: &str, id: &str) -> Result<bool, StoreError> {
        self.lock(account).await?;
        self.touch(account, T::IN_ACCOUNT);
        sqlx::query("DELETE FROM secrets WHERE account_id = $1 AND kind = $2 AND id = $3")
            .bind(account)
            .bind(T::KIND)
            .bind(id)
            .execute(&mut *self.tx)
            .await?;
        let done =
            sqlx::query("DELETE FROM objects WHERE account_id = $1 AND kind = $2 AND id = $3")
                .bind(account)
                .bind(T::KIND)
                .bind(id)
                .execute(&mut *self.tx)
                .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Deletes everything an account holds, its audit log and traffic
    /// events included.
    pub async fn delete_account(&mut self, account: &str) -> Result<(), StoreError> {
        self.lock(account).await?;
        self.touch(account, true);
        for table in ["objects", "secrets", "events", "traffic_events"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE account_id = $1"))
                .bind(account)
                .execute(&mut *self.tx)
                .await?;
        }
        Ok(())
    }

    /// Records that the secret hashing to `hash` belongs to `value`.
    pub async fn put_secret<T: Stored>(
        &mut self,
        account: &str,
        hash: &str,
        value: &T,
    ) -> Result<(), StoreError> {
        self.lock(account).await?;
        sqlx::query("INSERT INTO secrets (hash, kind, account_id, id) VALUES ($1, $2, $3, $4)")
            .bind(hash)
            .bind(T::KIND)
            .bind(account)
            .bind(value.key())
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    /// The owner (account id, resource) of the secret hashing to `hash`.
    pub async fn find_secret<T: Stored>(
        &mut self,
        hash: &str,
    ) -> Result<Option<(String, T)>, StoreError> {
        let row = sqlx::query("SELECT account_id, id FROM secrets WHERE hash = $1 AND kind = $2")
            .bind(hash)
            .bind(T::KIND)
            .fetch_optional(&mut *self.tx)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let account: String = row.try_get("account_id")?;
        let id: String = row.try_get("id")?;
        Ok(self.get::<T>(&account, &id).await?.map(|v| (account, v)))
    }

    /// Appends an audit event; `make` receives the event's sequence number.
    pub async fn append_event<E: Serialize>(
        &mut self,
        account: &str,
        make: impl FnOnce(i64) -> E,
    ) -> Result<(), StoreError> {
        self.lock(account).await?;
        let row =
            sqlx::query("SELECT COALESCE(MAX(seq), 0) AS last FROM events WHERE account_id = $1")
                .bind(account)
                .fetch_one(&mut *self.tx)
                .await?;
        let seq = row.try_get::<i64, _>("last")? + 1;
        let data = serde_json::to_string(&make(seq))?;
        sqlx::query("INSERT INTO events (account_id, seq, data) VALUES ($1, $2, $3)")
            .bind(account)
            .bind(seq)
            .bind(data)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    /// Appends reported network-traffic events (see [`TrafficRow`]); a row
    /// whose id the account already holds is skipped. Answers how many
    /// were new.
    pub async fn append_traffic(
        &mut self,
        account: &str,
        rows: &[TrafficRow],
    ) -> Result<u64, StoreError> {
        let mut added = 0;
        for row in rows {
            let done = sqlx::query(
                "INSERT INTO traffic_events (account_id, id, reporter_id, user_id, timestamp_ms, data) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (account_id, id) DO NOTHING",
            )
            .bind(account)
            .bind(&row.id)
            .bind(&row.reporter_id)
            .bind(&row.user_id)
            .bind(row.timestamp_ms)
            .bind(&row.data)
            .execute(&mut *self.tx)
            .await?;
            added += done.rows_affected();
        }
        Ok(added)
    }

    /// An account's network-traffic events narrowed by `query`, as
    /// [`TrafficRow`]s ordered by time.
    pub async fn traffic(
        &mut self,
        account: &str,
        query: &TrafficQuery,
    ) -> Result<Vec<TrafficRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, reporter_id, user_id, timestamp_ms, data FROM traffic_events \
             WHERE account_id = $1 AND ($2 = '' OR reporter_id = $2) \
             AND ($3 = '' OR user_id = $3) AND timestamp_ms >= $4 AND timestamp_ms <= $5 \
             ORDER BY timestamp_ms, id",
        )
        .bind(account)
        .bind(query.reporter_id.as_deref().unwrap_or(""))
        .bind(query.user_id.as_deref().unwrap_or(""))
        .bind(query.from_ms)
        .bind(query.to_ms)
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(TrafficRow {
                    id: r.try_get("id")?,
                    reporter_id: r.try_get("reporter_id")?,
                    user_id: r.try_get("user_id")?,
                    timestamp_ms: r.try_get("timestamp_ms")?,
                    data: r.try_get("data")?,
                })
            })
            .collect()
    }

    /// An account's audit events, oldest first.
    pub async fn events<E: DeserializeOwned>(
        &mut self,
        account: &str,
    ) -> Result<Vec<E>, StoreError> {
        let rows = sqlx::query("SELECT data FROM events WHERE account_id = $1 ORDER BY seq")
            .bind(account)
            .fetch_all(&mut *self.tx)
            .await?;
        rows.iter().map(decode).collect()
    }
}

/// One stored network-traffic event: the columns the REST filters use in
/// SQL, and the rest of the event as JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrafficRow {
    pub id: String,
    pub reporter_id: String,
    /// The reporting peer's user, empty when it has none.
    pub user_id: String,
    pub timestamp_ms: i64,
    pub data: String,
}

/// What [`Tx::traffic`] narrows by: exact reporter and user (when given)
/// and an inclusive time window in ms since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrafficQuery {
    pub reporter_id: Option<String>,
    pub user_id: Option<String>,
    pub from_ms: i64,
    pub to_ms: i64,
}

//! The store: sqlx over SQLite (embedded, WAL) or PostgreSQL, chosen by URL.
//!
//! Every resource is one row of `objects` holding the JSON of its core model
//! type, keyed by (account, kind, id). Secrets are found through `secrets`
//! (hash -> owner) and the audit log is `events`. One request's writes happen
//! in one transaction; writers are serialised inside the process so that a
//! read-check-write sequence never races another request, and SQLite runs
//! with `synchronous = FULL` so an acknowledged commit survives `kill -9`.
//!
//! Several servers may share one PostgreSQL database: a write transaction
//! takes a transaction-scoped advisory lock on each account before it first
//! reads or writes it, so read-check-write sequences of different processes
//! on one account run one after the other (SQLite has one writer anyway).
//! Each committed write raises the account's row in `account_versions`,
//! which lets readers reuse an account they decoded before ([`Snapshots`]).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use meshplane_core::model::Account;
use serde::de::DeserializeOwned;
use serde::Serialize;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyPool, Executor, Row, Transaction};
use thiserror::Error;
use tokio::sync::{broadcast, Mutex, OwnedMutexGuard};

/// How many committed-write notices a slow listener may fall behind before
/// it is told it lagged (and must assume every account changed).
const CHANGE_BACKLOG: usize = 1024;

/// Migrations shared by both backends (the SQL is portable).
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Pragmas every SQLite connection gets.
const SQLITE_PRAGMAS: &str =
    "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;";

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
    /// The `id` column value.
    fn key(&self) -> &str;
    /// What the audit log calls it (its name, where it has one).
    fn label(&self) -> &str;
}

/// Values decoded from an account's rows, each kept with the account
/// version it was read at: a reader whose transaction sees the same version
/// reuses it instead of loading and decoding every row again.
#[derive(Debug)]
pub struct Snapshots<T> {
    kept: std::sync::Mutex<HashMap<String, (i64, Arc<T>)>>,
}

impl<T> Default for Snapshots<T> {
    fn default() -> Self {
        Snapshots {
            kept: std::sync::Mutex::new(HashMap::new()),
        }
    }
}

impl<T> Snapshots<T> {
    /// The value kept for `account` at exactly `version`.
    pub fn get(&self, account: &str, version: i64) -> Option<Arc<T>> {
        let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        kept.get(account)
            .filter(|(v, _)| *v == version)
            .map(|(_, value)| value.clone())
    }

    /// Keeps `value` as `account` at `version`, unless a newer one is kept.
    pub fn keep(&self, account: &str, version: i64, value: Arc<T>) {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        match kept.get(account) {
            Some((v, _)) if *v > version => {}
            _ => {
                kept.insert(account.to_string(), (version, value));
            }
        }
    }
}

/// A connection pool plus the in-process writer lock.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    /// Whether the database is PostgreSQL (shared by several servers).
    postgres: bool,
    writer: Arc<Mutex<()>>,
    /// Accounts decoded by earlier reads, by version.
    accounts: Arc<Snapshots<Account>>,
    /// The id of each account a committed write transaction touched, so
    /// live views (the gRPC Sync streams) learn about every change.
    changed: broadcast::Sender<String>,
}

impl Store {
    /// Connects to `url` (`sqlite://…` or `postgres://…`) and applies pending
    /// migrations.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let sqlite = url.starts_with("sqlite:");
        let pool = AnyPoolOptions::new()
            .max_connections(if sqlite { 4 } else { 8 })
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
        MIGRATOR.run(&pool).await?;
        Ok(Store {
            pool,
            postgres: !sqlite,
            writer: Arc::new(Mutex::new(())),
            accounts: Arc::default(),
            changed: broadcast::channel(CHANGE_BACKLOG).0,
        })
    }

    /// A transaction for reading.
    pub async fn read(&self) -> Result<Tx, StoreError> {
        Ok(Tx {
            tx: self.pool.begin().await?,
            _writer: None,
            changed: None,
            touched: BTreeSet::new(),
            locked: None,
        })
    }

    /// A transaction for writing; holds the writer lock until it ends.
    pub async fn write(&self) -> Result<Tx, StoreError> {
        let guard = self.writer.clone().lock_owned().await;
        Ok(Tx {
            tx: self.pool.begin().await?,
            _writer: Some(guard),
            changed: Some(self.changed.clone()),
            touched: BTreeSet::new(),
            locked: self.postgres.then(BTreeSet::new),
        })
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

    /// Closes every connection (used on shutdown).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// One transaction. Dropping it without [`Tx::commit`] rolls back.
#[derive(Debug)]
pub struct Tx {
    tx: Transaction<'static, Any>,
    _writer: Option<OwnedMutexGuard<()>>,
    /// Where the commit announces `touched` (write transactions only).
    changed: Option<broadcast::Sender<String>>,
    /// The accounts this transaction wrote to.
    touched: BTreeSet<String>,
    /// The accounts whose advisory lock this transaction holds (PostgreSQL
    /// write transactions only; `None` where no lock is needed).
    locked: Option<BTreeSet<String>>,
}

fn decode<T: DeserializeOwned>(row: &AnyRow) -> Result<T, StoreError> {
    let data: String = row.try_get("data")?;
    Ok(serde_json::from_str(&data)?)
}

impl Tx {
    pub async fn commit(mut self) -> Result<(), StoreError> {
        for account in &self.touched {
            sqlx::query(
                "INSERT INTO account_versions (account_id, version) VALUES ($1, 1) \
                 ON CONFLICT (account_id) DO UPDATE SET version = account_versions.version + 1",
            )
            .bind(account)
            .execute(&mut *self.tx)
            .await?;
        }
        self.tx.commit().await?;
        if let Some(changed) = self.changed {
            for account in self.touched {
                // Nobody listening is fine: no view needs refreshing.
                let _ = changed.send(account);
            }
        }
        Ok(())
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
        self.lock(account).await?;
        self.touched.insert(account.to_string());
        let data = serde_json::to_string(value)?;
        sqlx::query(
            "INSERT INTO objects (account_id, kind, id, data) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (account_id, kind, id) DO UPDATE SET data = excluded.data",
        )
        .bind(account)
        .bind(T::KIND)
        .bind(value.key())
        .bind(data)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// Deletes a resource and any secret pointing at it; true if it existed.
    pub async fn delete<T: Stored>(&mut self, account: &str, id: &str) -> Result<bool, StoreError> {
        self.lock(account).await?;
        self.touched.insert(account.to_string());
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
        self.touched.insert(account.to_string());
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

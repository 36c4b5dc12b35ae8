//! The store: sqlx over SQLite (embedded, WAL) or PostgreSQL, chosen by URL.
//!
//! Every resource is one row of `objects` holding the JSON of its core model
//! type, keyed by (account, kind, id). Secrets are found through `secrets`
//! (hash -> owner) and the audit log is `events`. One request's writes happen
//! in one transaction; writers are serialised inside the process so that a
//! read-check-write sequence never races another request, and SQLite runs
//! with `synchronous = FULL` so an acknowledged commit survives `kill -9`.

use std::collections::BTreeSet;
use std::sync::Arc;

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

/// A connection pool plus the in-process writer lock.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    writer: Arc<Mutex<()>>,
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
            writer: Arc::new(Mutex::new(())),
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
        })
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
}

fn decode<T: DeserializeOwned>(row: &AnyRow) -> Result<T, StoreError> {
    let data: String = row.try_get("data")?;
    Ok(serde_json::from_str(&data)?)
}

impl Tx {
    pub async fn commit(self) -> Result<(), StoreError> {
        self.tx.commit().await?;
        if let Some(changed) = self.changed {
            for account in self.touched {
                // Nobody listening is fine: no view needs refreshing.
                let _ = changed.send(account);
            }
        }
        Ok(())
    }

    /// One resource by id.
    pub async fn get<T: Stored>(
        &mut self,
        account: &str,
        id: &str,
    ) -> Result<Option<T>, StoreError> {
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

    /// Deletes everything an account holds, its audit log included.
    pub async fn delete_account(&mut self, account: &str) -> Result<(), StoreError> {
        self.touched.insert(account.to_string());
        for table in ["objects", "secrets", "events"] {
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

//! The `expose_sessions` table: the active expose sessions of every server
//! sharing the database, one row per service domain.
//!
//! Creating or ending a session is a change of its account (the commit
//! raises the account's version and, on PostgreSQL, notifies the other
//! servers), so every server's live views learn about it the way they
//! learn about any other write. A renewal only moves a deadline: it
//! changes no view and announces nothing.
//!
//! Reading an account's sessions in a write transaction takes the
//! account's lock first (see [`Tx::lock`]), so whatever decides about them
//! (a create, a renewal, the reaper on any server) does it one at a time.

use meshplane_core::expose::Session;
use sqlx::Row;

use super::{StoreError, Tx};

/// Which of an account's sessions a transaction reads: all of them, or
/// only those an operation decides about (a renewal needs one row, not the
/// account's thousands).
#[derive(Debug, Clone, Copy)]
pub enum SessionScope<'a> {
    All,
    /// The sessions of one peer (a create counts them against its limit).
    Peer(&'a str),
    /// The session on one domain.
    Domain(&'a str),
    /// The sessions whose deadline (ms) is at or before this instant.
    DueAt(i64),
}

fn decode(row: &sqlx::any::AnyRow) -> Result<Session, StoreError> {
    let data: String = row.try_get("data")?;
    Ok(serde_json::from_str(&data)?)
}

impl Tx {
    /// The sessions of `account` in `scope`, sorted by domain.
    pub async fn expose_sessions(
        &mut self,
        account: &str,
        scope: SessionScope<'_>,
    ) -> Result<Vec<Session>, StoreError> {
        self.lock(account).await?;
        let tx = &mut *self.tx;
        let rows =
            match scope {
                SessionScope::All => {
                    sqlx::query(
                        "SELECT data FROM expose_sessions WHERE account_id = $1 ORDER BY domain",
                    )
                    .bind(account)
                    .fetch_all(tx)
                    .await?
                }
                SessionScope::Peer(peer) => {
                    sqlx::query(
                        "SELECT data FROM expose_sessions WHERE account_id = $1 AND peer_id = $2 \
                     ORDER BY domain",
                    )
                    .bind(account)
                    .bind(peer)
                    .fetch_all(tx)
                    .await?
                }
                SessionScope::Domain(domain) => {
                    sqlx::query(
                        "SELECT data FROM expose_sessions WHERE account_id = $1 AND domain = $2",
                    )
                    .bind(account)
                    .bind(domain)
                    .fetch_all(tx)
                    .await?
                }
                SessionScope::DueAt(now) => sqlx::query(
                    "SELECT data FROM expose_sessions WHERE account_id = $1 AND deadline_ms <= $2 \
                     ORDER BY domain",
                )
                .bind(account)
                .bind(now)
                .fetch_all(tx)
                .await?,
            };
        rows.iter().map(decode).collect()
    }

    /// Every session, with its account.
    pub async fn all_expose_sessions(&mut self) -> Result<Vec<(String, Session)>, StoreError> {
        let rows = sqlx::query("SELECT account_id, data FROM expose_sessions ORDER BY domain")
            .fetch_all(&mut *self.tx)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("account_id")?, decode(r)?)))
            .collect()
    }

    /// The session on `domain`, with its account, whichever account holds it.
    pub async fn expose_session(
        &mut self,
        domain: &str,
    ) -> Result<Option<(String, Session)>, StoreError> {
        let row = sqlx::query("SELECT account_id, data FROM expose_sessions WHERE domain = $1")
            .bind(domain)
            .fetch_optional(&mut *self.tx)
            .await?;
        row.map(|r| Ok((r.try_get("account_id")?, decode(&r)?)))
            .transpose()
    }

    /// The accounts holding sessions of `peer`.
    pub async fn expose_accounts_of(&mut self, peer: &str) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT DISTINCT account_id FROM expose_sessions WHERE peer_id = $1 ORDER BY account_id",
        )
        .bind(peer)
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter()
            .map(|r| r.try_get("account_id").map_err(StoreError::from))
            .collect()
    }

    /// Adds a session of `account`; `false` when its domain is held
    /// already (by any account).
    pub async fn insert_expose_session(
        &mut self,
        account: &str,
        session: &Session,
    ) -> Result<bool, StoreError> {
        self.lock(account).await?;
        let done = sqlx::query(
            "INSERT INTO expose_sessions (domain, account_id, peer_id, deadline_ms, data) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (domain) DO NOTHING",
        )
        .bind(&session.domain)
        .bind(account)
        .bind(session.peer_id.as_str())
        .bind(session.deadline.as_millis())
        .bind(serde_json::to_string(session)?)
        .execute(&mut *self.tx)
        .await?;
        let inserted = done.rows_affected() == 1;
        if inserted {
            self.announce_to_other_servers(account);
        }
        Ok(inserted)
    }

    /// Stores the new deadline of a renewed session of `account`; `false`
    /// when the session is gone.
    pub async fn renew_expose_session(
        &mut self,
        account: &str,
        session: &Session,
    ) -> Result<bool, StoreError> {
        self.lock(account).await?;
        let done = sqlx::query(
            "UPDATE expose_sessions SET data = $1, deadline_ms = $2 \
             WHERE domain = $3 AND account_id = $4 AND peer_id = $5",
        )
        .bind(serde_json::to_string(session)?)
        .bind(session.deadline.as_millis())
        .bind(&session.domain)
        .bind(account)
        .bind(session.peer_id.as_str())
        .execute(&mut *self.tx)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Removes the session of `account` on `domain`; `false` when it was
    /// gone already.
    pub async fn delete_expose_session(
        &mut self,
        account: &str,
        domain: &str,
    ) -> Result<bool, StoreError> {
        self.lock(account).await?;
        let done = sqlx::query("DELETE FROM expose_sessions WHERE domain = $1 AND account_id = $2")
            .bind(domain)
            .bind(account)
            .execute(&mut *self.tx)
            .await?;
        let deleted = done.rows_affected() == 1;
        if deleted {
            self.announce_to_other_servers(account);
        }
        Ok(deleted)
    }

    /// Makes the commit raise `account`'s version, whose notice tells the
    /// other servers sharing a PostgreSQL database to reload its sessions.
    /// On SQLite no other server exists: this server's own views follow
    /// the session table's change broadcast, and raising the version would
    /// only throw away the account's cached decode (and the senders'
    /// cache) at every create and end, which costs a large account more
    /// than the session itself.
    fn announce_to_other_servers(&mut self, account: &str) {
        if self.postgres {
            self.touched.insert(account.to_string());
        }
    }

    /// Raises the counter of `account`'s session changes (see
    /// [`Tx::expose_version`]); the new value.
    pub async fn raise_expose_version(&mut self, account: &str) -> Result<i64, StoreError> {
        self.lock(account).await?;
        let version = sqlx::query_scalar(
            "INSERT INTO expose_versions (account_id, version) VALUES ($1, 1) \
             ON CONFLICT (account_id) DO UPDATE SET version = expose_versions.version + 1 \
             RETURNING version",
        )
        .bind(account)
        .fetch_one(&mut *self.tx)
        .await?;
        Ok(version)
    }

    /// How many times `account`'s sessions began or ended (0 before the
    /// first): a server that saw this count has nothing to reload.
    pub async fn expose_version(&mut self, account: &str) -> Result<i64, StoreError> {
        let version =
            sqlx::query_scalar("SELECT version FROM expose_versions WHERE account_id = $1")
                .bind(account)
                .fetch_optional(&mut *self.tx)
                .await?;
        Ok(version.unwrap_or(0))
    }

    /// Removes every session without a trace: a SQLite server starting
    /// (its sessions did not outlive it).
    pub async fn clear_expose_sessions(&mut self) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM expose_sessions")
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }
}

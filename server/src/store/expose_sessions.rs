//! The `expose_sessions` table: the active expose sessions of every server
//! sharing a PostgreSQL database, one row per service domain.
//!
//! Only servers on PostgreSQL read and write it (see
//! `crate::expose::sessions`): a SQLite server is alone on its database
//! and keeps its sessions in memory, so the table stays empty there.
//!
//! Creating or ending a session is a change of its account (the commit
//! raises the account's version and notifies the other servers), so every
//! server's live views learn about it the way they learn about any other
//! write. A renewal only moves a deadline: it changes no view and announces
//! nothing.
//!
//! Reading an account's sessions in a write transaction takes the
//! account's lock first (see [`Tx::lock`]), so whatever decides about them
//! (a create, a renewal, the reaper on any server) does it one at a time.

use meshplane_core::expose::Session;
use sqlx::Row;

use super::{decode, Counter, StoreError, Tx};

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
        let rows = match scope {
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
        let inserted = self
            .write_expose_session(
                "INSERT INTO expose_sessions (domain, account_id, peer_id, deadline_ms, data) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (domain) DO NOTHING",
                account,
                session,
            )
            .await?;
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
        self.write_expose_session(
            "UPDATE expose_sessions SET deadline_ms = $4, data = $5 \
             WHERE domain = $1 AND account_id = $2 AND peer_id = $3",
            account,
            session,
        )
        .await
    }

    /// Runs `sql` on `session` of `account` (bound as $1 domain, $2
    /// account, $3 peer, $4 deadline, $5 JSON); whether it wrote a row.
    async fn write_expose_session(
        &mut self,
        sql: &'static str,
        account: &str,
        session: &Session,
    ) -> Result<bool, StoreError> {
        self.lock(account).await?;
        let done = sqlx::query(sql)
            .bind(&session.domain)
            .bind(account)
            .bind(session.peer_id.as_str())
            .bind(session.deadline.as_millis())
            .bind(serde_json::to_string(session)?)
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
    /// other servers sharing the database to reload its sessions.
    fn announce_to_other_servers(&mut self, account: &str) {
        self.touched.insert(account.to_string());
    }

    /// Raises the counter of `account`'s session changes (see
    /// [`Tx::expose_version`]); the new value.
    pub async fn raise_expose_version(&mut self, account: &str) -> Result<i64, StoreError> {
        self.lock(account).await?;
        self.raise(Counter::ExposeVersions, account).await
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
}

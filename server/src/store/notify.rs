//! Commit notices, within one process and across the servers that share one
//! PostgreSQL database.
//!
//! Live views (the gRPC Sync hubs, the expose watch) follow the account ids
//! of [`Changes`]. A process announces its own commits there right after
//! they commit. On PostgreSQL every write transaction also sends a notice
//! `{"account", "version"}` on [`CHANNEL`] from inside the transaction, so
//! the database delivers it only if the transaction commits, and each
//! server holds one connection listening on that channel that announces
//! what the other servers committed. Versions make the two paths meet
//! without a second announcement: an account is announced only at a version
//! newer than the last one announced (a process hears its own notices too,
//! and a notice may arrive after a newer commit was already announced).
//!
//! Notices sent while the listening connection is down are lost, so after
//! reconnecting the listener compares every account's stored version with
//! the last one announced and announces each account that moved. A
//! listener that loses its connection retries with a growing pause.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::postgres::PgListener;
use sqlx::AnyConnection;
use tokio::sync::broadcast;
use tokio::task::AbortHandle;

use super::StoreError;

/// The PostgreSQL channel commit notices travel on.
const CHANNEL: &str = "meshplane_changes";

/// The pause before the first attempt to reconnect the listener; it
/// doubles after each failed attempt, up to [`LAST_RETRY`].
const FIRST_RETRY: Duration = Duration::from_millis(100);
const LAST_RETRY: Duration = Duration::from_secs(5);

/// What one commit notice says: `account` is now at `version`.
#[derive(Debug, Serialize, Deserialize)]
struct Notice {
    account: String,
    version: i64,
}

/// Where the store announces committed changes to this process's live
/// views, once per account version.
#[derive(Debug)]
pub(super) struct Changes {
    sender: broadcast::Sender<String>,
    /// Per account, the newest version announced.
    announced: Mutex<HashMap<String, i64>>,
}

impl Changes {
    /// `backlog` notices a slow receiver may fall behind before it is told
    /// it lagged (and must assume every account changed).
    pub(super) fn new(backlog: usize) -> Changes {
        Changes {
            sender: broadcast::channel(backlog).0,
            announced: Mutex::default(),
        }
    }

    pub(super) fn subscribe(&self) -> broadcast::Receiver<String> {
        self.sender.subscribe()
    }

    /// Announces that `account` committed `version`, unless this or a newer
    /// version was announced already.
    pub(super) fn announce(&self, account: &str, version: i64) {
        let mut announced = self
            .announced
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match announced.get_mut(account) {
            Some(last) if *last >= version => return,
            Some(last) => *last = version,
            None => {
                announced.insert(account.to_string(), version);
            }
        }
        // Nobody listening is fine: no view needs refreshing.
        let _ = self.sender.send(account.to_string());
    }
}

/// Sends the notice that `account` is at `version` from inside a write
/// transaction, which PostgreSQL delivers only if the transaction commits.
pub(super) async fn send(
    conn: &mut AnyConnection,
    account: &str,
    version: i64,
) -> Result<(), StoreError> {
    let notice = serde_json::to_string(&Notice {
        account: account.to_string(),
        version,
    })?;
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(notice)
        .execute(conn)
        .await?;
    Ok(())
}

/// Starts listening for the notices of the servers sharing the PostgreSQL
/// database at `url`. The first connection is made before this returns, so
/// a server that fails to listen fails to start, and one that starts hears
/// every commit from then on. The handle stops the listener.
pub(super) async fn listen(url: &str, changes: Arc<Changes>) -> Result<AbortHandle, sqlx::Error> {
    let listener = connect(url, &changes).await?;
    let task = tokio::spawn(follow(url.to_string(), changes, listener));
    Ok(task.abort_handle())
}

/// A listening connection, made after announcing every account whose
/// stored version is newer than the last one announced. (When the store
/// opens, nobody follows the changes yet: this only records the versions.)
async fn connect(url: &str, changes: &Changes) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect(url).await?;
    listener.listen(CHANNEL).await?;
    // Read after LISTEN: a commit is either in these rows or in a notice.
    let versions: Vec<(String, i64)> =
        sqlx::query_as("SELECT account_id, version FROM account_versions")
            .fetch_all(&mut listener)
            .await?;
    for (account, version) in versions {
        changes.announce(&account, version);
    }
    Ok(listener)
}

/// Announces the notices `listener` receives; reconnects whenever the
/// connection is lost. Runs until aborted.
async fn follow(url: String, changes: Arc<Changes>, mut listener: PgListener) {
    loop {
        let lost = receive(&changes, &mut listener).await;
        tracing::warn!(
            error = lost.as_ref().map(ToString::to_string),
            "change notices interrupted; reconnecting"
        );
        drop(listener);
        let mut pause = FIRST_RETRY;
        listener = loop {
            tokio::time::sleep(pause).await;
            match connect(&url, &changes).await {
                Ok(listener) => break listener,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for change notices");
                    pause = (pause * 2).min(LAST_RETRY);
                }
            }
        };
        tracing::info!("listening for change notices again");
    }
}

/// Announces notices until the connection is lost: `None` when it closed,
/// else the error.
async fn receive(changes: &Changes, listener: &mut PgListener) -> Option<sqlx::Error> {
    loop {
        match listener.try_recv().await {
            Ok(Some(notice)) => match serde_json::from_str::<Notice>(notice.payload()) {
                Ok(n) => changes.announce(&n.account, n.version),
                Err(e) => tracing::warn!(error = %e, "a change notice that does not decode"),
            },
            Ok(None) => return None,
            Err(e) => return Some(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_version_is_announced_once_and_older_ones_never() {
        let changes = Changes::new(16);
        let mut heard = changes.subscribe();
        changes.announce("a", 1);
        changes.announce("a", 1);
        changes.announce("b", 4);
        changes.announce("a", 3);
        changes.announce("a", 2);
        let mut got = Vec::new();
        while let Ok(account) = heard.try_recv() {
            got.push(account);
        }
        assert_eq!(got, ["a", "b", "a"]);
    }
}

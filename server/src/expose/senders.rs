//! Who sent an expose call: the registered peer holding the sealed
//! sender's key, if it passes the login checks Sync makes (registered, not
//! blocked, login not expired).
//!
//! Renewals come every 30 s from every exposing peer, so the rows those
//! checks read (the peer, its account's settings, its user) are cached per
//! key. An entry is dropped as soon as a write to its account commits (the
//! store's change notices), so the cache never answers with rows older
//! than the last committed change; the checks themselves run on every
//! call, since a login expires with time alone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use meshplane_core::model::{Account, Peer, User};
use meshplane_core::registration::{check_login, RegistrationError};
use meshplane_proto::status::from_core;
use tokio::sync::broadcast::error::RecvError;
use tonic::Status;

use crate::grpc::{internal, key_entry};
use crate::ids;
use crate::records::AccountRecord;
use crate::store::Store;

/// The rows the checks read about one key.
#[derive(Debug, Clone)]
struct Rows {
    record: AccountRecord,
    /// The account reduced to the peer, its user and the settings.
    lean: Account,
}

/// A sender that passed the checks.
#[derive(Debug, Clone)]
pub struct Sender {
    pub record: AccountRecord,
    pub peer: Peer,
}

/// The cached rows by WireGuard key.
#[derive(Debug, Default)]
struct Cache {
    rows: HashMap<String, Rows>,
    /// Counts invalidations: rows loaded before one are not kept.
    generation: u64,
}

/// The cache of sender rows by WireGuard key.
#[derive(Debug, Clone)]
pub struct Senders {
    store: Store,
    cache: Arc<Mutex<Cache>>,
}

impl Senders {
    /// An empty cache over `store`, emptied of an account's entries
    /// whenever a write to it commits.
    pub fn start(store: Store) -> Senders {
        let senders = Senders {
            store,
            cache: Arc::default(),
        };
        tokio::spawn(invalidate(senders.clone()));
        senders
    }

    fn cache(&self) -> MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The peer holding `key` and its account record, if it may act now;
    /// NOT_FOUND or PERMISSION_DENIED (with the login checks' message)
    /// otherwise.
    pub async fn check(&self, key: &str) -> Result<Sender, Status> {
        let (cached, generation) = {
            let cache = self.cache();
            (cache.rows.get(key).cloned(), cache.generation)
        };
        let rows = match cached {
            Some(rows) => rows,
            None => {
                let rows = self.load(key).await?;
                let mut cache = self.cache();
                // A commit meanwhile may have changed what was read.
                if cache.generation == generation {
                    cache.rows.insert(key.to_string(), rows.clone());
                }
                rows
            }
        };
        let peer = check_login(&rows.lean, key, ids::now())
            .map_err(|e| from_core(&e))?
            .clone();
        Ok(Sender {
            record: rows.record,
            peer,
        })
    }

    /// The rows of `key` from the store.
    async fn load(&self, key: &str) -> Result<Rows, Status> {
        let not_registered = || from_core(&RegistrationError::NotRegistered);
        let mut tx = self.store.read().await.map_err(internal)?;
        let (account_id, peer) = tx
            .find_secret::<Peer>(&key_entry(key))
            .await
            .map_err(internal)?
            .ok_or_else(not_registered)?;
        let record = tx
            .get::<AccountRecord>(&account_id, &account_id)
            .await
            .map_err(internal)?
            .ok_or_else(not_registered)?;
        let mut users = Vec::new();
        if let Some(user) = &peer.user_id {
            users.extend(
                tx.get::<User>(&account_id, user.as_str())
                    .await
                    .map_err(internal)?,
            );
        }
        let lean = Account {
            settings: record.settings.clone(),
            users,
            peers: vec![peer],
            ..Account::default()
        };
        Ok(Rows { record, lean })
    }
}

/// Drops the entries of every account a commit touches, forever.
async fn invalidate(senders: Senders) {
    let mut changes = senders.store.changes();
    loop {
        let notice = changes.recv().await;
        let mut cache = senders.cache();
        cache.generation += 1;
        match notice {
            Ok(account) => cache.rows.retain(|_, r| r.record.id != account),
            Err(RecvError::Lagged(_)) => cache.rows.clear(),
            Err(RecvError::Closed) => return,
        }
    }
}

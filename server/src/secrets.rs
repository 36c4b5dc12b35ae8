//! Server-wide secrets: 32 random bytes per purpose, drawn once from the OS
//! generator and kept in the store as a row outside any account, so a
//! restart (or another replica on the same PostgreSQL store) uses the same
//! ones. The management key peers seal their requests to and the seed of
//! the relay token signing key are such secrets.

use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};

use crate::store::{Store, StoreError, Stored};

/// The account column of server-wide rows (no account has an empty id).
const SERVER_SCOPE: &str = "";

/// The management key's id ("management") predates the other secrets; the
/// row keeps its original kind and shape so stores written before still
/// load.
#[derive(Serialize, Deserialize)]
struct ServerSecret {
    id: String,
    secret: [u8; 32],
}

impl Stored for ServerSecret {
    const KIND: &'static str = "server_key";
    const LABEL: &'static str = "id";

    fn key(&self) -> &str {
        &self.id
    }

    fn label(&self) -> &str {
        &self.id
    }
}

/// The secret stored under `id`, or a new one stored now.
pub async fn load_or_create(store: &Store, id: &str) -> Result<[u8; 32], StoreError> {
    // The writer lock makes two servers starting on one store agree.
    let mut tx = store.write().await?;
    if let Some(stored) = tx.get::<ServerSecret>(SERVER_SCOPE, id).await? {
        return Ok(stored.secret);
    }
    let mut secret = [0u8; 32];
    OsRng.fill_bytes(&mut secret);
    let row = ServerSecret {
        id: id.to_string(),
        secret,
    };
    tx.put(SERVER_SCOPE, &row).await?;
    tx.commit().await?;
    tracing::info!("generated the server secret \"{id}\"");
    Ok(secret)
}

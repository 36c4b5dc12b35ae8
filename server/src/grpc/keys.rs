//! The server's Curve25519 key pair, which peers seal their requests to.
//! Drawn once from the OS generator and kept in the store as a row outside
//! any account, so a restart (or another replica on the same PostgreSQL
//! store) answers with the same key and registered daemons keep working.

use crypto_box::SecretKey;
use rand_core::OsRng;
use serde::{Deserialize, Serialize};

use crate::store::{Store, StoreError, Stored};

/// The account column of server-wide rows (no account has an empty id).
const SERVER_SCOPE: &str = "";
/// The id of the key row.
const KEY_ID: &str = "management";

/// The stored secret half (the public half is derived from it).
#[derive(Serialize, Deserialize)]
struct ServerKey {
    id: String,
    secret: [u8; 32],
}

impl Stored for ServerKey {
    const KIND: &'static str = "server_key";
    const LABEL: &'static str = "id";

    fn key(&self) -> &str {
        &self.id
    }

    fn label(&self) -> &str {
        &self.id
    }
}

/// The server's secret key: the stored one, or a new one stored now.
pub async fn load_or_create(store: &Store) -> Result<SecretKey, StoreError> {
    // The writer lock makes two servers starting on one store agree.
    let mut tx = store.write().await?;
    if let Some(stored) = tx.get::<ServerKey>(SERVER_SCOPE, KEY_ID).await? {
        return Ok(SecretKey::from(stored.secret));
    }
    let secret = SecretKey::generate(&mut OsRng);
    let row = ServerKey {
        id: KEY_ID.to_string(),
        secret: secret.to_bytes(),
    };
    tx.put(SERVER_SCOPE, &row).await?;
    tx.commit().await?;
    tracing::info!("generated the management key");
    Ok(secret)
}

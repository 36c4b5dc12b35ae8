//! Audit events: their details and how one a user initiated is recorded.

use std::collections::BTreeMap;

use meshplane_core::model::{Activity, AuditEvent, User};

use crate::ids;
use crate::store::{StoreError, Tx};

/// Builds an audit `meta` map from pairs.
pub fn meta<const N: usize>(pairs: [(&str, &str); N]) -> BTreeMap<String, String> {
    pairs
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Records an audit event initiated by `initiator`, in `tx`.
pub async fn record(
    tx: &mut Tx,
    account: &str,
    initiator: &User,
    activity: Activity,
    target: &str,
    meta: BTreeMap<String, String>,
) -> Result<(), StoreError> {
    let now = ids::now();
    tx.append_event(account, |seq| {
        let mut event = AuditEvent::new(
            seq.to_string(),
            now,
            activity,
            initiator.id.as_str(),
            target,
            meta,
        );
        event.initiator_name = initiator.name.clone();
        event.initiator_email = initiator.email.clone();
        event
    })
    .await?;
    Ok(())
}

//! Access evaluation ops: `evaluate_policy` and `accessible_peers`.
//!
//! `now` decides whose login has expired; it is optional for
//! `evaluate_policy` (default: the epoch, when no login has expired yet).

use serde::Deserialize;
use serde_json::Value;

use super::{parse, to_value};
use crate::error::ApiError;
use crate::index::AccountIndex;
use crate::model::Account;
use crate::policy::{accessible_peers, evaluate, AccessQuery};
use crate::time::Timestamp;

pub(super) const OPS: &[&str] = &["accessible_peers", "evaluate_policy"];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EvaluateInput {
    account: Account,
    query: AccessQuery,
    #[serde(default)]
    now: Timestamp,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AccessibleInput {
    account: Account,
    peer_id: String,
    now: Timestamp,
}

pub(super) fn dispatch(op: &str, input: Value) -> Option<Result<Value, ApiError>> {
    match op {
        "evaluate_policy" => Some(parse::<EvaluateInput>(input).and_then(|i| {
            let index = AccountIndex::new(&i.account);
            to_value(&evaluate(&index, &i.query, i.now)?)
        })),
        "accessible_peers" => Some(parse::<AccessibleInput>(input).and_then(|i| {
            let index = AccountIndex::new(&i.account);
            to_value(&accessible_peers(&index, &i.peer_id, i.now)?)
        })),
        _ => None,
    }
}

//! Access evaluation ops: `evaluate_policy`, `accessible_peers`,
//! `explain_peer` (why each other peer is or is not connected) and
//! `preview_policy` (the pairs a policy change connects or disconnects).
//!
//! `now` decides whose login has expired; it is optional for
//! `evaluate_policy` (default: the epoch, when no login has expired yet).

use serde::Deserialize;
use serde_json::Value;

use super::{parse, to_value};
use crate::access::{explain_peer, preview_policy};
use crate::error::ApiError;
use crate::index::AccountIndex;
use crate::model::{Account, Policy};
use crate::policy::{accessible_peers, evaluate, AccessQuery};
use crate::time::Timestamp;

pub(super) const OPS: &[&str] = &[
    "accessible_peers",
    "evaluate_policy",
    "explain_peer",
    "preview_policy",
];

/// How many changed pairs `preview_policy` lists when no limit is given.
const DEFAULT_PREVIEW_LIMIT: usize = 100;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PreviewInput {
    account: Account,
    /// The policy as it would be saved: it replaces the account's policy
    /// with its id, or is added.
    policy: Policy,
    now: Timestamp,
    #[serde(default)]
    limit: Option<usize>,
}

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
        "explain_peer" => Some(parse::<AccessibleInput>(input).and_then(|i| {
            let index = AccountIndex::new(&i.account);
            to_value(&explain_peer(&index, &i.peer_id, i.now)?)
        })),
        "preview_policy" => Some(parse::<PreviewInput>(input).and_then(|i| {
            let limit = i.limit.unwrap_or(DEFAULT_PREVIEW_LIMIT);
            to_value(&preview_policy(&i.account, &i.policy, i.now, limit))
        })),
        _ => None,
    }
}

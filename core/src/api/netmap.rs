//! Network map ops: `network_map`, `all_network_maps` and
//! `generate_bench_account`.

use serde::Deserialize;
use serde_json::Value;

use super::{parse, to_value};
use crate::error::ApiError;
use crate::generate::bench_account;
use crate::index::AccountIndex;
use crate::model::Account;
use crate::netmap::{all_network_maps, network_map};
use crate::time::Timestamp;

pub(super) const OPS: &[&str] = &["all_network_maps", "generate_bench_account", "network_map"];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MapInput {
    account: Account,
    peer_id: String,
    now: Timestamp,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AllInput {
    account: Account,
    now: Timestamp,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BenchInput {
    peers: usize,
    groups: usize,
    now: Timestamp,
}

/// Largest account `generate_bench_account` builds through the JSON API.
const MAX_BENCH_PEERS: usize = 100_000;

pub(super) fn dispatch(op: &str, input: Value) -> Option<Result<Value, ApiError>> {
    match op {
        "network_map" => Some(parse::<MapInput>(input).and_then(|i| {
            let index = AccountIndex::new(&i.account);
            to_value(&network_map(&index, &i.peer_id, i.now)?)
        })),
        "all_network_maps" => Some(parse::<AllInput>(input).and_then(|i| {
            let index = AccountIndex::new(&i.account);
            to_value(&all_network_maps(&index, i.now))
        })),
        "generate_bench_account" => Some(parse::<BenchInput>(input).and_then(|i| {
            if i.peers > MAX_BENCH_PEERS {
                return Err(ApiError::invalid_input(format!(
                    "peers must be at most {MAX_BENCH_PEERS}"
                )));
            }
            to_value(&bench_account(i.peers, i.groups, i.now))
        })),
        _ => None,
    }
}

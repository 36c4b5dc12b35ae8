//! Per-call cost of the three calls the language bindings are measured on —
//! one name-prefix validation, one policy evaluation and one network map on
//! the 1000-peer / 50-group benchmark account — each at two levels:
//!
//! - `typed`: the Rust functions on values already in memory (the index is
//!   built once, as the server keeps one per account);
//! - `json_api`: `api::call_value` on a JSON input, what every binding calls,
//!   so it includes reading the account JSON and indexing it on every call;
//! - `json_text` (network map only): `api::call` on the request as JSON text,
//!   what the bindings' `call_json` runs.
//!
//! A binding's overhead is its own per-call figure minus `json_api`.
//!
//! ```text
//! cargo bench -p meshplane-core --bench api_calls
//! ```

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use meshplane_core::api;
use meshplane_core::generate::bench_account;
use meshplane_core::index::AccountIndex;
use meshplane_core::netmap::network_map;
use meshplane_core::policy::{evaluate, AccessQuery};
use meshplane_core::validate::NamePrefix;
use meshplane_core::Timestamp;
use serde_json::json;

const PEERS: usize = 1000;
const GROUPS: usize = 50;

fn validation(c: &mut Criterion) {
    let mut group = c.benchmark_group("validate_name_prefix");
    group.bench_function("typed", |b| {
        b.iter(|| black_box(black_box("my-svc").parse::<NamePrefix>().is_ok()))
    });
    group.bench_function("json_api", |b| {
        b.iter(|| {
            black_box(api::call_value(
                "validate_name_prefix",
                json!({ "value": black_box("my-svc") }),
            ))
        })
    });
    group.finish();
}

fn evaluation(c: &mut Criterion) {
    let now = Timestamp::from_secs(1_750_000_000);
    let account = bench_account(PEERS, GROUPS, now);
    // group-0 to group-1 on tcp/5432: the drop rule decides over Default-Allow.
    let query = json!({
        "source": "peer-0",
        "destination": { "peer": "peer-20" },
        "protocol": "tcp",
        "port": 5432,
    });
    let mut group = c.benchmark_group("evaluate_policy_1000");
    match serde_json::from_value::<AccessQuery>(query.clone()) {
        Ok(typed_query) => {
            let index = AccountIndex::new(&account);
            group.bench_function("typed", |b| {
                b.iter(|| black_box(evaluate(&index, &typed_query, now).map(|d| d.allowed)))
            });
        }
        Err(e) => eprintln!("bad query: {e}"),
    }
    let input = json!({ "account": account, "query": query, "now": now });
    group.sample_size(20);
    group.bench_function("json_api", |b| {
        b.iter(|| black_box(api::call_value("evaluate_policy", input.clone())))
    });
    group.finish();
}

fn netmap(c: &mut Criterion) {
    let now = Timestamp::from_secs(1_750_000_000);
    let account = bench_account(PEERS, GROUPS, now);
    let index = AccountIndex::new(&account);
    let mut group = c.benchmark_group("network_map_1000");
    group.sample_size(20);
    group.bench_function("typed", |b| {
        b.iter(|| {
            black_box(network_map(&index, "peer-0", now).map(|m| serde_json::to_value(&m).is_ok()))
        })
    });
    let input = json!({ "account": account, "peer_id": "peer-0", "now": now });
    let request = json!({ "op": "network_map", "input": input }).to_string();
    group.bench_function("json_api", |b| {
        b.iter(|| black_box(api::call_value("network_map", input.clone())))
    });
    group.bench_function("json_text", |b| {
        b.iter(|| black_box(api::call(&request).len()))
    });
    group.finish();
}

criterion_group!(benches, validation, evaluation, netmap);
criterion_main!(benches);

//! Network-map benchmarks on the account of `BENCH-ACCOUNT.md`.
//!
//! Per scale (`<peers>x<groups>`): (a) `one_map` — the map of `peer-0`;
//! (b) `fanout` — every peer's map, posture results computed once per run
//! inside the measurement; (c) `fanout_posture_default` — the same with the
//! version posture check also on `Default-Allow`; plus `serialise_peer0`, the
//! JSON of `peer-0`'s map. The index is built once per scale, outside the
//! measurement, as the server keeps one per account.
//!
//! ```text
//! cargo bench -p meshplane-core --bench netmap              # every scale
//! cargo bench -p meshplane-core --bench netmap -- 5000x100  # one scale
//! ```

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use meshplane_core::generate::{bench_account, with_posture_on_default};
use meshplane_core::index::AccountIndex;
use meshplane_core::model::Account;
use meshplane_core::netmap::{all_network_maps, network_map};
use meshplane_core::Timestamp;

const SCALES: &[(usize, usize)] = &[
    (100, 5),
    (1000, 50),
    (5000, 100),
    (10000, 200),
    (30000, 300),
];

fn bench_scale(c: &mut Criterion, peers: usize, groups: usize) {
    let now = Timestamp::from_secs(1_750_000_000);
    let plain = bench_account(peers, groups, now);
    let posture = with_posture_on_default(plain.clone());
    let mut group = c.benchmark_group(format!("netmap/{peers}x{groups}"));
    if peers >= 5000 {
        group.sample_size(10);
        group.warm_up_time(Duration::from_millis(500));
        group.measurement_time(Duration::from_secs(3));
    }
    let index = AccountIndex::new(&plain);
    group.bench_function("one_map", |b| {
        b.iter(|| black_box(network_map(&index, "peer-0", now).map(|m| m.peers().count())))
    });
    group.bench_function("serialise_peer0", |b| {
        match network_map(&index, "peer-0", now) {
            Ok(map) => b.iter(|| black_box(serde_json::to_vec(&map).map(|v| v.len()))),
            Err(e) => eprintln!("no map for peer-0: {e}"),
        }
    });
    group.bench_function("fanout", |b| {
        b.iter(|| black_box(all_network_maps(&index, now).len()))
    });
    fanout_of(&mut group, "fanout_posture_default", &posture, now);
    group.finish();
}

fn fanout_of(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    account: &Account,
    now: Timestamp,
) {
    let index = AccountIndex::new(account);
    group.bench_function(name, |b| {
        b.iter(|| black_box(all_network_maps(&index, now).len()))
    });
}

fn benches(c: &mut Criterion) {
    for &(peers, groups) in SCALES {
        bench_scale(c, peers, groups);
    }
}

criterion_group!(netmap, benches);
criterion_main!(netmap);

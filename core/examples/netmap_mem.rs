//! Builds the benchmark account at a given scale, computes every peer's
//! network map and prints the time taken, the peak resident memory and what
//! `peer-0`'s map holds, so figures can be compared with the reference.
//!
//! ```text
//! cargo run --release -p meshplane-core --example netmap_mem -- 30000 300 [posture]
//! ```
//!
//! `posture` also attaches the version posture check to `Default-Allow`.
//! This is a measuring tool, not core code: it reads the clock and
//! `/proc/self/status`.

#![allow(clippy::disallowed_methods)]

use std::time::Instant;

use meshplane_core::generate::{bench_account, with_posture_on_default};
use meshplane_core::index::AccountIndex;
use meshplane_core::netmap::{all_network_maps, network_map};
use meshplane_core::Timestamp;

/// Peak resident set size in KiB (`VmHWM`), when the system reports it.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let peers: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(5000);
    let groups: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(100);
    let posture = args.iter().any(|a| a == "posture");
    let now = Timestamp::from_secs(1_750_000_000);

    let mut account = bench_account(peers, groups, now);
    if posture {
        account = with_posture_on_default(account);
    }
    let start = Instant::now();
    let index = AccountIndex::new(&account);
    let index_time = start.elapsed();

    let start = Instant::now();
    let one = match network_map(&index, "peer-0", now) {
        Ok(map) => map,
        Err(e) => {
            eprintln!("{e}");
            return;
        }
    };
    let one_time = start.elapsed();
    let start = Instant::now();
    let json_len = serde_json::to_vec(&one).map_or(0, |v| v.len());
    let ser_time = start.elapsed();

    let start = Instant::now();
    let maps = all_network_maps(&index, now);
    let fanout_time = start.elapsed();

    let start = Instant::now();
    let total_bytes: usize = maps
        .values()
        .take(100)
        .map(|m| serde_json::to_vec(m).map_or(0, |v| v.len()))
        .sum();
    let ser_1000 = start.elapsed();

    let Some(peer0) = account.peers.first().and_then(|p| maps.get(&p.id)) else {
        return;
    };
    println!(
        "scale: {peers} peers / {groups} groups{}",
        if posture {
            " (posture on Default-Allow)"
        } else {
            ""
        }
    );
    println!("index build:         {index_time:?}");
    println!("one map (peer-0):    {one_time:?}; serialised in {ser_time:?} ({json_len} bytes)");
    println!("fan-out ({} maps): {fanout_time:?}", maps.len());
    println!("serialise first 100 maps: {ser_1000:?} ({total_bytes} bytes)");
    println!(
        "peer-0 map: {} peers, {} offline peers, {} firewall rules, {} routes",
        peer0.peers().count(),
        peer0.offline_peers().count(),
        peer0.firewall_rules().count(),
        peer0.routes().len()
    );
    match peak_rss_kib() {
        Some(kib) => println!("peak RSS (VmHWM): {:.1} MiB", kib as f64 / 1024.0),
        None => println!("peak RSS: unavailable"),
    }
}

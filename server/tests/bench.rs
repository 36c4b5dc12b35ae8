//! Timings of the API on the account shape of the benchmarks: 5,000 peers
//! in 100 groups, 100 policies. Ignored by default (it measures, it does not
//! check); run in release:
//!
//! ```text
//! cargo test --release -p meshplane-server --test bench -- --ignored --nocapture
//! ```
//!
//! With `MESHPLANE_TEST_POSTGRES_URL` set it runs on PostgreSQL instead.

// A failed unwrap is a failed run here.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Backend, Server, PG_ENV};
use serde_json::{json, Value};

const PEERS: usize = 5_000;
const GROUPS: usize = 100;
const ROUNDS: usize = 10;

/// Median and worst of `ROUNDS` timed calls.
fn time(mut call: impl FnMut()) -> (Duration, Duration) {
    let mut runs: Vec<Duration> = (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            call();
            start.elapsed()
        })
        .collect();
    runs.sort();
    (runs[ROUNDS / 2], runs[ROUNDS - 1])
}

fn policy(name: &str, from: &str, to: &str, ports: &[&str]) -> Value {
    json!({"name": name, "enabled": true, "rules": [{"name": "r", "enabled": true, "action": "accept",
        "bidirectional": true, "protocol": "tcp", "ports": ports, "sources": [from], "destinations": [to]}]})
}

#[test]
#[ignore = "measures; run with --ignored --nocapture in release"]
fn peers_and_policies_at_5000() {
    let backend = if std::env::var(PG_ENV).is_ok() {
        Backend::Postgres
    } else {
        Backend::Sqlite
    };
    let s = Server::start(backend);
    let range = s.get("/api/accounts")[0]["settings"]["network_range"]
        .as_str()
        .unwrap()
        .to_string();
    let prefix = range.trim_end_matches("0.0/16").to_string();
    let groups: Vec<String> = (0..GROUPS)
        .map(|i| {
            s.post("/api/groups", json!({"name": format!("g{i}")}))["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let default = s.get("/api/policies")[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    s.delete(&format!("/api/policies/{default}"));
    let policies: Vec<String> = (0..GROUPS)
        .map(|i| {
            let p = policy(
                &format!("p{i}"),
                &groups[i],
                &groups[(i + 1) % GROUPS],
                &["22"],
            );
            s.post("/api/policies", p)["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let peers = (0..PEERS)
        .map(|n| {
            let ip = format!("{prefix}{}.{}", n / 250 + 1, n % 250 + 1);
            (
                format!("p{n:05}"),
                format!("peer{n}"),
                ip,
                vec![groups[n % GROUPS].clone()],
            )
        })
        .collect();
    s.insert_peers(peers);

    let (median, worst) = time(|| {
        let text = s.get_text("/api/peers");
        assert!(text.len() > PEERS * 100, "{} bytes", text.len());
    });
    println!("GET /api/peers ({PEERS} peers, {GROUPS} groups), response received: median {median:?}, worst {worst:?}");
    let (median, worst) = time(|| {
        let list = s.get("/api/peers");
        assert_eq!(list.as_array().unwrap().len(), PEERS);
    });
    println!("GET /api/peers ({PEERS} peers, {GROUPS} groups), received and parsed by the client: median {median:?}, worst {worst:?}");
    let mut port = 0;
    let (median, worst) = time(|| {
        port += 1;
        let p = policy(
            "p0",
            &groups[0],
            &groups[1],
            &["22", &(1000 + port).to_string()],
        );
        s.put(&format!("/api/policies/{}", policies[0]), p);
    });
    println!("PUT /api/policies/{{id}} ({PEERS} peers, {GROUPS} groups): median {median:?}, worst {worst:?}");
    let (median, worst) = time(|| {
        s.get("/api/peers/p00001/accessible-peers");
    });
    println!("GET /api/peers/{{id}}/accessible-peers: median {median:?}, worst {worst:?}");
}

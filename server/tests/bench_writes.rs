//! Writes under read load: one writer creating groups (and one updating a
//! policy), alone and while 32 clients keep reading `GET /api/peers`, on an
//! account of 4,200 groups and 1,000 peers. Ignored by default (it
//! measures, it does not check); run in release:
//!
//! ```text
//! cargo test --release -p meshplane-server --test bench_writes -- --ignored --nocapture
//! ```
//!
//! With `MESHPLANE_TEST_POSTGRES_URL` set it runs on PostgreSQL instead.

// A failed unwrap is a failed run here.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Backend, Server};
use serde_json::{json, Value};

const GROUPS: usize = 4_200;
const PEERS: usize = 1_000;
const POLICIES: usize = 100;
const READERS: usize = 32;
/// How long each phase writes.
const PHASE: Duration = Duration::from_secs(8);

/// Writes per second and the median and 99th-percentile write latency.
struct Figures {
    rate: f64,
    p50: Duration,
    p99: Duration,
    writes: usize,
}

/// Calls `write` (with a running counter) for `PHASE`, timing each call.
fn measure(mut write: impl FnMut(usize)) -> Figures {
    let started = Instant::now();
    let mut times = Vec::new();
    while started.elapsed() < PHASE {
        let t = Instant::now();
        write(times.len());
        times.push(t.elapsed());
    }
    let total = started.elapsed();
    times.sort();
    Figures {
        rate: times.len() as f64 / total.as_secs_f64(),
        p50: times[times.len() / 2],
        p99: times[(times.len() * 99 / 100).min(times.len() - 1)],
        writes: times.len(),
    }
}

/// `measure` while `READERS` threads keep reading the peer list; also
/// answers how many reads completed.
fn under_reads(s: &Server, write: impl FnMut(usize)) -> (Figures, usize) {
    let stop = AtomicBool::new(false);
    let reads = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..READERS {
            scope.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    s.get_text("/api/peers");
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        // Let every reader get its first request in.
        std::thread::sleep(Duration::from_millis(500));
        let figures = measure(write);
        stop.store(true, Ordering::Relaxed);
        (figures, reads.load(Ordering::Relaxed))
    })
}

fn report(what: &str, f: &Figures) {
    println!(
        "{what}: {:.1} writes/s ({} writes), p50 {:?}, p99 {:?}",
        f.rate, f.writes, f.p50, f.p99
    );
}

fn policy(name: &str, from: &str, to: &str, port: usize) -> Value {
    json!({"name": name, "enabled": true, "rules": [{"name": "r", "enabled": true, "action": "accept",
        "bidirectional": true, "protocol": "tcp", "ports": [port.to_string()],
        "sources": [from], "destinations": [to]}]})
}

#[test]
#[ignore = "measures; run with --ignored --nocapture in release"]
fn writes_under_read_load() {
    let backend = Backend::from_env();
    let s = Server::start(backend);
    let range = s.get("/api/accounts")[0]["settings"]["network_range"]
        .as_str()
        .unwrap()
        .to_string();
    let prefix = range.trim_end_matches("0.0/16").to_string();
    let groups: Vec<String> = (0..GROUPS).map(|i| format!("bench-group-{i:05}")).collect();
    let rows: Vec<Value> = groups
        .iter()
        .enumerate()
        .map(|(i, id)| json!({"id": id, "name": format!("g{i}"), "peers": [], "resources": []}))
        .collect();
    s.insert_objects("group", &rows);
    let default = s.get("/api/policies")[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    s.delete(&format!("/api/policies/{default}"));
    let policies: Vec<String> = (0..POLICIES)
        .map(|i| {
            let p = policy(
                &format!("p{i}"),
                &groups[i],
                &groups[(i + 1) % POLICIES],
                22,
            );
            s.post("/api/policies", p)["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    // Each peer in two of the policies' groups and one of the rest.
    let peers = (0..PEERS)
        .map(|n| {
            let ip = format!("{prefix}{}.{}", n / 250 + 1, n % 250 + 1);
            let member_of = vec![
                groups[n % POLICIES].clone(),
                groups[(n + 7) % POLICIES].clone(),
                groups[POLICIES + n % (GROUPS - POLICIES)].clone(),
            ];
            (format!("p{n:05}"), format!("peer{n}"), ip, member_of)
        })
        .collect();
    s.insert_peers(peers);
    println!("account: {GROUPS} groups, {PEERS} peers, {POLICIES} policies; backend {backend:?}");

    let create = |phase: &'static str| {
        let s = &s;
        move |i: usize| {
            s.post("/api/groups", json!({"name": format!("new-{phase}-{i}")}));
        }
    };
    let update = |i: usize| {
        let p = policy("p0", &groups[0], &groups[1], 1000 + i);
        s.put(&format!("/api/policies/{}", policies[0]), p);
    };

    let started = Instant::now();
    s.get_text("/api/peers");
    println!("GET /api/peers, one reader: {:?}", started.elapsed());
    report("POST /api/groups, alone", &measure(create("alone")));
    let (f, reads) = under_reads(&s, create("loaded"));
    report(&format!("POST /api/groups, {READERS} readers"), &f);
    println!("  reads completed meanwhile: {reads}");
    report("PUT /api/policies/{id}, alone", &measure(update));
    let (f, reads) = under_reads(&s, update);
    report(&format!("PUT /api/policies/{{id}}, {READERS} readers"), &f);
    println!("  reads completed meanwhile: {reads}");
}

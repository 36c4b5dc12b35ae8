//! Relay capacity on loopback: a relay process (this binary, run again as
//! the relay) and a client process holding N relayed pairs.
//!
//! ```sh
//! cargo bench -p meshplane-relay --bench capacity            # 2,000 pairs
//! RELAY_PAIRS=4000 cargo bench -p meshplane-relay --bench capacity
//! ```
//!
//! Prints: the time to connect the pairs, the relay process's resident
//! memory per pair (its RSS with the pairs connected minus before, over
//! the pairs), the round trip of one pair through the relay, throughput
//! of one pair (1,400-byte payloads, what the receiver got), and the
//! aggregate of 100 pairs sending at once. Both processes share the
//! machine's cores.

// A benchmark that fails to set up should stop loudly.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use meshplane_relay::{
    Limits, PeerId, Relay, RelayClient, RelayReceiver, RelaySender, Token, TokenSigner,
};

/// The role variable: set, this process is the relay.
const ROLE: &str = "RELAY_CAPACITY_ROLE";
/// The signing key's seed both processes use (a benchmark secret).
const SEED: [u8; 32] = [9; 32];
/// One WireGuard data packet's worth.
const PACKET: usize = 1400;
/// How long each throughput run sends.
const SEND_FOR: Duration = Duration::from_secs(3);

fn main() {
    if std::env::var_os(ROLE).is_some() {
        run_relay();
        return;
    }
    // `cargo bench` passes `--bench`; nothing else is taken.
    let pairs: usize = std::env::var("RELAY_PAIRS")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(2000);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(ROLE, "relay")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = format!("rel://{}", line.trim());
    let pid = child.id();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(measure(&url, pid, pairs));
    let _ = child.kill();
    let _ = child.wait();
}

/// The relay: listens on a loopback port, prints it, serves until killed.
fn run_relay() {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let signer = TokenSigner::from_seed(SEED).unwrap();
            let limits = Limits {
                max_connections: 1_000_000,
                max_connections_per_address: 1_000_000,
                ..Limits::default()
            };
            let relay = Relay::new(signer.verifier(), limits);
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            println!("{}", listener.local_addr().unwrap());
            meshplane_relay::server::serve(
                listener,
                relay,
                axum::Router::new(),
                std::future::pending(),
            )
            .await;
        });
}

/// Resident memory of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

struct Client {
    id: PeerId,
    sender: RelaySender,
    receiver: RelayReceiver,
}

async fn connect(url: &str, key: String) -> Client {
    let signer = TokenSigner::from_seed(SEED).unwrap();
    let id = PeerId::from_public_key(&key);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let token: Token = signer.mint(&id, i64::try_from(now).unwrap() + 3600);
    let (sender, receiver) = RelayClient::connect(url, &key, &token).await.unwrap();
    Client {
        id,
        sender,
        receiver,
    }
}

async fn measure(url: &str, relay_pid: u32, pairs: usize) {
    // Let the relay settle before the baseline.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = rss_kib(relay_pid);
    let started = Instant::now();
    let mut clients: Vec<Client> = Vec::with_capacity(pairs * 2);
    let keys: Vec<String> = (0..pairs * 2).map(|i| format!("bench-peer-{i}")).collect();
    for batch in keys.chunks(200) {
        let connects = batch.iter().map(|k| connect(url, k.clone()));
        clients.extend(futures_util::future::join_all(connects).await);
    }
    let connect_time = started.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kib(relay_pid);
    println!(
        "relay capacity: {pairs} pairs ({} connections) connected in {:.2} s ({:.0} connections/s)",
        pairs * 2,
        connect_time.as_secs_f64(),
        (pairs * 2) as f64 / connect_time.as_secs_f64()
    );
    println!(
        "relay memory: {:.1} MiB before, {:.1} MiB with the pairs: {:.1} KiB per pair",
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        after.saturating_sub(before) as f64 / pairs as f64
    );
    let mut pairs_list: Vec<(Client, Client)> = Vec::with_capacity(pairs);
    let mut it = clients.into_iter();
    while let (Some(a), Some(b)) = (it.next(), it.next()) {
        pairs_list.push((a, b));
    }
    round_trip(&mut pairs_list[0]).await;
    let one = throughput(&mut pairs_list[..1]).await;
    println!(
        "relay throughput, 1 pair: {:.0} Mbit/s ({:.0} packets/s of {PACKET} B)",
        one * 8.0 * PACKET as f64 / 1e6,
        one
    );
    let active = pairs_list.len().min(100);
    let many = throughput(&mut pairs_list[..active]).await;
    println!(
        "relay throughput, {active} pairs at once: {:.0} Mbit/s ({:.0} packets/s)",
        many * 8.0 * PACKET as f64 / 1e6,
        many
    );
    println!(
        "relay memory after the runs: {:.1} MiB",
        rss_kib(relay_pid) as f64 / 1024.0
    );
}

/// The median of 1,000 round trips A -> B -> A.
async fn round_trip(pair: &mut (Client, Client)) {
    let (a, b) = pair;
    let mut times = Vec::with_capacity(1000);
    for i in 0..1000u32 {
        let start = Instant::now();
        a.sender.send(&b.id, &i.to_be_bytes()).await.unwrap();
        let (_, got) = b.receiver.recv().await.unwrap();
        b.sender.send(&a.id, &got).await.unwrap();
        a.receiver.recv().await.unwrap();
        times.push(start.elapsed());
    }
    times.sort();
    println!(
        "relay round trip (A -> relay -> B -> relay -> A, loopback): median {} us, p99 {} us",
        times[500].as_micros(),
        times[990].as_micros()
    );
}

/// Packets per second the receivers of `pairs` got while every A sent to
/// its B for [`SEND_FOR`] (the relay drops what a full queue cannot hold).
async fn throughput(pairs: &mut [(Client, Client)]) -> f64 {
    let received = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for (a, b) in pairs.iter_mut() {
        let sender = a.sender.clone();
        let to = b.id;
        let stop_send = stop.clone();
        tasks.push(tokio::spawn(async move {
            let payload = vec![0u8; PACKET];
            while !stop_send.load(Ordering::Relaxed) {
                if sender.send(&to, &payload).await.is_err() {
                    break;
                }
            }
        }));
    }
    let counters: Vec<_> = pairs
        .iter_mut()
        .map(|(_, b)| {
            let received = received.clone();
            let receiver = &mut b.receiver;
            async move {
                let deadline = tokio::time::Instant::now() + SEND_FOR;
                while let Ok(Some(_)) = tokio::time::timeout_at(deadline, receiver.recv()).await {
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
        .collect();
    let start = Instant::now();
    futures_util::future::join_all(counters).await;
    let elapsed = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    // Drain what is still in flight so the next run starts clean.
    for (_, b) in pairs.iter_mut() {
        while let Ok(Some(_)) =
            tokio::time::timeout(Duration::from_millis(200), b.receiver.recv()).await
        {}
    }
    received.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64()
}

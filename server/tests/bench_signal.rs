//! Cost of the signal exchange through the server binary: round trips
//! between two peers, the rate of concurrent senders into one stream, and
//! the first message after an account change (which recomputes the
//! account's visibility) at 1,000 peers. Ignored by default (it measures,
//! it does not check); run in release:
//!
//! ```text
//! cargo test --release -p meshplane-server --test bench_signal -- --ignored --nocapture
//! ```

// A failed unwrap is a failed run here.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::client::{reusable, run, Peer};
use common::{Backend, Server};
use crypto_box::SecretKey;
use meshplane_proto::envelope::{encode_public_key, ReplayGuard};
use meshplane_proto::signal::body::Type;
use meshplane_proto::signal::client::SignalClient;
use meshplane_proto::signal::Body;
use rand_core::OsRng;
use serde_json::json;
use tonic::transport::Channel;

const PEERS: usize = 1_000;
const ROUND_TRIPS: usize = 2_000;
const SENDERS: usize = 8;
const PER_SENDER: usize = 2_000;

fn candidate() -> Body {
    Body {
        r#type: Type::Candidate.into(),
        payload: "candidate:1 1 udp 2130706431 192.0.2.1 51820 typ host".into(),
        ..Body::default()
    }
}

fn percentile(sorted: &[Duration], p: usize) -> f64 {
    sorted[(sorted.len() - 1) * p / 100].as_secs_f64() * 1e6
}

#[test]
#[ignore = "measures; run with --ignored --nocapture in release"]
fn signal_costs() {
    let s = Server::start(Backend::from_env());
    let key = reusable(&s);
    run(async move {
        let template = Peer::connect(&s, "template").await;
        let mut peers = Vec::new();
        let started = Instant::now();
        for i in 0..PEERS {
            let secret = SecretKey::generate(&mut OsRng);
            let mut peer = Peer {
                hostname: format!("peer-{i}"),
                key: encode_public_key(&secret.public_key()),
                secret,
                server: template.server.clone(),
                client: template.client.clone(),
                guard: ReplayGuard::default(),
            };
            peer.login(&key).await.unwrap();
            peers.push(peer);
        }
        println!(
            "{PEERS} peers registered in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        let client = |p: &Peer, ch: Channel| {
            SignalClient::new(ch, p.secret.clone()).proving_to(p.server.clone())
        };
        let a = client(&peers[0], s.channel().await);
        let b = client(&peers[1], s.channel().await);
        let mut a_in = a.connect().await.unwrap();
        let mut b_in = b.connect().await.unwrap();

        // Round trips a -> b -> a, one at a time.
        let mut times = Vec::with_capacity(ROUND_TRIPS);
        for _ in 0..ROUND_TRIPS {
            let t = Instant::now();
            a.send(b.public_key(), &candidate()).await.unwrap();
            b_in.recv().await.unwrap().unwrap();
            b.send(a.public_key(), &candidate()).await.unwrap();
            a_in.recv().await.unwrap().unwrap();
            times.push(t.elapsed());
        }
        times.sort();
        println!(
            "round trip a -> b -> a (two Sends, two stream deliveries): median {:.0} µs, p99 {:.0} µs",
            percentile(&times, 50),
            percentile(&times, 99)
        );

        // Concurrent senders into b's stream.
        let started = Instant::now();
        let mut tasks = Vec::new();
        for p in &peers[2..2 + SENDERS] {
            let sender = client(p, s.channel().await);
            let to = b.public_key().to_string();
            tasks.push(tokio::spawn(async move {
                for _ in 0..PER_SENDER {
                    sender.send(&to, &candidate()).await.unwrap();
                }
            }));
        }
        let reader = tokio::spawn(async move {
            let mut got = 0;
            while got < SENDERS * PER_SENDER {
                match tokio::time::timeout(Duration::from_secs(2), b_in.recv()).await {
                    Ok(Ok(Some(_))) => got += 1,
                    _ => break,
                }
            }
            got
        });
        for t in tasks {
            t.await.unwrap();
        }
        let sent = started.elapsed().as_secs_f64();
        let got = reader.await.unwrap();
        println!(
            "{SENDERS} senders x {PER_SENDER} Sends to one stream: {:.0} messages/s accepted, {got} of {} delivered",
            (SENDERS * PER_SENDER) as f64 / sent,
            SENDERS * PER_SENDER
        );

        // The first Send after a change recomputes the account's view.
        let mut firsts = Vec::new();
        let mut nexts = Vec::new();
        for i in 0..5 {
            s.post("/api/groups", json!({ "name": format!("bench-{i}") }));
            // The commit notice reaches the cache a moment after the call.
            tokio::time::sleep(Duration::from_millis(200)).await;
            let t = Instant::now();
            a.send(b.public_key(), &candidate()).await.unwrap();
            firsts.push(t.elapsed());
            let t = Instant::now();
            a.send(b.public_key(), &candidate()).await.unwrap();
            nexts.push(t.elapsed());
        }
        firsts.sort();
        nexts.sort();
        println!(
            "{PEERS} peers: first Send after a change {:.1} ms (median of 5), the next {:.2} ms",
            percentile(&firsts, 50) / 1e3,
            percentile(&nexts, 50) / 1e3
        );
    });
}

//! Throughput of expose sessions: creates and renewals through the real
//! sealed gRPC path of the server binary (1,000 registered peers x 10
//! sessions, concurrent clients), and the in-process rate of the core's
//! session table for comparison. Ignored by default (it measures, it does
//! not check); run in release:
//!
//! ```text
//! cargo test --release -p meshplane-server --test bench_expose -- --ignored --nocapture
//! ```
//!
//! With `MESHPLANE_TEST_POSTGRES_URL` set it runs on PostgreSQL instead.

// A failed unwrap is a failed run here.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::client::{reusable, run, Peer};
use common::{Backend, Server};
use crypto_box::SecretKey;
use meshplane_core::expose::{ExposeContext, ExposePeer, ExposeRequest, SessionTable, TableConfig};
use meshplane_core::model::{AccountSettings, PeerId};
use meshplane_core::Timestamp;
use meshplane_proto::envelope::{encode_public_key, ReplayGuard};
use meshplane_proto::v1::management_client::ManagementClient;
use meshplane_proto::v1::CreateExposeRequest;
use rand_core::OsRng;
use serde_json::json;

const PEERS: usize = 1_000;
const SESSIONS: usize = 10;
/// Renewal rounds over every session.
const ROUNDS: usize = 3;
/// Client tasks working at once, over `CONNECTIONS` HTTP/2 connections.
const TASKS: usize = 64;
const CONNECTIONS: usize = 4;

/// A client peer and the domains of its sessions.
type Client = (Peer, Vec<String>);

/// Runs `work` for every peer of `peers`, `TASKS` at a time; the seconds
/// it took.
async fn fan_out<F, Fut>(peers: &mut Vec<Client>, work: F) -> f64
where
    F: Fn(Client) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Client> + Send,
{
    let start = Instant::now();
    let mut handles = Vec::new();
    let mut chunks: Vec<Vec<Client>> = (0..TASKS).map(|_| Vec::new()).collect();
    for (i, p) in peers.drain(..).enumerate() {
        chunks[i % TASKS].push(p);
    }
    for chunk in chunks {
        let work = work.clone();
        handles.push(tokio::spawn(async move {
            let mut done = Vec::new();
            for p in chunk {
                done.push(work(p).await);
            }
            done
        }));
    }
    for h in handles {
        peers.extend(h.await.unwrap());
    }
    start.elapsed().as_secs_f64()
}

#[test]
#[ignore = "measures; run with --ignored --nocapture in release"]
fn expose_throughput() {
    let s = Server::start(Backend::from_env());
    let account = s.get("/api/accounts")[0].clone();
    let mut settings = account["settings"].clone();
    settings["peer_expose_enabled"] = json!(true);
    s.put(
        &format!("/api/accounts/{}", account["id"].as_str().unwrap()),
        json!({ "settings": settings }),
    );
    let key = reusable(&s);
    // Borrowed: the server is dropped (its PostgreSQL database dropped
    // with it) outside the runtime.
    let s = &s;
    run(async move {
        let template = Peer::connect(s, "template").await;
        let mut clients = Vec::new();
        for _ in 0..CONNECTIONS {
            clients.push(ManagementClient::connect(s.base.clone()).await.unwrap());
        }
        let mut peers: Vec<Client> = (0..PEERS)
            .map(|i| {
                let secret = SecretKey::generate(&mut OsRng);
                let peer = Peer {
                    hostname: format!("peer-{i}"),
                    key: encode_public_key(&secret.public_key()),
                    secret,
                    server: template.server.clone(),
                    client: clients[i % CONNECTIONS].clone(),
                    guard: ReplayGuard::default(),
                };
                (peer, Vec::new())
            })
            .collect();
        let joined = fan_out(&mut peers, move |(mut p, d)| {
            let key = key.clone();
            async move {
                p.login(&key).await.unwrap();
                (p, d)
            }
        })
        .await;
        println!("{PEERS} peers registered over gRPC in {joined:.1} s");

        let created = fan_out(&mut peers, |(mut p, mut domains)| async move {
            for port in 0..SESSIONS {
                let request = CreateExposeRequest {
                    port: 8000 + u32::try_from(port).unwrap(),
                    ..CreateExposeRequest::default()
                };
                domains.push(p.create_expose(request).await.unwrap().domain);
            }
            (p, domains)
        })
        .await;
        let total = PEERS * SESSIONS;
        rate("creates over gRPC", total, created, "");

        let renewed = fan_out(&mut peers, |(mut p, domains)| async move {
            for _ in 0..ROUNDS {
                for d in &domains {
                    p.renew_expose(d).await.unwrap();
                }
            }
            (p, domains)
        })
        .await;
        let clients = format!(" ({TASKS} client tasks, {CONNECTIONS} connections)");
        rate("renewals over gRPC", total * ROUNDS, renewed, &clients);
        assert_eq!(
            s.get("/api/reverse-proxies/services")
                .as_array()
                .unwrap()
                .len(),
            total
        );
    });
    in_process();
}

/// The core table alone: the ceiling of the server's rate.
fn in_process() {
    let settings = AccountSettings {
        peer_expose_enabled: true,
        ..AccountSettings::default()
    };
    let peers: Vec<ExposePeer> = (0..PEERS)
        .map(|i| ExposePeer {
            id: PeerId::new(format!("p{i}")),
            name: format!("peer-{i}"),
            groups: Vec::new(),
        })
        .collect();
    let mut table = SessionTable::new(TableConfig::default());
    let t0 = Timestamp::from_secs(1_000);
    let start = Instant::now();
    let mut domains = Vec::new();
    for peer in &peers {
        let ctx = ExposeContext {
            settings: &settings,
            groups: &[],
            custom_domains: &[],
            peer,
        };
        for port in 0..SESSIONS {
            let request = ExposeRequest {
                port: 8000 + i64::try_from(port).unwrap(),
                ..ExposeRequest::default()
            };
            let session = table.create(&ctx, &request, &mut OsRng, t0).unwrap();
            domains.push((peer.id.clone(), session.domain));
        }
    }
    let created = start.elapsed();
    let start = Instant::now();
    for round in 0..ROUNDS {
        let now = t0 + meshplane_core::Duration::from_secs(i64::try_from(round).unwrap() + 1);
        for (peer, domain) in &domains {
            table.renew(peer, domain, now).unwrap();
        }
    }
    let renewed = start.elapsed();
    while table.poll_event().is_some() {}
    let total = domains.len();
    println!(
        "in-process table: {total} creates in {:.1} ms = {:.0}/s; {} renewals in {:.1} ms = {:.0}/s",
        ms(created),
        total as f64 / created.as_secs_f64(),
        total * ROUNDS,
        ms(renewed),
        (total * ROUNDS) as f64 / renewed.as_secs_f64()
    );
}

/// Prints `n` things done in `secs` as a rate.
fn rate(what: &str, n: usize, secs: f64, note: &str) {
    println!(
        "{what}: {n} in {secs:.2} s = {:.0}/s{note}",
        n as f64 / secs
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

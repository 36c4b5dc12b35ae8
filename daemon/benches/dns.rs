//! Answers per second and latency of the peer's resolver, for mesh names
//! (answered from the map) and for forwarded names, against asking the
//! upstream nameserver directly. Everything on 127.0.0.1: the upstream is
//! the tests' small authoritative server (one thread), the resolver is the
//! daemon's [`meshplane::dns::server::Server`] with a zone of 1,000 peers.
//!
//! Latency: one client asking one query at a time. Rate: `CLIENTS`
//! clients, each one query at a time on its own socket.
//!
//! `cargo bench -p meshplane --bench dns`; `MESHPLANE_BENCH_DNS_QUERIES`
//! sets the queries per measurement (default 40,000).

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::dns::{query, ZoneServer};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use meshplane::dns::server::{Answers, Server};
use meshplane::dns::upstream::Upstreams;
use meshplane::dns::zone::Zones;
use meshplane_core::netmap::owned::{CustomZone, Dns, Record};

const CLIENTS: usize = 8;
const PEERS: u32 = 1000;

fn mesh_zone() -> Dns {
    Dns {
        service_enable: true,
        custom_zones: vec![CustomZone {
            domain: "netbird.cloud".to_string(),
            records: (0..PEERS)
                .map(|i| {
                    Record {
                        name: format!("peer-{i}.netbird.cloud"),
                        kind: "A".to_string(),
                        class: "IN".to_string(),
                        ttl: 300,
                        rdata: Ipv4Addr::from(0x6440_0001 + i).to_string(),
                    }
                    .into()
                })
                .collect(),
        }],
        nameserver_groups: Vec::new(),
    }
}

/// Asks `count` queries for `name` one at a time on one socket; the
/// latency of each. Panics on a wrong answer, so the figures are of
/// answers.
fn ask_many(at: SocketAddr, name: &str, count: usize) -> Vec<Duration> {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    socket.connect(at).expect("connect");
    let mut bytes = query(name, RecordType::A).to_vec().expect("encode");
    let mut buf = [0u8; 4096];
    let mut took = Vec::with_capacity(count);
    for i in 0..count {
        let id = (i as u16).to_be_bytes();
        bytes[..2].copy_from_slice(&id);
        let start = Instant::now();
        socket.send(&bytes).expect("send");
        loop {
            let n = socket.recv(&mut buf).expect("an answer within 5 s");
            if buf[..2] == id {
                took.push(start.elapsed());
                let reply = Message::from_vec(&buf[..n]).expect("parse");
                assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
                assert_eq!(reply.answers.len(), 1, "{name}");
                break;
            }
        }
    }
    took
}

fn measure(what: &str, at: SocketAddr, name: &str, queries: usize) {
    let mut one = ask_many(at, name, queries / 4);
    one.sort();
    let pick = |q: f64| one[((one.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6;
    let start = Instant::now();
    let threads: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let name = name.to_string();
            std::thread::spawn(move || ask_many(at, &name, queries / CLIENTS).len())
        })
        .collect();
    let answered: usize = threads.into_iter().map(|t| t.join().expect("client")).sum();
    let rate = answered as f64 / start.elapsed().as_secs_f64();
    println!(
        "{what:<44} latency p50 {:>6.1} µs  p99 {:>7.1} µs   {CLIENTS} clients: {rate:>8.0} answers/s",
        pick(0.5),
        pick(0.99)
    );
}

fn main() {
    let queries: usize = std::env::var("MESHPLANE_BENCH_DNS_QUERIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _inside = runtime.enter();
    let upstream = ZoneServer::serve(
        UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind the upstream"),
        "upstream.test",
        Ipv4Addr::new(192, 0, 2, 10),
    );
    let dns = mesh_zone();
    let resolver = Server::start(
        SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        Answers {
            zones: Zones::from_map(&dns),
            upstreams: Upstreams::from_map(&dns, vec![upstream.at]),
        },
    )
    .expect("start the resolver");
    let at = resolver.local_addr();
    println!("{queries} queries per line, {PEERS} peers in the mesh zone");
    measure(
        "upstream directly",
        upstream.at,
        "www.upstream.test",
        queries,
    );
    measure(
        "peer resolver: mesh name (from the map)",
        at,
        "peer-500.netbird.cloud",
        queries,
    );
    measure(
        "peer resolver: forwarded to the upstream",
        at,
        "www.upstream.test",
        queries,
    );
}

//! Two server processes on one PostgreSQL database: concurrent writes that
//! check before they write (a free port range, a unique name, the next
//! audit sequence number) must not interleave across the processes, and a
//! change made through one server reaches the Sync streams the other holds,
//! and expose sessions work whichever server a call lands on.
//! Runs only when `MESHPLANE_TEST_POSTGRES_URL` is set.

// A failed unwrap is a failed test here.
#![allow(clippy::unwrap_used)]

mod common;

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::client::{assert_status, listed, reusable, run, set_expose, Peer};
use common::{Backend, Server, PG_ENV};
use futures_util::future::BoxFuture;
use meshplane_core::netmap::PeerMap;
use meshplane_proto::v1::{
    CreateExposeRequest, ExposeSession, SealedMessage, ServiceTable, SyncResponse,
};
use meshplane_proxy::{Config, Conn, Dialer, Proxy, Service, Tls};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tonic::{Code, Status, Streaming};

/// Concurrent requests per server.
const WRITERS: usize = 8;

/// Runs `call(server, n)` on `WRITERS` threads per server at once; the
/// answers (status, body), in no particular order.
fn race(
    servers: &[&Server],
    call: impl Fn(&Server, usize) -> (u16, Value) + Sync,
) -> Vec<(u16, Value)> {
    thread::scope(|scope| {
        let handles: Vec<_> = servers
            .iter()
            .enumerate()
            .flat_map(|(i, s)| (0..WRITERS).map(move |n| (i * WRITERS + n, *s)))
            .map(|(n, s)| {
                let call = &call;
                scope.spawn(move || call(s, n))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn two_servers_on_one_database_do_not_lose_updates() {
    if std::env::var(PG_ENV).is_err() {
        eprintln!("{PG_ENV} not set: PostgreSQL multi-instance test skipped");
        return;
    }
    let one = Server::start(Backend::Postgres);
    let two = one.another_instance();
    let range = one.get("/api/accounts")[0]["settings"]["network_range"]
        .as_str()
        .unwrap()
        .to_string();
    let net = range.trim_end_matches("0.0/16").to_string();
    one.insert_peer("edge", "edge", &format!("{net}0.2"), &[]);
    one.insert_peer("app", "app", &format!("{net}0.3"), &[]);
    // A server that has the account decoded sees the other server's writes.
    let names = |s: &Server| -> Vec<String> {
        let list = s.get("/api/peers");
        let mut names: Vec<String> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect();
        names.sort();
        names
    };
    assert_eq!(names(&two), ["app", "edge"]);
    one.put(
        "/api/peers/app",
        json!({"name": "renamed", "ssh_enabled": false, "login_expiration_enabled": false,
            "inactivity_expiration_enabled": false}),
    );
    assert_eq!(names(&two), ["edge", "renamed"]);

    two.post(
        "/api/ingress/peers",
        json!({"peer_id": "edge", "enabled": true, "fallback": true}),
    );

    // Every allocation checks which ports are free, then takes some.
    let answers = race(&[&one, &two], |s, n| {
        s.call(
            "POST",
            "/api/peers/app/ingress/ports",
            Some(json!({"name": format!("a{n}"), "enabled": true,
                "port_ranges": [{"start": 80, "end": 89, "protocol": "tcp"}]})),
        )
    });
    assert!(
        answers.iter().all(|(status, _)| *status == 200),
        "{answers:?}"
    );
    let listed = one.get("/api/peers/app/ingress/ports");
    let mut starts: Vec<i64> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            a["port_range_mappings"][0]["ingress_start"]
                .as_i64()
                .unwrap()
        })
        .collect();
    starts.sort_unstable();
    let expected: Vec<i64> = (0..2 * WRITERS as i64).map(|i| 1024 + 10 * i).collect();
    assert_eq!(starts, expected, "every allocation got ports of its own");

    // Every creation checks that the name is free, then takes it.
    let answers = race(&[&one, &two], |s, _| {
        s.call("POST", "/api/groups", Some(json!({"name": "contended"})))
    });
    let created = answers.iter().filter(|(status, _)| *status == 200).count();
    let refused = answers.iter().filter(|(status, _)| *status == 409).count();
    assert_eq!((created, refused), (1, 2 * WRITERS - 1), "{answers:?}");
    assert_eq!(
        one.get("/api/groups?name=contended")
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Both servers numbered audit events in one sequence, none lost.
    let events = two.get("/api/events/audit");
    let mut ids: Vec<i64> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().parse().unwrap())
        .collect();
    ids.sort_unstable();
    let all: Vec<i64> = (1..=ids.len() as i64).collect();
    assert_eq!(ids, all);
    assert_eq!(audited(&events, "ingress.ports.create").len(), 2 * WRITERS);
}

/// The audit events of `activity` among `events` (an audit log answer).
fn audited<'a>(events: &'a Value, activity: &str) -> Vec<&'a Value> {
    events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["activity_code"] == activity)
        .collect()
}

/// Ends the servers' listening connections: the last statement each ran
/// reads the versions it may have missed.
const LISTENERS_TERMINATE: &str = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
    WHERE datname = '{db}' AND query = 'SELECT account_id, version FROM account_versions'";

/// How long a change made through one server may take to reach a stream
/// held by another (generous: the figure is printed, not asserted).
const ACROSS: Duration = Duration::from_secs(10);

/// Opens messages from `stream` until `pick` takes one, within
/// [`ACROSS`]; what it took and how long that took.
async fn opened_where<M: prost::Message + Default, T>(
    peer: &mut Peer,
    stream: &mut Streaming<SealedMessage>,
    pick: impl Fn(M) -> Option<T>,
) -> (T, Duration) {
    let start = Instant::now();
    loop {
        let left = ACROSS.saturating_sub(start.elapsed());
        let sealed = tokio::time::timeout(left, stream.message())
            .await
            .expect("the change reaches the stream within 10 s")
            .expect("a message, not an error")
            .expect("a message, not the end");
        if let Some(picked) = pick(peer.open(&sealed)) {
            return (picked, start.elapsed());
        }
    }
}

/// Reads maps from `stream` until one satisfies `check`, within [`ACROSS`];
/// that map and how long it took.
async fn map_where(
    peer: &mut Peer,
    stream: &mut Streaming<SealedMessage>,
    check: impl Fn(&Value) -> bool,
) -> (Value, Duration) {
    opened_where(peer, stream, |response: SyncResponse| {
        let map = response.network_map.expect("a map in the response");
        let map = serde_json::to_value(PeerMap::try_from(map).unwrap()).unwrap();
        check(&map).then_some(map)
    })
    .await
}

#[test]
fn changes_through_one_server_reach_streams_on_the_other() {
    if std::env::var(PG_ENV).is_err() {
        eprintln!("{PG_ENV} not set: PostgreSQL multi-instance test skipped");
        return;
    }
    let one = Server::start(Backend::Postgres);
    let two = one.another_instance();
    run(async {
        let key = reusable(&one);
        // A peer registered with and streaming from the second server.
        let mut alpha = Peer::connect(&two, "alpha").await;
        alpha.login(&key).await.unwrap();
        let mut stream = alpha.sync().await;
        let (first, _) = map_where(&mut alpha, &mut stream, |_| true).await;
        assert!(listed(&first).is_empty());

        // A peer joining through the first server appears in its map.
        let mut beta = Peer::connect(&one, "beta").await;
        let joined = Instant::now();
        beta.login(&key).await.unwrap();
        let beta_key = beta.key.clone();
        let (_, _) = map_where(&mut alpha, &mut stream, |m| {
            listed(m) == [beta_key.as_str()]
        })
        .await;
        eprintln!(
            "a join on one server reached a stream on the other in {:?}",
            joined.elapsed()
        );

        // A policy change over REST on the first server: without the
        // Default policy alpha sees nobody.
        let policies = one.get("/api/policies");
        let changed = Instant::now();
        for p in policies.as_array().unwrap() {
            one.delete(&format!("/api/policies/{}", p["id"].as_str().unwrap()));
        }
        let (_, _) = map_where(&mut alpha, &mut stream, |m| listed(m).is_empty()).await;
        eprintln!(
            "a policy change on one server reached a stream on the other in {:?}",
            changed.elapsed()
        );

        // Both servers lose their listening connections and cannot make
        // new ones while a change is made: once they reconnect, the change
        // they missed reaches the stream anyway.
        let all = one.all_group();
        one.postgres_admin("ALTER DATABASE {db} ALLOW_CONNECTIONS false");
        one.postgres_admin(LISTENERS_TERMINATE);
        let changed = Instant::now();
        one.post(
            "/api/policies",
            json!({"name": "all", "enabled": true, "rules": [{"name": "all", "enabled": true,
                "action": "accept", "bidirectional": true, "protocol": "all",
                "sources": [&all], "destinations": [&all]}]}),
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        one.postgres_admin("ALTER DATABASE {db} ALLOW_CONNECTIONS true");
        let (_, _) = map_where(&mut alpha, &mut stream, |m| {
            listed(m) == [beta_key.as_str()]
        })
        .await;
        eprintln!(
            "a change made while no server listened reached the stream {:?} after it",
            changed.elapsed()
        );
        assert!(
            two.log().contains("listening for change notices again"),
            "{}",
            two.log()
        );
    });
}

/// The proxy domain of the servers in these tests (the default).
const PROXY_DOMAIN: &str = "proxy.localhost";
/// What the exposed service answers.
const BODY: &str = "served from the exposing peer";
const LIMIT: &str = "peer has reached the maximum number of active expose sessions (10)";

/// The proxy's way to the exposing peer in this test: the mesh is not
/// here, so a target on the peer's mesh address is the port of the same
/// number on loopback, where the test's service listens.
struct Loopback(Ipv4Addr);

impl Dialer for Loopback {
    fn dial(&self, target: SocketAddrV4) -> BoxFuture<'static, io::Result<Box<dyn Conn>>> {
        let peer = self.0;
        Box::pin(async move {
            if *target.ip() != peer {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionRefused,
                    format!("no peer at {target}"),
                ));
            }
            let stream =
                tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, target.port())).await?;
            Ok(Box::new(stream) as Box<dyn Conn>)
        })
    }
}

/// The proxy's services from a WatchServices table (unprotected ones are
/// enough here).
fn proxied(table: &ServiceTable) -> Arc<Vec<Service>> {
    Arc::new(
        table
            .services
            .iter()
            .map(|s| Service {
                domain: s.domain.clone(),
                target: SocketAddrV4::new(
                    s.target_ip.parse().unwrap(),
                    u16::try_from(s.target_port).unwrap(),
                ),
                backend_tls: false,
                pin_hash: None,
                password_hash: None,
                user_groups: Vec::new(),
            })
            .collect(),
    )
}

/// A local HTTP service answering [`BODY`] to every request; its port.
async fn service() -> u16 {
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{BODY}",
                    BODY.len()
                );
                let _ = conn.write_all(answer.as_bytes()).await;
            });
        }
    });
    port
}

/// GET / through the proxy at `proxy` for `host`: the status and body.
async fn visit(proxy: SocketAddr, host: &str) -> (u16, String) {
    let mut conn = tokio::net::TcpStream::connect(proxy).await.unwrap();
    let request = format!("GET / HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n");
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).await.unwrap();
    let status = answer[9..12].parse().unwrap();
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The domains of the services `s` lists over REST.
fn domains(s: &Server) -> Vec<String> {
    let mut domains: Vec<String> = s
        .get("/api/reverse-proxies/services")
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["domain"].as_str().unwrap().to_string())
        .collect();
    domains.sort();
    domains
}

/// Waits until `s` lists exactly `expected` (sorted) within [`ACROSS`].
fn wait_for_domains(s: &Server, expected: &[String]) {
    let start = Instant::now();
    while domains(s) != expected {
        assert!(
            start.elapsed() < ACROSS,
            "{} lists {:?}, not {expected:?}",
            s.base,
            domains(s)
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// Reads tables from the proxy's `stream` until one lists exactly
/// `expected` (sorted), within [`ACROSS`]; that table.
async fn table_where(
    proxy: &mut Peer,
    stream: &mut Streaming<SealedMessage>,
    expected: &[String],
) -> ServiceTable {
    let (table, _) = opened_where(proxy, stream, |table: ServiceTable| {
        let mut listed: Vec<String> = table.services.iter().map(|s| s.domain.clone()).collect();
        listed.sort();
        (listed == expected).then_some(table)
    })
    .await;
    table
}

/// Whether `map` lets the proxy out to `port`.
fn lets_out(map: &Value, port: u16) -> bool {
    map["firewall_rules"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["direction"] == "out" && r["port"] == port)
}

fn http(port: u16) -> CreateExposeRequest {
    CreateExposeRequest {
        port: u32::from(port),
        ..CreateExposeRequest::default()
    }
}

/// An expose session created through one server is served by a proxy
/// watching the other, renewed and stopped through the other, counts
/// toward the peer's limit on both, and expires once.
#[test]
fn expose_sessions_span_the_servers() {
    if std::env::var(PG_ENV).is_err() {
        eprintln!("{PG_ENV} not set: PostgreSQL multi-instance test skipped");
        return;
    }
    let mut one = Server::start(Backend::Postgres);
    one.restart_with(&["--expose-ttl-secs", "3"]);
    let two = one.another_instance();
    run(async {
        let key = reusable(&one);
        set_expose(&one, true, &[]);
        // The exposing daemon calls the first server; the proxy the second.
        let mut a = Peer::connect(&one, "laptop").await;
        let a_id = a.login(&key).await.unwrap().peer_id;
        let mut x = Peer::connect(&two, "proxy").await;
        let x_id = x.login(&key).await.unwrap().peer_id;
        one.post("/api/groups", json!({"name": "proxies", "peers": [x_id]}));
        let a_ip: Ipv4Addr = one.get(&format!("/api/peers/{a_id}"))["ip"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let mut tables = x.watch_services(PROXY_DOMAIN).await.unwrap();
        table_where(&mut x, &mut tables, &[]).await;
        let mut maps = x.sync().await;
        let (feed, services) = watch::channel(Arc::new(Vec::new()));
        let proxy = Proxy::start(
            Config {
                domain: PROXY_DOMAIN.to_string(),
                listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
                tls: Tls::Plain,
                oidc: None,
                state_dir: None,
            },
            Arc::new(Loopback(a_ip)),
            services,
        )
        .await
        .unwrap();
        let port = service().await;

        // Created through the first server: the proxy on the second serves
        // it, both list it, the second's maps grant the proxy the port.
        let created = a.create_expose(http(port)).await.unwrap();
        let started = Instant::now();
        let only = [created.domain.clone()];
        let table = table_where(&mut x, &mut tables, &only).await;
        eprintln!(
            "a session created on one server reached the proxy on the other in {:?}",
            started.elapsed()
        );
        feed.send(proxied(&table)).unwrap();
        assert_eq!(
            visit(proxy.local_addr(), &created.domain).await,
            (200, BODY.to_string())
        );
        wait_for_domains(&one, &only);
        wait_for_domains(&two, &only);
        map_where(&mut x, &mut maps, |m| lets_out(m, port)).await;

        // Renewed through the second server, and again through the first.
        let mut a_two = a.on(&two).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let renewed = a_two.renew_expose(&created.domain).await.unwrap();
        assert!(renewed > created.expires_at_ms);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(a.renew_expose(&created.domain).await.unwrap() > renewed);

        // Nine more through both servers at once: the tenth and later
        // creates fail whichever server they reach.
        let attempts = (0..12u16).map(|n| {
            let (one, two) = (&one, &two);
            let a = &a;
            async move {
                let mut caller = a.on(if n % 2 == 0 { one } else { two }).await;
                caller.create_expose(http(port + 1 + n)).await
            }
        });
        let answers = futures_util::future::join_all(attempts).await;
        let made: Vec<ExposeSession> = answers.iter().filter_map(|r| r.clone().ok()).collect();
        let refused: Vec<&Status> = answers.iter().filter_map(|r| r.as_ref().err()).collect();
        assert_eq!((made.len(), refused.len()), (9, 3), "{answers:?}");
        for status in refused {
            assert_eq!(
                (status.code(), status.message()),
                (Code::ResourceExhausted, LIMIT)
            );
        }
        let mut all: Vec<String> = made.iter().map(|s| s.domain.clone()).collect();
        all.push(created.domain.clone());
        all.sort();
        wait_for_domains(&one, &all);
        wait_for_domains(&two, &all);
        table_where(&mut x, &mut tables, &all).await;
        // Every session renewed through both servers at once (both batch
        // their renewals and take the account's lock).
        let renewals = all
            .iter()
            .flat_map(|d| [(d, &one), (d, &two)])
            .map(|(d, s)| {
                let a = &a;
                async move { a.on(s).await.renew_expose(d).await }
            });
        let renewed = futures_util::future::join_all(renewals).await;
        assert!(renewed.iter().all(Result::is_ok), "{renewed:?}");

        // Stopped through the second server: gone everywhere.
        a_two.stop_expose(&created.domain).await.unwrap();
        all.retain(|d| d != &created.domain);
        let table = table_where(&mut x, &mut tables, &all).await;
        feed.send(proxied(&table)).unwrap();
        assert_ne!(visit(proxy.local_addr(), &created.domain).await.0, 200);
        wait_for_domains(&one, &all);
        wait_for_domains(&two, &all);
        map_where(&mut x, &mut maps, |m| !lets_out(m, port)).await;
        assert_status(
            a.stop_expose(&created.domain).await,
            Code::NotFound,
            &format!("no active expose session for service {}", created.domain),
        );

        // Nobody renews the others: each expires once, though both
        // servers' reapers see it due.
        wait_for_domains(&one, &[]);
        wait_for_domains(&two, &[]);
        table_where(&mut x, &mut tables, &[]).await;
        let events = two.get("/api/events/audit");
        let mut expired: Vec<String> = audited(&events, "service.peer.expose.expire")
            .iter()
            .map(|e| e["meta"]["domain"].as_str().unwrap().to_string())
            .collect();
        expired.sort();
        assert_eq!(expired, all);
        assert_eq!(audited(&events, "service.peer.unexpose").len(), 1);
        proxy.shutdown().await;
    });
}

//! Two server processes on one PostgreSQL database: concurrent writes that
//! check before they write (a free port range, a unique name, the next
//! audit sequence number) must not interleave across the processes, and a
//! change made through one server reaches the Sync streams the other holds.
//! Runs only when `MESHPLANE_TEST_POSTGRES_URL` is set.

// A failed unwrap is a failed test here.
#![allow(clippy::unwrap_used)]

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::client::{listed, reusable, run, Peer};
use common::{Backend, Server, PG_ENV};
use meshplane_core::netmap::PeerMap;
use meshplane_proto::v1::{SealedMessage, SyncResponse};
use serde_json::{json, Value};
use tonic::Streaming;

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
    let allocations = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["activity_code"] == "ingress.ports.create")
        .count();
    assert_eq!(allocations, 2 * WRITERS);
}

/// Ends the servers' listening connections: the last statement each ran
/// reads the versions it may have missed.
const LISTENERS_TERMINATE: &str = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
    WHERE datname = '{db}' AND query = 'SELECT account_id, version FROM account_versions'";

/// How long a change made through one server may take to reach a stream
/// held by another (generous: the figure is printed, not asserted).
const ACROSS: Duration = Duration::from_secs(10);

/// Reads maps from `stream` until one satisfies `check`, within [`ACROSS`];
/// that map and how long it took.
async fn map_where(
    peer: &mut Peer,
    stream: &mut Streaming<SealedMessage>,
    check: impl Fn(&Value) -> bool,
) -> (Value, Duration) {
    let start = Instant::now();
    loop {
        let left = ACROSS.saturating_sub(start.elapsed());
        let sealed = tokio::time::timeout(left, stream.message())
            .await
            .expect("the change reaches the stream within 10 s")
            .expect("a map, not an error")
            .expect("a map, not the end");
        let response: SyncResponse = peer.open(&sealed);
        let map = response.network_map.expect("a map in the response");
        let map = serde_json::to_value(PeerMap::try_from(map).unwrap()).unwrap();
        if check(&map) {
            return (map, start.elapsed());
        }
    }
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

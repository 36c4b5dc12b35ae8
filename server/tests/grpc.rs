//! The management gRPC service of the real server binary, driven by a real
//! tonic client holding its own X25519 (WireGuard) key pair: registration
//! with setup keys, Sync streams that follow REST changes, and refusals of
//! bad keys, replays, forgeries and garbage.

// A failed unwrap is a failed test here.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::client::{assert_status, listed, now, reusable, run, setup_key, Peer, PROMPT};
use common::Server;
use crypto_box::SecretKey;
use meshplane_proto::envelope::seal;
use meshplane_proto::v1::{CreateExposeRequest, SealedMessage};
use rand_core::OsRng;
use serde_json::{json, Value};
use tonic::Code;

/// Waits until `check` holds on the REST view of peer `id`.
fn wait_for_peer(s: &Server, id: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + PROMPT;
    loop {
        let peer = s.get(&format!("/api/peers/{id}"));
        if check(&peer) {
            return peer;
        }
        assert!(Instant::now() < deadline, "peer never matched: {peer}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn peers_join_and_follow_rest_changes(s: &mut Server) {
    run(async {
        let key = reusable(s);
        let mut a = Peer::connect(s, "alpha").await;
        let la = a.login(&key.to_lowercase()).await.unwrap();
        let rest_a = s.get(&format!("/api/peers/{}", la.peer_id));
        assert_eq!(rest_a["name"], "alpha");
        assert_eq!(rest_a["os"], "linux 12");
        // The address the peer's login came from.
        assert_eq!(rest_a["connection_ip"], "127.0.0.1");
        assert_eq!(
            la.address.split('/').next().unwrap(),
            rest_a["ip"].as_str().unwrap()
        );
        assert!(la.address.contains('/'));
        assert_eq!(la.fqdn, format!("alpha.{}", la.dns_domain));
        assert_eq!(rest_a["dns_label"], la.fqdn.as_str());
        let all = s.all_group();
        assert!(rest_a["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["id"] == all.as_str()));
        assert!(s.activities().contains(&"peer.setupkey.add".to_string()));

        let mut b = Peer::connect(s, "beta").await;
        let lb = b.login(&key).await.unwrap();
        assert_ne!(la.peer_id, lb.peer_id);
        let keys = s.get("/api/setup-keys");
        assert_eq!(keys[0]["used_times"], 2);
        assert_eq!(s.get("/api/peers").as_array().unwrap().len(), 2);

        // Both sync and each sees the other.
        let mut sa = a.sync().await;
        let ma = a.next_map(&mut sa).await;
        assert_eq!(listed(&ma), [b.key.as_str()]);
        assert_eq!(ma["peer_config"]["address"], la.address.as_str());
        let mut sb = b.sync().await;
        let mb = b.next_map(&mut sb).await;
        assert_eq!(listed(&mb), [a.key.as_str()]);
        wait_for_peer(s, &lb.peer_id, |p| p["connected"] == true);

        // A REST change: without the Default policy nobody sees anybody.
        let policies = s.get("/api/policies");
        let changed = Instant::now();
        for p in policies.as_array().unwrap() {
            s.delete(&format!("/api/policies/{}", p["id"].as_str().unwrap()));
        }
        assert!(listed(&a.next_map(&mut sa).await).is_empty());
        eprintln!("REST change reached the stream in {:?}", changed.elapsed());
        assert!(listed(&b.next_map(&mut sb).await).is_empty());

        // A group-limited policy brings them back together.
        let web = s.post(
            "/api/groups",
            json!({"name": "web", "peers": [la.peer_id.clone()]}),
        );
        let rule = json!({"name": "r", "enabled": true, "action": "accept",
            "bidirectional": false, "protocol": "tcp", "ports": ["8080"],
            "sources": [all], "destinations": [web["id"]]});
        s.post(
            "/api/policies",
            json!({"name": "web", "enabled": true, "rules": [rule]}),
        );
        assert_eq!(listed(&a.next_map(&mut sa).await), [b.key.as_str()]);
        assert_eq!(listed(&b.next_map(&mut sb).await), [a.key.as_str()]);

        // Deleting a peer closes its stream and takes it out of the other map.
        s.delete(&format!("/api/peers/{}", lb.peer_id));
        let end = tokio::time::timeout(PROMPT, sb.message())
            .await
            .expect("the stream ends within 2 s");
        assert_status(end, Code::NotFound, "peer is not registered");
        assert!(listed(&a.next_map(&mut sa).await).is_empty());

        // Hanging up marks the peer disconnected, with last_seen.
        let before = wait_for_peer(s, &la.peer_id, |p| p["connected"] == true);
        drop(sa);
        let after = wait_for_peer(s, &la.peer_id, |p| p["connected"] == false);
        assert_ne!(before["last_seen"], after["last_seen"]);

        // A registered peer logs in again without a setup key.
        let again = a.login("").await.unwrap();
        assert_eq!(again.peer_id, la.peer_id);
        assert_eq!(again.address, la.address);
        assert_eq!(s.get("/api/peers").as_array().unwrap().len(), 1);
    });
}

fn setup_key_refusals(s: &mut Server) {
    run(async {
        let mut p = Peer::connect(s, "gamma").await;
        assert_status(
            p.login("A2C8E62B-38F5-4553-B31E-DD66C696CEBB").await,
            Code::PermissionDenied,
            "couldn't add peer: setup key is invalid",
        );
        assert_status(
            p.login("").await,
            Code::NotFound,
            "peer is not registered: a setup key is required to register it",
        );

        let (revoked, id) = setup_key(s, "reusable", 0);
        s.put(
            &format!("/api/setup-keys/{id}"),
            json!({"revoked": true, "auto_groups": []}),
        );
        assert_status(
            p.login(&revoked).await,
            Code::PermissionDenied,
            "couldn't add peer: setup key is revoked",
        );

        let (expiring, _) = setup_key(s, "reusable", 1);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_status(
            p.login(&expiring).await,
            Code::PermissionDenied,
            "couldn't add peer: setup key has expired",
        );

        let (once, _) = setup_key(s, "one-off", 0);
        p.login(&once).await.unwrap();
        let mut q = Peer::connect(s, "delta").await;
        assert_status(
            q.login(&once).await,
            Code::PermissionDenied,
            "couldn't add peer: setup key has reached its usage limit",
        );
        // Nothing was registered by the refused attempts.
        assert_eq!(s.get("/api/peers").as_array().unwrap().len(), 1);
    });
}

/// `message` sealed as from `p` by someone holding `thief` instead of its
/// key.
fn forge<M: prost::Message>(p: &Peer, thief: &SecretKey, message: &M) -> SealedMessage {
    seal(message, &p.key, thief, &p.server, now(), &mut OsRng)
}

fn sealing_is_enforced(s: &mut Server) {
    run(async {
        let key = reusable(s);
        let mut p = Peer::connect(s, "epsilon").await;

        // The same sealed bytes twice: the second is a replay.
        let sealed = p.seal(&p.login_request(&key));
        p.client.login(sealed.clone()).await.unwrap();
        assert_status(
            p.client.login(sealed).await,
            Code::Unauthenticated,
            "message was already received",
        );

        // Claiming the peer's key without holding it.
        let thief = SecretKey::generate(&mut OsRng);
        let forged = forge(&p, &thief, &p.login_request(""));
        assert_status(
            p.client.login(forged.clone()).await,
            Code::Unauthenticated,
            "message could not be authenticated",
        );
        assert_status(
            p.client.sync(forged).await,
            Code::Unauthenticated,
            "message could not be authenticated",
        );
        let garbled = SealedMessage {
            wg_pub_key: "not a key".into(),
            body: vec![1, 2, 3],
        };
        assert_status(
            p.client.login(garbled).await,
            Code::InvalidArgument,
            "invalid WireGuard public key",
        );

        // The expose calls are sealed too: a forged one is refused before
        // anything else.
        let forged = forge(&p, &thief, &CreateExposeRequest::default());
        assert_status(
            p.client.create_expose(forged).await,
            Code::Unauthenticated,
            "message could not be authenticated",
        );
    });
}

fn garbage_does_not_hurt(s: &mut Server) {
    for junk in [
        &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage"[..],
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\xff\xff\xff\xff\xff\xff\xff\xff\xff",
        b"POST /meshplane.management.v1.Management/Login HTTP/1.1\r\ncontent-type: application/grpc\r\ncontent-length: 5\r\n\r\n\x00\x00\x00\x00\xff",
    ] {
        let mut c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        c.write_all(junk).unwrap();
        let mut buf = [0u8; 512];
        let _ = c.read(&mut buf);
    }
    run(async {
        // A sealed body that is not a LoginRequest inside.
        let mut p = Peer::connect(s, "zeta").await;
        let mut sealed = p.seal(&p.login_request(""));
        sealed.body.truncate(10);
        assert_status(
            p.client.login(sealed).await,
            Code::InvalidArgument,
            "sealed message is too short",
        );
    });
    assert_eq!(s.get("/api/peers"), json!([]));
}

fn server_key_survives_restart(s: &mut Server) {
    run(async {
        let key = reusable(s);
        let mut p = Peer::connect(s, "eta").await;
        let before = p.server.clone();
        let joined = p.login(&key).await.unwrap();
        let path = format!("/api/peers/{}", joined.peer_id);
        assert_eq!(s.get(&path)["connected"], true);
        s.crash_and_restart();
        // Nothing can be connected to a server that just started.
        assert_eq!(s.get(&path)["connected"], false);
        let mut again = Peer::connect(s, "eta").await;
        assert_eq!(again.server, before);
        // The same WireGuard key logs in as the same peer.
        again.secret = p.secret.clone();
        again.key = p.key.clone();
        assert_eq!(again.login("").await.unwrap().peer_id, joined.peer_id);
    });
}

fn shutdown_ends_open_streams(s: &mut Server) {
    run(async {
        let key = reusable(s);
        let mut p = Peer::connect(s, "theta").await;
        p.login(&key).await.unwrap();
        let mut stream = p.sync().await;
        p.next_map(&mut stream).await;
        let status = s.terminate(Duration::from_secs(5));
        assert!(
            status.is_some_and(|st| st.success()),
            "the server did not stop with a stream open: {status:?}"
        );
        let end = tokio::time::timeout(PROMPT, stream.message())
            .await
            .expect("the stream ends");
        assert_status(end, Code::Unavailable, "the server is shutting down");
    });
}

/// An ephemeral peer offline for the configured period (2 s here) is
/// deleted as a REST delete would: gone from REST and from its groups, an
/// audit event, and the other peers' maps updated. A connected ephemeral
/// peer stays.
fn ephemeral_peers_go_after_being_offline(s: &mut Server) {
    s.restart_with(&["--ephemeral-offline-secs", "2"]);
    run(async {
        let body = json!({"name": "ephemeral key", "type": "reusable", "expires_in": 0,
            "auto_groups": [], "usage_limit": 0, "ephemeral": true});
        let key = s.post("/api/setup-keys", body)["key"]
            .as_str()
            .unwrap()
            .to_string();
        let mut gone = Peer::connect(s, "gone").await;
        let lg = gone.login(&key).await.unwrap();
        let mut stays = Peer::connect(s, "stays").await;
        let ls = stays.login(&key).await.unwrap();
        let mut ss = stays.sync().await;
        assert_eq!(listed(&stays.next_map(&mut ss).await), [gone.key.as_str()]);
        let mut sg = gone.sync().await;
        gone.next_map(&mut sg).await;
        let rest = wait_for_peer(s, &lg.peer_id, |p| p["connected"] == true);
        assert_eq!(rest["ephemeral"], true);

        drop(sg);
        let went = Instant::now();
        wait_for_peer(s, &lg.peer_id, |p| p["connected"] == false);
        let path = format!("/api/peers/{}", lg.peer_id);
        let deadline = Instant::now() + Duration::from_secs(10);
        while s.call("GET", &path, None).0 != 404 {
            assert!(Instant::now() < deadline, "the ephemeral peer was kept");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let after = went.elapsed();
        assert!(
            after >= Duration::from_millis(1500),
            "removed too early: {after:?}"
        );

        // The other peer's map no longer lists it; the group lost it; the
        // removal is audited; the connected one is still there.
        let map = stays.next_map(&mut ss).await;
        assert!(listed(&map).is_empty(), "{map}");
        let all = s.get(&format!("/api/groups/{}", s.all_group()));
        assert_eq!(all["peers_count"], 1, "{all}");
        assert!(s.activities().contains(&"user.peer.delete".to_string()));
        tokio::time::sleep(Duration::from_secs(3)).await;
        let kept = s.get(&format!("/api/peers/{}", ls.peer_id));
        assert_eq!(kept["connected"], true);
        // Its key no longer leads to a peer.
        assert_status(
            gone.login("").await,
            Code::NotFound,
            "peer is not registered: a setup key is required to register it",
        );
    });
}

both_stores!(
    ephemeral_peers_go_after_being_offline,
    peers_join_and_follow_rest_changes,
    setup_key_refusals,
    sealing_is_enforced,
    garbage_does_not_hurt,
    server_key_survives_restart,
    shutdown_ends_open_streams,
);

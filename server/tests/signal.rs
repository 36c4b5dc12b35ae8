//! The signal exchange of the real server binary, driven by real tonic
//! clients holding registered peers' WireGuard keys: sealed bodies pass
//! between peers that see each other, and nowhere else.

// A failed unwrap is a failed test here.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::client::{assert_status, now, reusable, run, Peer, PROMPT};
use common::Server;
use crypto_box::SecretKey;
use meshplane_proto::signal::body::Type;
use meshplane_proto::signal::client::{Received, SignalClient, SignalError, SignalStream};
use meshplane_proto::signal::signal_exchange_client::SignalExchangeClient;
use meshplane_proto::signal::{
    prove, seal_body, Body, EncryptedMessage, HEADER_PEER_ID, HEADER_PROOF, HEADER_REGISTERED,
};
use rand_core::OsRng;
use serde_json::json;
use tonic::{Code, Request, Status};

/// A registered peer and its signal client.
async fn registered(s: &Server, setup_key: &str, name: &str) -> (Peer, SignalClient) {
    let mut peer = Peer::connect(s, name).await;
    peer.login(setup_key).await.unwrap();
    let signal =
        SignalClient::new(s.channel().await, peer.secret.clone()).proving_to(peer.server.clone());
    assert_eq!(signal.public_key(), peer.key);
    (peer, signal)
}

fn body(kind: Type, payload: &str) -> Body {
    Body {
        r#type: kind.into(),
        payload: payload.into(),
        wg_listen_port: 51820,
        net_bird_version: "meshplane/test".into(),
        relay_server_address: Some("rel://127.0.0.1:1".into()),
        ..Body::default()
    }
}

async fn next(stream: &mut SignalStream) -> Received {
    tokio::time::timeout(PROMPT, stream.recv())
        .await
        .expect("a message within 2 s")
        .expect("no error")
        .expect("not the end")
}

/// The status of a signal call that must fail.
fn refused<T: std::fmt::Debug>(got: Result<T, SignalError>) -> Status {
    match got.expect_err("refused") {
        SignalError::Status(status) => status,
        other => panic!("not a status: {other}"),
    }
}

/// Sends until the server answers with `code`: visibility follows store
/// changes a moment after the REST call returns.
async fn until_refused(from: &SignalClient, to: &str, code: Code) -> Status {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match from.send(to, &body(Type::Candidate, "probe")).await {
            Err(SignalError::Status(status)) if status.code() == code => return status,
            other => assert!(
                Instant::now() < deadline,
                "still not refused with {code:?}: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn peers_exchange_sealed_bodies() {
    let s = Server::start(common::Backend::Sqlite);
    run(async {
        let key = reusable(&s);
        let (a, sa) = registered(&s, &key, "alpha").await;
        let (b, sb) = registered(&s, &key, "beta").await;
        let mut a_in = sa.connect().await.unwrap();
        let mut b_in = sb.connect().await.unwrap();

        let offer = body(Type::Offer, "ufrag:pwd");
        sa.send(&b.key, &offer).await.unwrap();
        let got = next(&mut b_in).await;
        assert_eq!(got.from, a.key);
        assert_eq!(got.body, offer);

        let answer = body(Type::Answer, "ufrag2:pwd2");
        sb.send(&a.key, &answer).await.unwrap();
        assert_eq!(next(&mut a_in).await.body, answer);

        // A liveness probe addressed to oneself comes back.
        let heartbeat = Body {
            r#type: Type::Heartbeat.into(),
            ..Body::default()
        };
        sa.send(&a.key, &heartbeat).await.unwrap();
        assert_eq!(next(&mut a_in).await.body, heartbeat);

        // Someone holding another key writes under a's name: the server
        // passes it (it cannot tell), b cannot open it and skips it.
        let thief = SecretKey::generate(&mut OsRng);
        let mut raw = SignalExchangeClient::new(s.channel().await);
        let b_public = meshplane_proto::envelope::parse_public_key(&b.key).unwrap();
        raw.send(EncryptedMessage {
            key: a.key.clone(),
            remote_key: b.key.clone(),
            body: seal_body(&offer, &thief, &b_public, &mut OsRng),
        })
        .await
        .unwrap();
        let candidate = body(Type::Candidate, "candidate:1 1 udp 1 127.0.0.1 1 typ host");
        sa.send(&b.key, &candidate).await.unwrap();
        assert_eq!(next(&mut b_in).await.body, candidate);
        assert_eq!(b_in.unopened(), 1);

        // A second stream of b receives too; a sixth closes the oldest.
        let mut b_again = sb.connect().await.unwrap();
        sa.send(&b.key, &offer).await.unwrap();
        assert_eq!(next(&mut b_in).await.body, offer);
        assert_eq!(next(&mut b_again).await.body, offer);
        let _more = (
            sb.connect().await.unwrap(),
            sb.connect().await.unwrap(),
            sb.connect().await.unwrap(),
        );
        let closed = tokio::time::timeout(PROMPT, b_in.recv()).await.unwrap();
        assert_eq!(refused(closed).code(), Code::ResourceExhausted);

        // Naming b's key without proving it: refused while b's proven
        // streams are open, so nobody can displace them or listen in.
        assert_status(
            raw_stream(&s, &b.key, None).await,
            Code::PermissionDenied,
            "this peer's signal streams prove its key: one without the proof is refused",
        );
        // A proof made with another key, or one already used, fails.
        let forged = prove(&b.key, &thief, &b.server, now(), &mut OsRng);
        assert_status(
            raw_stream(&s, &b.key, Some(&forged)).await,
            Code::Unauthenticated,
            "message could not be authenticated",
        );
        let proof = prove(&b.key, &b.secret, &b.server, now(), &mut OsRng);
        raw_stream(&s, &b.key, Some(&proof)).await.unwrap();
        assert_status(
            raw_stream(&s, &b.key, Some(&proof)).await,
            Code::Unauthenticated,
            "message was already received",
        );
    });
}

/// A `ConnectStream` call naming `key`, with `proof` if given; the
/// response (the stream stays open while it is held).
async fn raw_stream(
    s: &Server,
    key: &str,
    proof: Option<&str>,
) -> Result<tonic::Response<tonic::Streaming<EncryptedMessage>>, Status> {
    let mut request = Request::new(futures_util::stream::pending::<EncryptedMessage>());
    request
        .metadata_mut()
        .insert(HEADER_PEER_ID, key.parse().unwrap());
    if let Some(proof) = proof {
        request
            .metadata_mut()
            .insert(HEADER_PROOF, proof.parse().unwrap());
    }
    SignalExchangeClient::new(s.channel().await)
        .connect_stream(request)
        .await
}

#[test]
fn netbird_clients_register_and_write_into_the_stream() {
    let s = Server::start(common::Backend::Sqlite);
    run(async {
        let key = reusable(&s);
        let (a, sa) = registered(&s, &key, "alpha").await;
        let (b, sb) = registered(&s, &key, "beta").await;
        let mut b_in = sb.connect().await.unwrap();

        // As NetBird's client connects: the peer-id header, and the
        // registration header in the answer.
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let mut request = Request::new(tokio_stream_of(rx));
        request
            .metadata_mut()
            .insert(HEADER_PEER_ID, a.key.parse().unwrap());
        let mut raw = SignalExchangeClient::new(s.channel().await);
        let response = raw.connect_stream(request).await.unwrap();
        assert_eq!(response.metadata().get(HEADER_REGISTERED).unwrap(), "1");

        // Messages written into the stream are routed like Send, under the
        // stream's key only.
        let b_public = meshplane_proto::envelope::parse_public_key(&b.key).unwrap();
        let offer = body(Type::Offer, "from the stream");
        tx.send(EncryptedMessage {
            key: a.key.clone(),
            remote_key: b.key.clone(),
            body: seal_body(&offer, &a.secret, &b_public, &mut OsRng),
        })
        .await
        .unwrap();
        let got = next(&mut b_in).await;
        assert_eq!((got.from.as_str(), got.body), (a.key.as_str(), offer));
        // Under another key than the stream's: dropped.
        tx.send(EncryptedMessage {
            key: b.key.clone(),
            remote_key: b.key.clone(),
            body: seal_body(&body(Type::Offer, "x"), &b.secret, &b_public, &mut OsRng),
        })
        .await
        .unwrap();
        let after = body(Type::Candidate, "after");
        sa.send(&b.key, &after).await.unwrap();
        assert_eq!(next(&mut b_in).await.body, after);
    });
}

/// A request stream fed from `rx`.
fn tokio_stream_of(
    rx: tokio::sync::mpsc::Receiver<EncryptedMessage>,
) -> impl futures_util::Stream<Item = EncryptedMessage> {
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) })
}

#[test]
fn strangers_and_bad_requests_are_refused() {
    let s = Server::start(common::Backend::Sqlite);
    run(async {
        let key = reusable(&s);
        let (a, sa) = registered(&s, &key, "alpha").await;
        let stranger = SignalClient::new(s.channel().await, SecretKey::generate(&mut OsRng));
        assert_status(
            stranger.connect().await.map_err(|e| refused::<()>(Err(e))),
            Code::PermissionDenied,
            "peer is not registered",
        );
        assert_status(
            stranger
                .send(&a.key, &body(Type::Offer, "x"))
                .await
                .map_err(|e| refused::<()>(Err(e))),
            Code::PermissionDenied,
            "peer is not registered",
        );
        // A peer cannot reach a key that is no peer.
        assert_status(
            sa.send(stranger.public_key(), &body(Type::Offer, "x"))
                .await
                .map_err(|e| refused::<()>(Err(e))),
            Code::PermissionDenied,
            "the remote peer is not reachable from this peer",
        );

        let mut raw = SignalExchangeClient::new(s.channel().await);
        let idle = futures_util::stream::pending::<EncryptedMessage>();
        assert_status(
            raw.connect_stream(Request::new(idle)).await,
            Code::FailedPrecondition,
            "missing connection header: x-wiretrustee-peer-id",
        );
        assert_status(
            raw_stream(&s, "AAAA", None).await,
            Code::InvalidArgument,
            "invalid x-wiretrustee-peer-id: must be a WireGuard public key in base64",
        );
        let garbled = raw_stream(&s, &a.key, Some("not-base64!"))
            .await
            .unwrap_err();
        assert_eq!(garbled.code(), Code::InvalidArgument, "{garbled:?}");
        assert_status(
            raw.send(EncryptedMessage {
                key: "not a key".into(),
                remote_key: a.key.clone(),
                body: Vec::new(),
            })
            .await,
            Code::InvalidArgument,
            "invalid key: must be a WireGuard public key in base64",
        );
        assert_status(
            raw.send(EncryptedMessage {
                key: a.key.clone(),
                remote_key: "AAAA".into(),
                body: Vec::new(),
            })
            .await,
            Code::InvalidArgument,
            "invalid remoteKey: must be a WireGuard public key in base64",
        );
        // A message over the size limit is refused before it is read.
        let huge = raw
            .send(EncryptedMessage {
                key: a.key.clone(),
                remote_key: a.key.clone(),
                body: vec![0; 64 * 1024],
            })
            .await
            .unwrap_err();
        assert_eq!(huge.code(), Code::OutOfRange, "{huge:?}");
    });
}

#[test]
fn only_peers_that_see_each_other_signal() {
    let s = Server::start(common::Backend::Sqlite);
    run(async {
        let key = reusable(&s);
        let (a, sa) = registered(&s, &key, "alpha").await;
        let (b, sb) = registered(&s, &key, "beta").await;
        let (c, sc) = registered(&s, &key, "gamma").await;
        let mut b_in = sb.connect().await.unwrap();
        sa.send(&b.key, &body(Type::Offer, "before")).await.unwrap();
        assert_eq!(next(&mut b_in).await.body.payload, "before");

        // Without the Default policy nobody sees anybody.
        for p in s.get("/api/policies").as_array().unwrap() {
            s.delete(&format!("/api/policies/{}", p["id"].as_str().unwrap()));
        }
        let status = until_refused(&sa, &b.key, Code::PermissionDenied).await;
        assert_eq!(
            status.message(),
            "the remote peer is not reachable from this peer"
        );
        assert_status(
            sb.send(&a.key, &body(Type::Offer, "x"))
                .await
                .map_err(|e| refused::<()>(Err(e))),
            Code::PermissionDenied,
            "the remote peer is not reachable from this peer",
        );

        // A policy between a's and b's groups: they signal, c reaches
        // neither and neither reaches c.
        let group = |name: &str, peer: &Peer| {
            let id = s
                .get("/api/peers")
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["name"] == peer.hostname)
                .unwrap()["id"]
                .clone();
            s.post("/api/groups", json!({"name": name, "peers": [id]}))["id"]
                .as_str()
                .unwrap()
                .to_string()
        };
        let (ga, gb) = (group("ga", &a), group("gb", &b));
        let rule = json!({"name": "a-b", "enabled": true, "action": "accept",
            "bidirectional": true, "protocol": "all",
            "sources": [ga], "destinations": [gb]});
        s.post(
            "/api/policies",
            json!({"name": "a-b", "enabled": true, "rules": [rule]}),
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while sa.send(&b.key, &body(Type::Offer, "again")).await.is_err() {
            assert!(Instant::now() < deadline, "the new policy never applied");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(next(&mut b_in).await.body.payload, "again");
        for (from, to) in [(&sc, &a.key), (&sc, &b.key), (&sa, &c.key), (&sb, &c.key)] {
            let status = refused(from.send(to, &body(Type::Offer, "x")).await);
            assert_eq!(status.code(), Code::PermissionDenied);
        }

        // A deleted peer can neither send nor be reached, nor connect.
        let b_id = s
            .get("/api/peers")
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "beta")
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        s.delete(&format!("/api/peers/{b_id}"));
        until_refused(&sa, &b.key, Code::PermissionDenied).await;
        let status = refused(sb.connect().await);
        assert_eq!(
            (status.code(), status.message()),
            (Code::PermissionDenied, "peer is not registered")
        );
    });
}

/// Waits until `attempt` is refused with PERMISSION_DENIED and `message`.
async fn until_denied<F, Fut, T>(attempt: F, message: &str)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, SignalError>>,
    T: std::fmt::Debug,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match attempt().await {
            Err(SignalError::Status(s))
                if s.code() == Code::PermissionDenied && s.message() == message =>
            {
                return
            }
            other => assert!(Instant::now() < deadline, "not refused: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn pending_and_blocked_peers_cannot_signal() {
    let s = Server::start(common::Backend::Sqlite);
    run(async {
        let key = reusable(&s);
        let (a, sa) = registered(&s, &key, "alpha").await;
        let (b, sb) = registered(&s, &key, "beta").await;
        let id_of = |name: &str| {
            s.get("/api/peers")
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["name"] == name)
                .unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        };
        let (a_id, b_id) = (id_of("alpha"), id_of("beta"));
        let offer = body(Type::Offer, "x");

        // b waits for approval: it may not connect, and a cannot reach it.
        let approval = |required: bool| json!({"name": "beta", "approval_required": required});
        s.put(&format!("/api/peers/{b_id}"), approval(true));
        until_denied(|| sb.connect(), "peer is pending approval").await;
        until_denied(
            || sa.send(&b.key, &offer),
            "the remote peer is not reachable from this peer",
        )
        .await;
        s.put(&format!("/api/peers/{b_id}"), approval(false));
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut b_in = loop {
            match sb.connect().await {
                Ok(stream) => break stream,
                Err(e) => assert!(Instant::now() < deadline, "still refused: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        sa.send(&b.key, &body(Type::Offer, "approved"))
            .await
            .unwrap();
        assert_eq!(next(&mut b_in).await.body.payload, "approved");

        // a's user is blocked: a may neither send nor connect.
        let user = s.post(
            "/api/users",
            json!({"email": "ann@example.com", "name": "Ann", "role": "user",
                "auto_groups": [], "is_service_user": false}),
        )["id"]
            .as_str()
            .unwrap()
            .to_string();
        // set_peer_user runs its own runtime: off this one's threads.
        std::thread::scope(|scope| {
            scope.spawn(|| s.set_peer_user(&a_id, &user));
        });
        s.put(
            &format!("/api/users/{user}"),
            json!({"role": "user", "auto_groups": [], "is_blocked": true}),
        );
        until_denied(|| sa.send(&b.key, &offer), "user is blocked").await;
        until_denied(|| sa.connect(), "user is blocked").await;
        // Nor does it receive: b cannot reach it.
        let status = refused(sb.send(&a.key, &offer).await);
        assert_eq!(
            (status.code(), status.message()),
            (
                Code::PermissionDenied,
                "the remote peer is not reachable from this peer"
            )
        );
    });
}

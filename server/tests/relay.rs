//! The relay on the real server binary's port: peers log in over sealed
//! gRPC, get a relay token and the relay URL with their login (and from
//! the RelayToken call), and relay packets to each other through
//! `GET /relay` on the same listener; the token key is published for
//! relays run apart, one of which (`meshplane relay`) runs here as a
//! process too.

// A failed unwrap is a failed test here.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::client::{assert_status, now, reusable, run, Peer};
use common::{meshplane_binary, Server};
use meshplane_proto::v1::{RelayConfig, RelayTokenRequest, RelayTokenResponse};
use meshplane_relay::{PeerId, RelayClient, RelayReceiver, RelaySender, Token, TokenVerifier};
use tonic::Code;

const PROMPT: Duration = Duration::from_secs(10);

/// The token of a relay configuration.
fn token(relay: &RelayConfig) -> Token {
    Token {
        payload: relay.token_payload.clone(),
        signature: relay.token_signature.clone(),
    }
}

/// A fresh relay configuration from the RelayToken call.
async fn relay_token(peer: &mut Peer) -> Result<RelayConfig, tonic::Status> {
    let sealed = peer.seal(&RelayTokenRequest {});
    let answer = peer.client.relay_token(sealed).await?.into_inner();
    let opened: RelayTokenResponse = peer.open(&answer);
    Ok(opened.relay.unwrap())
}

/// A registered peer and its relay configuration from the login.
async fn logged_in(s: &Server, name: &str, setup_key: &str) -> (Peer, RelayConfig) {
    let mut peer = Peer::connect(s, name).await;
    let login = peer.login(setup_key).await.unwrap();
    (peer, login.relay.unwrap())
}

async fn connect(url: &str, peer: &Peer, relay: &RelayConfig) -> (RelaySender, RelayReceiver) {
    RelayClient::connect(url, &peer.key, &token(relay))
        .await
        .unwrap()
}

/// A forwards to B and B to A through the relay at `url`.
async fn relays_both_ways(url: &str, a: (&Peer, &RelayConfig), b: (&Peer, &RelayConfig)) {
    let (to_b, mut at_a) = connect(url, a.0, a.1).await;
    let (to_a, mut at_b) = connect(url, b.0, b.1).await;
    let (id_a, id_b) = (
        PeerId::from_public_key(&a.0.key),
        PeerId::from_public_key(&b.0.key),
    );
    to_b.send(&id_b, b"ciphertext for b").await.unwrap();
    let got = tokio::time::timeout(PROMPT, at_b.recv()).await.unwrap();
    assert_eq!(got, Some((id_a, b"ciphertext for b".to_vec())));
    to_a.send(&id_a, b"ciphertext for a").await.unwrap();
    let got = tokio::time::timeout(PROMPT, at_a.recv()).await.unwrap();
    assert_eq!(got, Some((id_b, b"ciphertext for a".to_vec())));
}

fn the_servers_relay_carries_logged_in_peers(s: &mut Server) {
    let key = reusable(s);
    let base = s.base.clone();
    run(async {
        let (a, relay_a) = logged_in(s, "alpha", &key).await;
        let (mut b, relay_b) = logged_in(s, "beta", &key).await;
        // Its own relay, at the address the peer reached the server on.
        let own = format!("rel://{}", base.trim_start_matches("http://"));
        assert_eq!(relay_a.urls, vec![own.clone()]);
        let expires_in = relay_a.expires_at_ms - now().as_millis();
        assert!(
            (3_500_000..=3_600_000).contains(&expires_in),
            "{expires_in}"
        );
        relays_both_ways(&own, (&a, &relay_a), (&b, &relay_b)).await;
        // A token from the RelayToken call works as well.
        let renewed = relay_token(&mut b).await.unwrap();
        assert_eq!(renewed.urls, vec![own.clone()]);
        relays_both_ways(&own, (&a, &relay_a), (&b, &renewed)).await;
        // B cannot use A's token.
        let stolen = RelayClient::connect(&own, &b.key, &token(&relay_a)).await;
        assert!(stolen.is_err());
        // A key that never registered gets no token.
        let mut stranger = Peer::connect(s, "stranger").await;
        assert_status(
            relay_token(&mut stranger).await,
            Code::NotFound,
            "peer is not registered",
        );
    });
}

fn the_token_key_is_published_and_kept(s: &mut Server) {
    let key = reusable(s);
    let document = s.get("/relay/v1/key");
    assert_eq!(document["algorithm"], "ed25519");
    let verifier = TokenVerifier::from_base64(document["key"].as_str().unwrap()).unwrap();
    run(async {
        let (a, relay_a) = logged_in(s, "alpha", &key).await;
        let wire = token(&relay_a).to_wire().unwrap();
        let id = PeerId::from_public_key(&a.key);
        verifier
            .verify(&wire, &id, now().as_millis() / 1000)
            .unwrap();
    });
    s.crash_and_restart();
    assert_eq!(s.get("/relay/v1/key"), document);
}

fn relay_urls_are_advertised(s: &mut Server) {
    s.restart_with(&[
        "--relay-url",
        "rels://relay-1.example:443",
        "--relay-url",
        "rel://relay-2.example:8080",
    ]);
    let key = reusable(s);
    run(async {
        let (_, relay) = logged_in(s, "alpha", &key).await;
        assert_eq!(
            relay.urls,
            vec!["rels://relay-1.example:443", "rel://relay-2.example:8080"]
        );
    });
}

/// An upgraded connection leaves the listener's idle and header
/// watchdogs: relaying works after both have passed many times over.
fn relay_connections_outlive_the_listeners_timeouts(s: &mut Server) {
    s.restart_with(&[
        "--idle-timeout-secs",
        "1",
        "--header-read-timeout-secs",
        "1",
    ]);
    let key = reusable(s);
    let base = s.base.clone();
    run(async {
        let (a, relay_a) = logged_in(s, "alpha", &key).await;
        let (b, relay_b) = logged_in(s, "beta", &key).await;
        let own = format!("rel://{}", base.trim_start_matches("http://"));
        let (to_b, _at_a) = connect(&own, &a, &relay_a).await;
        let (_to_a, mut at_b) = connect(&own, &b, &relay_b).await;
        tokio::time::sleep(Duration::from_millis(2500)).await;
        to_b.send(&PeerId::from_public_key(&b.key), b"later")
            .await
            .unwrap();
        let got = tokio::time::timeout(PROMPT, at_b.recv()).await.unwrap();
        assert_eq!(got.unwrap().1, b"later");
    });
}

both_stores!(
    relay_connections_outlive_the_listeners_timeouts,
    the_servers_relay_carries_logged_in_peers,
    the_token_key_is_published_and_kept,
    relay_urls_are_advertised,
);

/// A `meshplane relay` process, stopped when dropped.
struct RelayProcess(Child);

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn meshplane_relay_runs_as_its_own_process() {
    let mut s = Server::start(common::Backend::Sqlite);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let mut process = RelayProcess(
        Command::new(meshplane_binary())
            .args([
                "relay",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--management-url",
                &s.base,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + PROMPT;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            process.0.try_wait().unwrap().is_none(),
            "meshplane relay exited"
        );
        assert!(Instant::now() < deadline, "meshplane relay never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
    let key = reusable(&s);
    let url = format!("rel://127.0.0.1:{port}");
    run(async {
        let (a, relay_a) = logged_in(&s, "alpha", &key).await;
        let (b, relay_b) = logged_in(&s, "beta", &key).await;
        relays_both_ways(&url, (&a, &relay_a), (&b, &relay_b)).await;
        // A token of another management server is refused.
        let forged = meshplane_relay::TokenSigner::generate().unwrap().mint(
            &PeerId::from_public_key(&a.key),
            now().as_millis() / 1000 + 60,
        );
        assert!(RelayClient::connect(&url, &a.key, &forged).await.is_err());
    });
    s.terminate(PROMPT);
    // It says why it cannot start without a management server.
    let out = Command::new(meshplane_binary())
        .args([
            "relay",
            "--listen",
            "127.0.0.1:0",
            "--management-url",
            &s.base,
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot get the relay token key"),
        "{stderr}"
    );
}

//! What operators rely on: `GET /health` (200 without a token while the
//! store answers, 503 once it does not), JSON logs that parse line by
//! line and never hold a secret, and metrics that move with traffic.

// A failed unwrap is a failed test here.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::client::{reusable, run, Peer};
use common::netbird::{pinging_channel, NbPeer};
use common::{Backend, Server, PG_ENV};
use meshplane_proto::signal::client::SignalClient;
use meshplane_proto::v1::management_client::ManagementClient;
use meshplane_proto::v1::GetServerKeyRequest;
use meshplane_relay::{PeerId, RelayClient, Token};
use serde_json::Value;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

#[test]
fn health_answers_without_a_token_while_the_store_answers() {
    let s = Server::start(Backend::Sqlite);
    let (status, body) = s.call_as(None, "GET", "/health", None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok");
    // A token is not needed, and a bad one does not matter either.
    let (status, _) = s.call_as(Some("Token nope"), "GET", "/health", None);
    assert_eq!(status, 200);
}

#[test]
fn health_is_503_when_the_database_is_gone() {
    if std::env::var(PG_ENV).is_err() {
        eprintln!("{PG_ENV} not set: PostgreSQL run skipped");
        return;
    }
    let s = Server::start(Backend::Postgres);
    assert_eq!(s.call_as(None, "GET", "/health", None).0, 200);
    s.postgres_admin("DROP DATABASE {db} WITH (FORCE)");
    let (status, body) = s.call_as(None, "GET", "/health", None);
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "unavailable");
    // The reason goes to the log, not to whoever asks.
    assert!(s.log().contains("health check: the store does not answer"));
}

#[test]
fn json_logs_parse_line_by_line_and_hold_no_secret() {
    let mut s = Server::start(Backend::Sqlite);
    s.restart_with(&["--log-format", "json", "--log", "debug"]);
    let key = reusable(&s);
    run(async {
        let mut peer = Peer::connect(&s, "json-logs").await;
        peer.login(&key).await.expect("registered");
        // A refused key is logged too, without its value.
        let mut stranger = Peer::connect(&s, "stranger").await;
        let wrong = "A2C8E62B-38F5-4553-B31E-DD66C696CEBB";
        assert!(stranger.login(wrong).await.is_err());
    });
    let token = s.token.clone();
    s.terminate(Duration::from_secs(10));
    let log = s.log();
    let mut lines = 0;
    for line in log.lines() {
        let event: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(
            event["level"].is_string() && event["fields"].is_object(),
            "{line}"
        );
        lines += 1;
    }
    assert!(lines > 5, "too few log lines: {log}");
    for secret in [key.as_str(), &key.to_lowercase(), token.as_str()] {
        assert!(!log.contains(secret), "a secret reached the log");
    }
    assert!(!log.contains("38F5-4553"), "a refused key reached the log");
}

#[test]
fn the_packaged_config_file_is_read_as_it_is() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../packaging/server.toml");
    let mut s = Server::start(Backend::Sqlite);
    // The test's own --data-dir and --listen win over the file's.
    s.restart_with(&["--config", path]);
    let (status, body) = s.call_as(None, "GET", "/health", None);
    assert_eq!(status, 200, "{body}: {}", s.log());
    assert_eq!(s.call("GET", "/api/groups", None).0, 200);
}

/// A test CA and a certificate it signed for `localhost`, as PEM files in
/// `dir`: (CA certificate, server certificate, server key).
fn test_pki(dir: &std::path::Path) -> [std::path::PathBuf; 3] {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "meshplane test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let mut leaf = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
    leaf.distinguished_name
        .push(rcgen::DnType::CommonName, "localhost");
    let leaf = leaf.signed_by(&key, &issuer).unwrap();
    let paths = [
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    ];
    std::fs::write(&paths[0], ca.pem()).unwrap();
    std::fs::write(&paths[1], leaf.pem()).unwrap();
    std::fs::write(&paths[2], key.serialize_pem()).unwrap();
    paths
}

#[test]
fn rest_and_grpc_are_served_over_tls_on_the_one_port() {
    let mut s = Server::start(Backend::Sqlite);
    let [ca, cert, key] = test_pki(&s.data_dir().join(".."));
    s.restart_with(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    let https = format!("https://localhost:{}", s.port);
    // REST through curl, trusting the test CA only.
    let out = std::process::Command::new("curl")
        .args(["-sS", "--cacert", ca.to_str().unwrap()])
        .arg(format!("{https}/health"))
        .output()
        .unwrap();
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(body.contains("\"ok\""), "{body}");
    // Plain HTTP on the TLS port gets no answer.
    let plain = std::process::Command::new("curl")
        .args(["-s", "-m", "5", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("http://127.0.0.1:{}/health", s.port))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&plain.stdout), "000");
    // gRPC over TLS (HTTP/2 by ALPN), trusting the test CA.
    run(async {
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(std::fs::read(&ca).unwrap()))
            .domain_name("localhost");
        let channel = Channel::from_shared(https.clone())
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect()
            .await
            .unwrap();
        let key = ManagementClient::new(channel)
            .get_server_key(GetServerKeyRequest {})
            .await
            .unwrap()
            .into_inner();
        assert!(!key.key.is_empty());
    });
}

/// The value of the sample of `metrics` (Prometheus text) whose line starts
/// with `prefix` (a name and its labels).
fn sample(metrics: &str, prefix: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn metrics_are_served_on_their_own_listener_and_move_with_traffic() {
    let mut s = Server::start(Backend::Sqlite);
    let at = format!("127.0.0.1:{}", common::free_port());
    s.restart_with(&["--metrics-listen", &at]);
    let scrape = || {
        ureq::get(&format!("http://{at}/metrics"))
            .call()
            .unwrap()
            .into_string()
            .unwrap()
    };
    let groups = r#"meshplane_http_requests_total{route="/api/groups",method="GET",status="200"}"#;
    let before = sample(&scrape(), groups).unwrap_or(0.0);
    for _ in 0..3 {
        assert_eq!(s.call("GET", "/api/groups", None).0, 200);
    }
    assert_eq!(s.call("GET", "/api/groups/nope", None).0, 404);
    run(async {
        let mut peer = Peer::connect(&s, "metrics").await;
        assert!(peer.login("not-a-key").await.is_err());
    });
    let after = scrape();
    assert_eq!(sample(&after, groups), Some(before + 3.0), "{after}");
    assert!(
        after.contains(r#"route="/api/groups/{group_id}",method="GET",status="404""#),
        "{after}"
    );
    assert!(
        after.contains("meshplane_http_request_duration_seconds_bucket"),
        "{after}"
    );
    let key_calls = r#"meshplane_grpc_requests_total{method="/meshplane.management.v1.Management/GetServerKey",code="0"}"#;
    assert!(sample(&after, key_calls).unwrap_or(0.0) >= 1.0, "{after}");
    assert!(
        after.contains(r#"meshplane_grpc_requests_total{method="/meshplane.management.v1.Management/Login",code=""#),
        "{after}"
    );
    assert!(
        sample(
            &after,
            r#"meshplane_store_transaction_seconds_count{kind="read"}"#
        )
        .unwrap_or(0.0)
            > 0.0,
        "{after}"
    );
    // The API port does not serve them (the dashboard's page may answer
    // there, as for any path that is not the API's).
    let api_port = ureq::get(&format!("{}/metrics", s.base))
        .call()
        .map(|r| r.into_string().unwrap_or_default())
        .unwrap_or_default();
    assert!(!api_port.contains("# TYPE"), "{api_port}");
}

/// Scrapes `/metrics` at `at`.
fn scrape(at: &str) -> String {
    ureq::get(&format!("http://{at}/metrics"))
        .call()
        .unwrap()
        .into_string()
        .unwrap()
}

/// Scrapes until `done` holds for the text (metrics follow what a client
/// sees a moment later or earlier), or a generous while; the last scrape.
fn scrape_until(at: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let text = scrape(at);
        if done(&text) || std::time::Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn metrics_count_peers_streams_maps_and_relay_sessions() {
    let mut s = Server::start(Backend::Sqlite);
    let at = format!("127.0.0.1:{}", common::free_port());
    s.restart_with(&["--metrics-listen", &at]);
    let key = reusable(&s);
    let ours = r#"meshplane_streams_open{stream="sync",protocol="meshplane"}"#;
    let theirs = r#"meshplane_streams_open{stream="sync",protocol="netbird"}"#;
    let sent = r#"meshplane_stream_sent_bytes_total{stream="sync",protocol="meshplane"}"#;
    let relay_url = format!("rel://{}", s.base.trim_start_matches("http://"));
    run(async {
        let mut a = Peer::connect(&s, "alpha").await;
        let login = a.login(&key).await.unwrap();
        let mut b = Peer::connect(&s, "beta").await;
        let login_b = b.login(&key).await.unwrap();
        let mut stream_a = a.sync().await;
        a.next_map(&mut stream_a).await;
        let mut stream_b = b.sync().await;
        b.next_map(&mut stream_b).await;
        let mut nb = NbPeer::connect(
            pinging_channel(&s.base, Duration::from_secs(10)).await,
            "nb",
        )
        .await;
        nb.up(&key).await.unwrap();
        let mut stream_nb = nb.sync().await.unwrap();
        nb.next_sync(&mut stream_nb).await.unwrap();
        let signal = SignalClient::new(s.channel().await, a.secret.clone())
            .proving_to(a.server.clone())
            .connect()
            .await
            .unwrap();
        let signals = r#"meshplane_streams_open{stream="signal",protocol="netbird"}"#;

        let text = scrape_until(&at, |t| sample(t, "meshplane_peers_connected") == Some(3.0));
        assert_eq!(
            sample(&text, "meshplane_peers_connected"),
            Some(3.0),
            "{text}"
        );
        assert_eq!(sample(&text, ours), Some(2.0), "{text}");
        assert_eq!(sample(&text, theirs), Some(1.0), "{text}");
        let text = scrape_until(&at, |t| sample(t, signals) == Some(1.0));
        assert_eq!(sample(&text, signals), Some(1.0), "{text}");
        let bytes = sample(&text, sent).unwrap_or(0.0);
        assert!(bytes > 0.0, "{text}");
        let computed = sample(&text, "meshplane_map_computations_total").unwrap_or(0.0);
        assert!(computed >= 1.0, "{text}");
        assert!(
            sample(&text, "meshplane_map_computation_seconds_count").unwrap_or(0.0) >= 1.0,
            "{text}"
        );

        // A new peer recomputes the maps and sends them: both move.
        let mut c = Peer::connect(&s, "gamma").await;
        c.login(&key).await.unwrap();
        b.next_map(&mut stream_b).await;
        let text = scrape_until(&at, |t| sample(t, sent).unwrap_or(0.0) > bytes);
        assert!(sample(&text, sent).unwrap_or(0.0) > bytes, "{text}");
        assert!(
            sample(&text, "meshplane_map_computations_total").unwrap_or(0.0) > computed,
            "{text}"
        );

        // The relay on the server's port: two sessions, bytes relayed.
        let token = |login: meshplane_proto::v1::LoginResponse| {
            let relay = login.relay.unwrap();
            Token {
                payload: relay.token_payload,
                signature: relay.token_signature,
            }
        };
        let (to_b, _at_a) = RelayClient::connect(&relay_url, &a.key, &token(login))
            .await
            .unwrap();
        let (_to_a, mut at_b) = RelayClient::connect(&relay_url, &b.key, &token(login_b))
            .await
            .unwrap();
        to_b.send(&PeerId::from_public_key(&b.key), b"to beta")
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(10), at_b.recv())
            .await
            .unwrap()
            .unwrap();
        let text = scrape(&at);
        assert_eq!(
            sample(&text, "meshplane_relay_sessions_active"),
            Some(2.0),
            "{text}"
        );
        assert!(
            sample(&text, "meshplane_relay_sent_bytes_total").unwrap_or(0.0) >= 7.0,
            "{text}"
        );

        // Streams that end are counted out, and so are their peers.
        drop((stream_a, stream_nb));
        let text = scrape_until(&at, |t| sample(t, "meshplane_peers_connected") == Some(1.0));
        assert_eq!(
            sample(&text, "meshplane_peers_connected"),
            Some(1.0),
            "{text}"
        );
        assert_eq!(sample(&text, ours), Some(1.0), "{text}");
        assert_eq!(sample(&text, theirs), Some(0.0), "{text}");
        assert_eq!(sample(&text, signals), Some(1.0), "{text}");
        drop(signal);
    });
}

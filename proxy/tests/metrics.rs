//! The proxy's Prometheus metrics, scraped over HTTP after real traffic:
//! requests by status, target latency, the service count and login
//! attempts. One test in its own binary, since the recorder is
//! process-wide.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::{SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use http::StatusCode;

const LOGIN: &str = "/.meshplane/login";

/// The value of the sample whose line starts with `prefix`.
fn sample(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

async fn scrape(at: SocketAddr) -> String {
    let reply = send(at, get("metrics", "/metrics")).await;
    assert_eq!(reply.status, StatusCode::OK);
    reply.text()
}

/// A loopback port nothing listens on.
fn closed_port() -> SocketAddrV4 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let SocketAddr::V4(at) = listener.local_addr().unwrap() else {
        unreachable!("bound on IPv4")
    };
    at
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_logins_targets_and_services_are_counted() {
    let metrics = meshplane_metrics::Exporter::new()
        .serve("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let open = format!("open.{DOMAIN}");
    let locked = format!("locked.{DOMAIN}");
    let gone = format!("gone.{DOMAIN}");
    let backend = echo_backend("open").await;
    let mut pinned = service(&locked, backend);
    pinned.pin_hash = Some(hash("1234"));
    let p = start_proxy(vec![
        service(&open, backend),
        pinned,
        service(&gone, closed_port()),
    ])
    .await;

    for _ in 0..3 {
        assert_eq!(send(p.addr, get(&open, "/")).await.status, StatusCode::OK);
    }
    let unknown = format!("nope.{DOMAIN}");
    assert_eq!(
        send(p.addr, get(&unknown, "/")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        send(p.addr, get(&gone, "/")).await.status,
        StatusCode::BAD_GATEWAY
    );
    let wrong = [("method", "pin"), ("secret", "0000"), ("rd", "/")];
    send(p.addr, post_form(&locked, LOGIN, &wrong)).await;
    let right = [("method", "pin"), ("secret", "1234"), ("rd", "/")];
    send(p.addr, post_form(&locked, LOGIN, &right)).await;

    let text = scrape(metrics).await;
    let requests = |status: &str| {
        sample(
            &text,
            &format!("meshplane_proxy_requests_total{{status=\"{status}\"}}"),
        )
    };
    // The target's three answers, the wrong PIN's login page again, the
    // right PIN's redirect, an unknown host, an unreachable target.
    assert_eq!(requests("200"), 3.0, "{text}");
    assert_eq!(requests("401"), 1.0, "{text}");
    assert_eq!(requests("303"), 1.0, "{text}");
    assert_eq!(requests("404"), 1.0, "{text}");
    assert_eq!(requests("502"), 1.0, "{text}");
    let answered = r#"meshplane_proxy_upstream_duration_seconds_count{outcome="answered"}"#;
    assert_eq!(sample(&text, answered), 3.0, "{text}");
    let unreachable = r#"meshplane_proxy_upstream_duration_seconds_count{outcome="unreachable"}"#;
    assert_eq!(sample(&text, unreachable), 1.0, "{text}");
    let logins = |result: &str| {
        sample(
            &text,
            &format!("meshplane_proxy_login_attempts_total{{method=\"pin\",result=\"{result}\"}}"),
        )
    };
    assert_eq!(logins("wrong"), 1.0, "{text}");
    assert_eq!(logins("accepted"), 1.0, "{text}");
    assert_eq!(sample(&text, "meshplane_proxy_services "), 3.0, "{text}");

    // The gauge follows the table.
    p.services
        .send_replace(Arc::new(vec![service(&open, backend)]));
    let mut text = scrape(metrics).await;
    for _ in 0..200 {
        if sample(&text, "meshplane_proxy_services ") == 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        text = scrape(metrics).await;
    }
    assert_eq!(sample(&text, "meshplane_proxy_services "), 1.0, "{text}");
    p.proxy.shutdown().await;
}

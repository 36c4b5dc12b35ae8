//! Throughput and added latency of the proxy against the same backend
//! reached directly, on loopback. Ignored by default (it measures, it does
//! not check); run in release:
//!
//! ```text
//! cargo test --release -p meshplane-proxy --test bench -- --ignored --nocapture
//! ```
//!
//! Client, proxy and backend share one 2-thread runtime on the same two
//! cores, so the figures are what the proxy costs on top of everything else.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http::{Request, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};

const REQUESTS: usize = 20_000;
const BULK: usize = 256 * 1024 * 1024;
const CHUNK: usize = 64 * 1024;

struct Run {
    per_second: f64,
    p50: Duration,
    p99: Duration,
}

/// `REQUESTS` GETs over `connections` keep-alive connections.
async fn run(
    addr: SocketAddr,
    req: impl Fn() -> Request<TestBody> + Clone + Send + 'static,
    connections: usize,
) -> Run {
    let per_connection = REQUESTS / connections;
    let start = Instant::now();
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            let req = req.clone();
            tokio::spawn(async move {
                let mut sender = connect(addr).await;
                let mut latencies = Vec::with_capacity(per_connection);
                for _ in 0..per_connection {
                    sender.ready().await.unwrap();
                    let t = Instant::now();
                    let response = sender.send_request(req()).await.unwrap();
                    assert!(response.status().is_success());
                    response.into_body().collect().await.unwrap();
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(REQUESTS);
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let elapsed = start.elapsed();
    latencies.sort();
    Run {
        per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: latencies[latencies.len() / 2],
        p99: latencies[latencies.len() * 99 / 100],
    }
}

/// MiB/s of one `BULK`-byte download.
async fn bulk(addr: SocketAddr, host: &str) -> f64 {
    let start = Instant::now();
    let mut body = get_streaming(addr, host, "/bulk").await.into_body();
    let mut received = 0;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            received += data.len();
        }
    }
    assert_eq!(received, BULK);
    BULK as f64 / (1024.0 * 1024.0) / start.elapsed().as_secs_f64()
}

fn micros(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run explicitly in release"]
async fn proxy_overhead() {
    let target = backend(|req: Request<Incoming>| async move {
        if req.uri().path() == "/bulk" {
            let chunk = Bytes::from(vec![0x5a; CHUNK]);
            let stream = futures_util::stream::iter(
                (0..BULK / CHUNK).map(move |_| Ok::<_, std::io::Error>(Frame::data(chunk.clone()))),
            );
            return Response::new(BodyExt::boxed(StreamBody::new(stream)));
        }
        Response::new(full("hello, world\n"))
    })
    .await;
    let mut guarded = service("pin.proxy.test", target);
    guarded.pin_hash = Some(hash("123456"));
    let p = start_proxy(vec![service("open.proxy.test", target), guarded]).await;
    let login = send(
        p.addr,
        post_form(
            "pin.proxy.test",
            "/.meshplane/login",
            &[("method", "pin"), ("secret", "123456")],
        ),
    )
    .await;
    let cookie = format!("{}={}", meshplane_proxy::COOKIE_NAME, set_cookie(&login).0);

    let direct = SocketAddr::V4(target);
    println!("| path | connections | requests/s | p50 | p99 |");
    println!("|---|---|---|---|---|");
    for connections in [1, 16] {
        let plain = |host: &'static str| move || get(host, "/");
        let with_cookie = {
            let cookie = cookie.clone();
            move || {
                Request::get("/")
                    .header("host", "pin.proxy.test")
                    .header("cookie", cookie.as_str())
                    .body(empty())
                    .unwrap()
            }
        };
        let rows = [
            (
                "direct",
                run(direct, plain("open.proxy.test"), connections).await,
            ),
            (
                "proxy",
                run(p.addr, plain("open.proxy.test"), connections).await,
            ),
            (
                "proxy + PIN session cookie",
                run(p.addr, with_cookie, connections).await,
            ),
        ];
        for (name, r) in rows {
            println!(
                "| {name} | {connections} | {:.0} | {} | {} |",
                r.per_second,
                micros(r.p50),
                micros(r.p99)
            );
        }
    }
    println!();
    println!("bulk download of {} MiB:", BULK / (1024 * 1024));
    println!("direct: {:.0} MiB/s", bulk(direct, "open.proxy.test").await);
    println!("proxy:  {:.0} MiB/s", bulk(p.addr, "open.proxy.test").await);
    p.proxy.shutdown().await;
}

//! Routing, forwarding, streaming, WebSocket and TLS through a real proxy
//! to real backends on loopback.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddrV4;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::*;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// A body fed chunk by chunk from a channel.
fn channel_body() -> (mpsc::Sender<Bytes>, TestBody) {
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<_, std::io::Error>(Frame::data(chunk)), rx))
    });
    (tx, BodyExt::boxed(StreamBody::new(stream)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_host_and_404s_unknown_and_removed_hosts() {
    let a = echo_backend("a").await;
    let b = echo_backend("b").await;
    let p = start_proxy(vec![service("a.proxy.test", a), service("b.proxy.test", b)]).await;

    assert_eq!(
        send(p.addr, get("a.proxy.test", "/x?y=1")).await.json()["name"],
        "a"
    );
    let reply = send(p.addr, get("B.Proxy.Test:8443", "/")).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["name"], "b");
    assert_eq!(
        send(p.addr, get("a.proxy.test", "/x?y=1")).await.json()["path"],
        "/x?y=1"
    );

    let reply = send(p.addr, get("nope.proxy.test", "/")).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert!(
        reply
            .text()
            .contains("No service is exposed at nope.proxy.test"),
        "{}",
        reply.text()
    );
    assert_eq!(
        reply.header("content-type"),
        Some("text/html; charset=utf-8")
    );

    // Removal takes effect on the next request, even on a kept-alive
    // client connection.
    let mut conn = connect(p.addr).await;
    let first = collect(conn.send_request(get("a.proxy.test", "/")).await.unwrap()).await;
    assert_eq!(first.status, StatusCode::OK);
    p.services
        .send(Arc::new(vec![service("b.proxy.test", b)]))
        .unwrap();
    within(conn.ready()).await.unwrap();
    let second = collect(conn.send_request(get("a.proxy.test", "/")).await.unwrap()).await;
    assert_eq!(second.status, StatusCode::NOT_FOUND);
    assert_eq!(
        send(p.addr, get("b.proxy.test", "/")).await.status,
        StatusCode::OK
    );
    p.proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_hosts_are_400_and_unreachable_targets_502() {
    // A port that was just free: nothing listens there.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        match l.local_addr().unwrap() {
            std::net::SocketAddr::V4(a) => a,
            _ => unreachable!(),
        }
    };
    let p = start_proxy(vec![service("dead.proxy.test", dead)]).await;
    let reply = send(p.addr, get("dead.proxy.test", "/")).await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    assert!(reply.text().contains("dead.proxy.test"));

    for bad in ["bad host", "a.proxy.test:http", "<x>"] {
        let reply = send(p.addr, get(bad, "/")).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "host {bad:?}");
    }
    p.proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_wire_is_answered_400() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let a = echo_backend("a").await;
    let p = start_proxy(vec![service("a.proxy.test", a)]).await;
    for garbage in [
        &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: a.proxy.test\r\nContent-Length: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: \xff\xfe\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
    ] {
        let mut stream = tokio::net::TcpStream::connect(p.addr).await.unwrap();
        stream.write_all(garbage).await.unwrap();
        let mut answer = Vec::new();
        within(stream.read_to_end(&mut answer)).await.unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.starts_with("HTTP/1.1 400"),
            "{garbage:?} -> {answer}"
        );
    }
    // The proxy still serves.
    assert_eq!(
        send(p.addr, get("a.proxy.test", "/")).await.status,
        StatusCode::OK
    );
    p.proxy.shutdown().await;
}

/// Sends `raw` on a fresh connection; the whole answer.
async fn raw_exchange(addr: std::net::SocketAddr, raw: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(raw).await.unwrap();
    let mut answer = Vec::new();
    within(stream.read_to_end(&mut answer)).await.unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_target_and_host_header_must_agree() {
    let a = echo_backend("a").await;
    let b = echo_backend("b").await;
    let p = start_proxy(vec![service("a.proxy.test", a), service("b.proxy.test", b)]).await;
    for (raw, why) in [
        (
            &b"GET http://a.proxy.test/ HTTP/1.1\r\nHost: b.proxy.test\r\n\r\n"[..],
            "the request target and the Host header differ",
        ),
        (
            b"GET http://a.proxy.test/ HTTP/1.1\r\nHost: a.proxy.test:8080\r\n\r\n",
            "the request target and the Host header differ",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: a.proxy.test\r\nHost: a.proxy.test\r\n\r\n",
            "more than one Host header",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: a.proxy.test\r\nHost: b.proxy.test\r\n\r\n",
            "more than one Host header",
        ),
    ] {
        let answer = raw_exchange(p.addr, raw).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{raw:?} -> {answer}");
        assert!(answer.contains(why), "{raw:?} -> {answer}");
        assert!(!answer.contains("\"name\""), "forwarded: {answer}");
    }
    // Agreeing (case aside), or the target alone: routed by that host.
    for raw in [
        &b"GET http://a.proxy.test/x HTTP/1.1\r\nHost: A.Proxy.Test\r\nConnection: close\r\n\r\n"[..],
        b"GET http://a.proxy.test/x HTTP/1.0\r\n\r\n",
    ] {
        let answer = raw_exchange(p.addr, raw).await;
        assert_eq!(answer.split(' ').nth(1), Some("200"), "{raw:?} -> {answer}");
        assert!(answer.contains("\"name\":\"a\""), "{raw:?} -> {answer}");
    }
    p.proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_added_and_hop_by_hop_removed() {
    let a = echo_backend("a").await;
    let p = start_proxy(vec![service("a.proxy.test", a)]).await;
    let req = Request::get("/h")
        .header("host", "a.proxy.test:8080")
        .header("x-forwarded-for", "198.51.100.7")
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "secret")
        .header("keep-alive", "timeout=5")
        .header("proxy-authorization", "Basic Zm9vOmJhcg==")
        .header("x-end-to-end", "kept")
        .body(empty())
        .unwrap();
    let reply = send(p.addr, req).await;
    let headers = &reply.json()["headers"];
    assert_eq!(headers["x-forwarded-for"][0], "198.51.100.7, 127.0.0.1");
    assert_eq!(headers["x-forwarded-proto"][0], "http");
    assert_eq!(headers["x-forwarded-host"][0], "a.proxy.test:8080");
    assert_eq!(headers["host"][0], "a.proxy.test:8080");
    assert_eq!(headers["x-end-to-end"][0], "kept");
    for gone in ["x-hop", "keep-alive", "proxy-authorization"] {
        assert!(
            headers.get(gone).is_none(),
            "{gone} was forwarded: {headers}"
        );
    }
    // The backend's own hop-by-hop response header is not passed on.
    assert_eq!(reply.header("keep-alive"), None);

    let reply = send(p.addr, get("a.proxy.test", "/")).await;
    assert_eq!(reply.json()["headers"]["x-forwarded-for"][0], "127.0.0.1");
    p.proxy.shutdown().await;
}

const MIB: usize = 1024 * 1024;
const CHUNK: usize = 64 * 1024;

/// Byte `i` of the test stream.
fn pattern(offset: usize, len: usize) -> Bytes {
    (offset..offset + len)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_64_mib_both_ways() {
    const TOTAL: usize = 64 * MIB;
    // The backend tells the test when the first upload chunk has arrived:
    // the client sends the rest only then, so a proxy that buffered whole
    // request bodies would deadlock here.
    let (first_tx, first_rx) = oneshot::channel::<()>();
    let first_tx = Arc::new(Mutex::new(Some(first_tx)));
    let target = backend(move |req: Request<Incoming>| {
        let first_tx = first_tx.clone();
        async move {
            if req.uri().path() == "/download" {
                let stream = futures_util::stream::iter(
                    (0..TOTAL / CHUNK)
                        .map(|i| Ok::<_, std::io::Error>(Frame::data(pattern(i * CHUNK, CHUNK)))),
                );
                return Response::new(BodyExt::boxed(StreamBody::new(stream)));
            }
            let mut body = req.into_body();
            let mut received = 0usize;
            let mut intact = true;
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame.unwrap().into_data() {
                    intact &= data == pattern(received, data.len());
                    received += data.len();
                    if let Some(tx) = first_tx.lock().unwrap().take() {
                        let _ = tx.send(());
                    }
                }
            }
            Response::new(full(format!("{received} {intact}")))
        }
    })
    .await;
    let p = start_proxy(vec![service("big.proxy.test", target)]).await;

    let (tx, body) = channel_body();
    let req = Request::post("/upload")
        .header("host", "big.proxy.test")
        .body(body)
        .unwrap();
    let mut conn = connect(p.addr).await;
    let response = tokio::spawn(conn.send_request(req));
    within(tx.send(pattern(0, CHUNK))).await.unwrap();
    within(first_rx).await.unwrap();
    for i in 1..TOTAL / CHUNK {
        within(tx.send(pattern(i * CHUNK, CHUNK))).await.unwrap();
    }
    drop(tx);
    let reply = within(async { collect(response.await.unwrap().unwrap()).await }).await;
    assert_eq!(reply.text(), format!("{TOTAL} true"));

    let response = get_streaming(p.addr, "big.proxy.test", "/download").await;
    let mut body = response.into_body();
    let mut received = 0usize;
    while let Some(frame) = within(body.frame()).await {
        if let Ok(data) = frame.unwrap().into_data() {
            assert!(
                data == pattern(received, data.len()),
                "corrupt at {received}"
            );
            received += data.len();
        }
    }
    assert_eq!(received, TOTAL);
    p.proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_chunked_response_arrives_chunk_by_chunk() {
    // The backend produces its last chunk only after the test has received
    // the first one through the proxy.
    let (release_tx, release_rx) = mpsc::channel::<()>(1);
    let release_rx = Arc::new(tokio::sync::Mutex::new(release_rx));
    let target = backend(move |_req: Request<Incoming>| {
        let release_rx = release_rx.clone();
        async move {
            let (tx, body) = channel_body();
            tokio::spawn(async move {
                tx.send(Bytes::from_static(b"first;")).await.unwrap();
                release_rx.lock().await.recv().await;
                tx.send(Bytes::from_static(b"last")).await.unwrap();
            });
            Response::new(body)
        }
    })
    .await;
    let p = start_proxy(vec![service("slow.proxy.test", target)]).await;
    let response = get_streaming(p.addr, "slow.proxy.test", "/").await;
    assert_eq!(
        response.headers().get("transfer-encoding").unwrap(),
        "chunked"
    );
    let mut body = response.into_body();
    let first = within(body.frame())
        .await
        .unwrap()
        .unwrap()
        .into_data()
        .unwrap();
    assert_eq!(&first[..], b"first;");
    release_tx.send(()).await.unwrap();
    let mut rest = Vec::new();
    while let Some(frame) = within(body.frame()).await {
        if let Ok(data) = frame.unwrap().into_data() {
            rest.extend_from_slice(&data);
        }
    }
    assert_eq!(rest, b"last");
    p.proxy.shutdown().await;
}

/// A real WebSocket echo server.
async fn websocket_echo() -> SocketAddrV4 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let std::net::SocketAddr::V4(addr) = listener.local_addr().unwrap() else {
        unreachable!()
    };
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut ws = tokio_tungstenite::accept_async(stream).await.unwrap();
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_text() || msg.is_binary() {
                        ws.send(msg).await.unwrap();
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_echo_through_the_proxy() {
    let echo = websocket_echo().await;
    let p = start_proxy(vec![service("ws.proxy.test", echo)]).await;
    let stream = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    let request = "ws://ws.proxy.test/socket".into_client_request().unwrap();
    let (mut ws, response) = within(tokio_tungstenite::client_async(request, stream))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    for i in 0..20 {
        let text = format!("hello {i}");
        ws.send(Message::text(text.clone())).await.unwrap();
        let echoed = within(ws.next()).await.unwrap().unwrap();
        assert_eq!(echoed.into_text().unwrap().as_str(), text);
    }
    let big = vec![7u8; 3 * MIB];
    ws.send(Message::binary(big.clone())).await.unwrap();
    let echoed = within(ws.next()).await.unwrap().unwrap();
    assert_eq!(echoed.into_data().as_ref(), &big[..]);
    ws.close(None).await.unwrap();
    p.proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_tls_target() {
    // The target serves HTTPS with its own self-signed certificate, which
    // the proxy does not verify.
    let echo = echo_backend("inner").await;
    let inner = start_proxy_with(
        vec![service("inner.proxy.test", echo)],
        meshplane_proxy::Tls::SelfSigned,
        None,
    )
    .await;
    let std::net::SocketAddr::V4(inner_addr) = inner.addr else {
        unreachable!()
    };
    let mut outer_service = service("inner.proxy.test", inner_addr);
    outer_service.backend_tls = true;
    let outer = start_proxy(vec![outer_service]).await;
    let reply = send(outer.addr, get("inner.proxy.test", "/tls")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.json()["name"], "inner");
    // The inner proxy saw the outer one's TLS connection.
    assert_eq!(reply.json()["headers"]["x-forwarded-proto"][0], "https");
    outer.proxy.shutdown().await;
    inner.proxy.shutdown().await;
}

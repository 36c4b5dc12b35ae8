//! What a client can hold open on the real server: slow and idle
//! connections are closed while the server keeps answering REST and gRPC,
//! one source address gets a bounded number of connections, one peer key a
//! bounded number of streams; and the data directory is private.

// A failed unwrap is a failed test here.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use common::client::{reusable, run, Peer};
use common::{Backend, Server};
use crypto_box::SecretKey;
use meshplane_proto::envelope::{encode_public_key, parse_public_key, ReplayGuard};
use meshplane_proto::v1::management_client::ManagementClient;
use meshplane_proto::v1::GetServerKeyRequest;
use rand_core::OsRng;
use serde_json::json;
use tonic::transport::Endpoint;
use tonic::Code;

/// How long the server may take to close what it must close: far above
/// the short timeouts the tests configure.
const GENEROUS: Duration = Duration::from_secs(20);

/// Reads until the server closes `stream` (EOF or reset); false if it is
/// still open after [`GENEROUS`]. While waiting it sends `trickle` (if
/// any) every 200 ms, as a client dribbling a request head would.
fn closed_by_server(mut stream: TcpStream, trickle: Option<&[u8]>) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + GENEROUS;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        if let Some(bytes) = trickle {
            // A failed write means the server is gone already.
            if stream.write_all(bytes).is_err() {
                return true;
            }
        }
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return true,
        }
    }
    false
}

/// An HTTP/1.1 keep-alive GET of `/api/accounts` with the owner token.
fn get_request(s: &Server) -> Vec<u8> {
    format!(
        "GET /api/accounts HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Token {}\r\n\r\n",
        s.token
    )
    .into_bytes()
}

/// Sends one keep-alive request on `stream` and reads its answer whole;
/// the status, or `None` when the server closed the connection instead.
fn exchange(stream: &mut TcpStream, request: &[u8]) -> Option<u16> {
    stream.set_read_timeout(Some(GENEROUS)).unwrap();
    stream.write_all(request).ok()?;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).to_string();
        let Some((head, body)) = text.split_once("\r\n\r\n") else {
            continue;
        };
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .expect("a content length");
        if body.len() >= length {
            return head.split(' ').nth(1)?.parse().ok();
        }
    }
}

/// A connection to the server from the loopback address `from`.
fn connect_from(s: &Server, from: [u8; 4]) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::from((from, 0)).into()).unwrap();
    socket
        .connect(&SocketAddr::from(([127, 0, 0, 1], s.port)).into())
        .unwrap();
    socket.into()
}

/// The client preface of HTTP/2 and an empty SETTINGS frame.
const H2_START: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

/// With a 1 s header timeout and a 2 s idle timeout: a client trickling
/// a request head, one sending nothing, one stalled inside the HTTP/2
/// preface, an HTTP/2 connection without streams and an HTTP/1 keep-alive
/// connection after its request are all closed, while REST and gRPC keep
/// answering and a Sync stream (over a client that pings every second)
/// outlives the idle timeout.
#[test]
fn slow_and_idle_connections_are_closed() {
    let mut s = Server::start(Backend::Sqlite);
    s.restart_with(&[
        "--header-read-timeout-secs",
        "1",
        "--idle-timeout-secs",
        "2",
    ]);
    let port = s.port;
    let open = || TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut kept_alive = open();
    assert_eq!(exchange(&mut kept_alive, &get_request(&s)), Some(200));
    let mut slow_head = open();
    slow_head
        .write_all(b"GET /api/accounts HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let mut slow_preface = open();
    slow_preface.write_all(&H2_START[..16]).unwrap();
    let mut h2_idle = open();
    h2_idle.write_all(H2_START).unwrap();
    let clients = vec![
        ("trickled head", slow_head, Some(&b"X-Slow: 1\r\n"[..])),
        ("silent", open(), None),
        ("stalled HTTP/2 preface", slow_preface, None),
        ("HTTP/2 without streams", h2_idle, None),
        ("HTTP/1 keep-alive after a request", kept_alive, None),
    ];
    let waiting: Vec<_> = clients
        .into_iter()
        .map(|(what, stream, trickle)| {
            std::thread::spawn(move || (what, closed_by_server(stream, trickle)))
        })
        .collect();
    run(async {
        let key = reusable(&s);
        let channel = Endpoint::from_shared(s.base.clone())
            .unwrap()
            .http2_keep_alive_interval(Duration::from_secs(1))
            .keep_alive_while_idle(true)
            .connect()
            .await
            .unwrap();
        let mut client = ManagementClient::new(channel);
        let server_key = client
            .get_server_key(GetServerKeyRequest {})
            .await
            .unwrap()
            .into_inner()
            .key;
        let secret = SecretKey::generate(&mut OsRng);
        let mut pinger = Peer {
            hostname: "pinger".into(),
            key: encode_public_key(&secret.public_key()),
            secret,
            server: parse_public_key(&server_key).unwrap(),
            client,
            guard: ReplayGuard::default(),
        };
        pinger.login(&key).await.unwrap();
        let mut stream = pinger.sync().await;
        pinger.next_map(&mut stream).await;
        // REST and gRPC answer while the slow clients wait to be closed.
        while !waiting.iter().all(std::thread::JoinHandle::is_finished) {
            s.get("/api/accounts");
            let mut grpc = ManagementClient::connect(s.base.clone()).await.unwrap();
            grpc.get_server_key(GetServerKeyRequest {}).await.unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // The Sync stream outlived the idle timeout: a newcomer reaches it.
        let mut newcomer = Peer::connect(&s, "newcomer").await;
        newcomer.login(&key).await.unwrap();
        let map = pinger.next_map(&mut stream).await;
        assert_eq!(map["peers"].as_array().unwrap().len(), 1, "{map}");
    });
    for handle in waiting {
        let (what, closed) = handle.join().unwrap();
        assert!(closed, "the {what} connection was not closed");
    }
}

/// With at most 3 connections per address: a fourth from 127.0.0.1 is
/// closed unanswered while 127.0.0.2 is still served, and closing one of
/// the three lets 127.0.0.1 in again.
#[test]
fn connections_per_address_are_capped() {
    let mut s = Server::start(Backend::Sqlite);
    s.restart_with(&[
        "--max-connections-per-address",
        "3",
        "--header-read-timeout-secs",
        "60",
        "--idle-timeout-secs",
        "120",
    ]);
    let request = get_request(&s);
    // Connections of the start-up checks may take a moment to be counted
    // closed; hold three that the server answered.
    let mut held = Vec::new();
    let deadline = Instant::now() + GENEROUS;
    while held.len() < 3 {
        assert!(Instant::now() < deadline, "three connections never served");
        let mut c = connect_from(&s, [127, 0, 0, 1]);
        if exchange(&mut c, &request) == Some(200) {
            held.push(c);
        } else {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let mut excess = connect_from(&s, [127, 0, 0, 1]);
    assert_eq!(exchange(&mut excess, &request), None);
    let mut other = connect_from(&s, [127, 0, 0, 2]);
    assert_eq!(exchange(&mut other, &request), Some(200));
    // The held ones still work.
    assert_eq!(exchange(&mut held[0], &request), Some(200));
    drop(held.pop());
    let deadline = Instant::now() + GENEROUS;
    loop {
        let mut again = connect_from(&s, [127, 0, 0, 1]);
        if exchange(&mut again, &request) == Some(200) {
            break;
        }
        assert!(Instant::now() < deadline, "a freed place was never reused");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// With at most 2 streams per peer key: a third Sync stream closes the
/// first (RESOURCE_EXHAUSTED) and the two newest keep receiving maps; the
/// same holds for a proxy's WatchServices streams.
#[test]
fn streams_per_peer_are_bounded() {
    let mut s = Server::start(Backend::Sqlite);
    s.restart_with(&["--streams-per-peer", "2"]);
    run(async {
        let key = reusable(&s);
        let mut p = Peer::connect(&s, "many").await;
        let id = p.login(&key).await.unwrap().peer_id;
        let mut streams = Vec::new();
        for _ in 0..3 {
            let mut stream = p.sync().await;
            p.next_map(&mut stream).await;
            streams.push(stream);
        }
        let first = tokio::time::timeout(GENEROUS, streams[0].message())
            .await
            .expect("the oldest stream ends");
        let status = first.expect_err("closed with a status");
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        assert_eq!(
            status.message(),
            "more than 2 streams for this peer: the oldest was closed"
        );
        let mut other = Peer::connect(&s, "other").await;
        other.login(&key).await.unwrap();
        for stream in &mut streams[1..] {
            let map = p.next_map(stream).await;
            assert_eq!(map["peers"].as_array().unwrap().len(), 1, "{map}");
        }

        s.post("/api/groups", json!({"name": "proxies", "peers": [id]}));
        let mut tables = Vec::new();
        for _ in 0..3 {
            let mut table = p.watch_services("proxy.localhost").await.unwrap();
            p.next_table(&mut table).await;
            tables.push(table);
        }
        let first = tokio::time::timeout(GENEROUS, tables[0].message())
            .await
            .expect("the oldest watch ends");
        let status = first.expect_err("closed with a status");
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    });
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().mode() & 0o777
}

/// The data directory is 0700 and the database files 0600, also after a
/// restart on a directory someone loosened.
#[test]
fn data_directory_is_private() {
    let mut s = Server::start(Backend::Sqlite);
    let dir = s.data_dir();
    let check = |dir: &Path| {
        assert_eq!(mode(dir), 0o700);
        for file in ["meshplane.db", "meshplane.db-wal", "meshplane.db-shm"] {
            let path = dir.join(file);
            assert!(path.exists(), "{file} missing");
            assert_eq!(mode(&path), 0o600, "{file}");
        }
    };
    check(&dir);
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(
        dir.join("meshplane.db"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    s.crash_and_restart();
    check(&dir);
    assert!(s.log().contains("set to 700"), "{}", s.log());
    s.get("/api/accounts");
}

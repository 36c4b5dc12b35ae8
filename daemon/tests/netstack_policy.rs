//! The acceptance scenario of the kernel TUN test (`netns_e2e.rs`) in
//! netstack mode on loopback, so it runs without privileges: the real
//! management server and two `meshplane daemon --netstack --socks5 …`
//! processes join with one setup key; `meshplane ping` and HTTP requests
//! through A's SOCKS5 proxy reach B's mesh IP, where B's forwarder hands
//! them to HTTP servers on the host's loopback. Policy changes made over
//! REST stop and restore that traffic within 2 s; a group-limited policy
//! lets one TCP port through and blocks another and ping; a daemon killed
//! with SIGKILL shows disconnected on the server and comes back as the same
//! peer.
//!
//! Also, in process: the forwarder under concurrent and repeated
//! connections, and a reset for a port nothing listens on.
//!
//! The server binary is `meshplane-server` next to this test's directory;
//! `cargo test --workspace` builds it, and a lone `cargo test -p meshplane`
//! needs `cargo build -p meshplane-server` first.

mod common;

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::process::Command;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::procs::{
    changes_within, cli, free_port, installed, kill_and_restart, mesh_ip, wait_until, Daemon, Rest,
    ScratchDir, Server,
};
use common::{joined_stacks, Side, IP_B};
use meshplane::engine::forward::Forwarder;
use meshplane::engine::netstack::Netstack;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How fast a REST change must show in the traffic.
const PROMPT: Duration = Duration::from_secs(2);
/// How long two fresh peers may take to reach each other.
const JOIN_WITHIN: Duration = Duration::from_secs(30);
/// How long the server may take to see a killed daemon gone.
const DISCONNECT_WITHIN: Duration = Duration::from_secs(15);
/// How long one probe through the mesh waits for an answer.
const PROBE: Duration = Duration::from_millis(1500);

/// The proxy's answers when a peer refuses and when there is no route.
const REFUSED: &str = "SOCKS reply code 5";
const UNREACHABLE: &str = "SOCKS reply code 3";

/// What the HTTP server on `port` serves, so a reply shows which one it
/// came from.
fn page(port: u16) -> String {
    format!("hello from port {port}\n")
}

/// A minimal HTTP/1.0 server on `127.0.0.1:port`: every request gets
/// [`page`]. Runs for the rest of the test process.
fn web_server(port: u16) -> JoinHandle<()> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).expect("bind the web server");
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let body = page(port);
                let _ = write!(
                    conn,
                    "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    })
}

/// An HTTP GET of `to` through the SOCKS5 proxy on `proxy`; the body, or
/// why there is none.
fn fetch_via(proxy: u16, to: SocketAddrV4) -> Result<String, String> {
    let fail = |what: &str, e: io::Error| format!("{what}: {e}");
    let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, proxy)).map_err(|e| fail("proxy", e))?;
    s.set_read_timeout(Some(PROBE))
        .map_err(|e| fail("timeout", e))?;
    s.write_all(&[5, 1, 0]).map_err(|e| fail("greeting", e))?;
    let mut chosen = [0u8; 2];
    s.read_exact(&mut chosen).map_err(|e| fail("method", e))?;
    if chosen != [5, 0] {
        return Err(format!("method reply {chosen:?}"));
    }
    let mut request = vec![5, 1, 0, 1];
    request.extend_from_slice(&to.ip().octets());
    request.extend_from_slice(&to.port().to_be_bytes());
    s.write_all(&request).map_err(|e| fail("request", e))?;
    let mut reply = [0u8; 10];
    s.read_exact(&mut reply).map_err(|e| fail("reply", e))?;
    if reply[1] != 0 {
        return Err(format!("SOCKS reply code {}", reply[1]));
    }
    s.write_all(format!("GET / HTTP/1.0\r\nHost: {to}\r\n\r\n").as_bytes())
        .map_err(|e| fail("GET", e))?;
    let mut response = String::new();
    s.read_to_string(&mut response)
        .map_err(|e| fail("response", e))?;
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .ok_or_else(|| format!("no HTTP response: {response:?}"))
}

/// Whether B's page on `port` comes back through `proxy`.
fn fetches(proxy: u16, ip: Ipv4Addr, port: u16) -> bool {
    fetch_via(proxy, SocketAddrV4::new(ip, port)).is_ok_and(|body| body == page(port))
}

/// One `meshplane ping` from `from`'s stack to `to`, waiting 1 s.
fn pings(from: &Daemon, to: Ipv4Addr) -> bool {
    ping_waiting(from, to, "1")
}

/// One `meshplane ping` that waits `secs` for its answer: a short wait
/// probes often while waiting for traffic to come back.
fn ping_waiting(from: &Daemon, to: Ipv4Addr, secs: &str) -> bool {
    let to = to.to_string();
    cli(&from.socket, &["ping", &to, "-c", "1", "-W", secs])
        .status
        .success()
}

/// A daemon with a SOCKS5 proxy on a port of its own.
fn daemon_with_proxy(dir: &std::path::Path) -> (Daemon, u16) {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    (
        Daemon::netstack(dir.to_path_buf(), &["--socks5", &listen]),
        port,
    )
}

#[test]
fn two_netstack_daemons_under_policy_control_on_loopback() {
    let scratch = ScratchDir::new("netstack-policy");
    let dir = &scratch.0;
    let server = Server::start(dir);
    let group = server.new_group("netstack");
    let all = server.group_id("All");
    let key = server.reusable_key("netstack", &[&group]);

    let (a, proxy_a) = daemon_with_proxy(&dir.join("a"));
    let (mut b, proxy_b) = daemon_with_proxy(&dir.join("b"));
    // Down: nothing to ping from or dial through.
    let down = cli(&a.socket, &["ping", "100.64.0.9", "-c", "1"]);
    assert!(!down.status.success());
    assert!(
        String::from_utf8_lossy(&down.stderr).contains("meshplane is down"),
        "{down:?}"
    );
    let mesh_peer = SocketAddrV4::new(Ipv4Addr::new(100, 64, 0, 9), 80);
    assert_eq!(fetch_via(proxy_a, mesh_peer), Err(UNREACHABLE.into()));
    for d in [&a, &b] {
        d.ok(&["up", "--management-url", &server.url, "--setup-key", &key]);
    }
    let (sa, sb) = (a.status(), b.status());
    for s in [&sa, &sb] {
        assert_eq!(s["mode"], "netstack", "{s:#}");
    }
    let (ip_a, ip_b) = (mesh_ip(&sa), mesh_ip(&sb));
    assert_ne!(ip_a, ip_b);

    // Two services on the host, reached over the mesh by B's forwarder.
    let (web, ssh) = (free_port(), free_port());
    let _servers = (web_server(web), web_server(ssh));

    // The Default policy allows everything: ping both ways, HTTP on both
    // ports, through either peer's proxy.
    wait_until(JOIN_WITHIN, "a pinging b", || ping_waiting(&a, ip_b, "0.3"));
    assert!(pings(&b, ip_a), "b pings a");
    assert_eq!(
        fetch_via(proxy_a, SocketAddrV4::new(ip_b, web)),
        Ok(page(web))
    );
    assert!(fetches(proxy_a, ip_b, ssh), "the second port crosses");
    // Nothing on B's host port: B's forwarder resets, the proxy says so.
    let closed = SocketAddrV4::new(ip_b, free_port());
    assert_eq!(fetch_via(proxy_a, closed), Err(REFUSED.into()));
    // Outside the mesh.
    let outside = SocketAddrV4::new(Ipv4Addr::LOCALHOST, web);
    assert_eq!(fetch_via(proxy_a, outside), Err(UNREACHABLE.into()));
    assert!(fetches(proxy_b, ip_a, web), "and the other way");
    if installed("curl") {
        let out = Command::new("curl")
            .args(["-s", "--max-time", "10", "--socks5"])
            .arg(format!("127.0.0.1:{proxy_a}"))
            .arg(format!("http://{ip_b}:{web}/"))
            .output()
            .expect("run curl");
        assert_eq!(String::from_utf8_lossy(&out.stdout), page(web), "curl");
    }

    // Without any policy the traffic stops.
    let since = server.delete_policies();
    let took = changes_within(since, PROMPT, "ping failing without a policy", || {
        !pings(&a, ip_b)
    });
    eprintln!("policy deleted: ping failed {took:?} later");
    assert!(!fetches(proxy_a, ip_b, web), "HTTP is blocked too");

    // An allow-all policy brings it back.
    let since = Instant::now();
    let allow_all = server.allow_all(&all);
    let took = changes_within(since, PROMPT, "ping working again", || {
        ping_waiting(&a, ip_b, "0.3")
    });
    eprintln!("allow-all re-added: ping worked {took:?} later");
    assert!(fetches(proxy_a, ip_b, web), "HTTP crosses again");

    // Only TCP `web` within the group: it passes, `ssh` and ping do not.
    server.allow_tcp_port(&group, web);
    let since = Instant::now();
    server.delete(&format!(
        "/api/policies/{}",
        allow_all["id"].as_str().expect("policy id")
    ));
    let took = changes_within(since, PROMPT, "the second port blocked", || {
        !fetches(proxy_a, ip_b, ssh)
    });
    eprintln!("group-limited policy: second port blocked {took:?} later");
    changes_within(since, PROMPT + PROMPT, "HTTP on the allowed port", || {
        fetches(proxy_a, ip_b, web)
    });
    assert!(
        !fetches(proxy_a, ip_b, ssh),
        "the second port stays blocked"
    );
    assert!(!pings(&a, ip_b), "ping is blocked");
    assert!(fetches(proxy_a, ip_b, web), "the allowed port still passes");

    // kill -9 of b: the server sees it gone; a new daemon on b's state
    // comes back by itself as the same peer with the same IP.
    kill_and_restart(&server, &mut b, &sb, DISCONNECT_WITHIN, JOIN_WITHIN);
    wait_until(JOIN_WITHIN, "HTTP to the restarted b", || {
        fetches(proxy_a, ip_b, web)
    });
    assert!(
        !fetches(proxy_a, ip_b, ssh),
        "the second port is still blocked"
    );
}

/// How long an in-process connection may take.
const WAIT: Duration = Duration::from_secs(20);

/// Two joined stacks on loopback with B forwarding to the host.
struct Forwarded {
    _a: Side,
    _b: Side,
    stack_a: Netstack,
    stack_b: Netstack,
    _forward: Forwarder,
}

async fn forwarded() -> Forwarded {
    let (a, b, stack_a, stack_b) = joined_stacks().await;
    let forward = Forwarder::start(&stack_b);
    Forwarded {
        _a: a,
        _b: b,
        stack_a,
        stack_b,
        _forward: forward,
    }
}

/// An echo server on the host's loopback; its port.
async fn host_echo() -> u16 {
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    port
}

/// Sends `data` over a new connection from A to B's `port`, closes its
/// half and returns everything that came back.
async fn echo_once(stack: &Netstack, port: u16, data: &[u8]) -> Vec<u8> {
    let mut s = tokio::time::timeout(WAIT, stack.connect(SocketAddrV4::new(IP_B, port)))
        .await
        .expect("connects in time")
        .expect("connects");
    s.write_all(data).await.expect("write");
    s.shutdown().await.expect("shutdown");
    let mut back = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut back))
        .await
        .expect("echo in time")
        .expect("read");
    back
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarder_serves_parallel_and_repeated_connections() {
    let f = forwarded().await;
    let port = host_echo().await;

    // Several at once on one port, each with its own data.
    let tasks: Vec<_> = (0..8u8)
        .map(|i| {
            let dialer = f.stack_a.dialer();
            tokio::spawn(async move {
                let data: Vec<u8> = (0..200_000u32).map(|n| (n as u8) ^ i).collect();
                let mut s =
                    tokio::time::timeout(WAIT, dialer.connect(SocketAddrV4::new(IP_B, port)))
                        .await
                        .expect("connects in time")
                        .expect("connects");
                let (mut r, mut w) = tokio::io::split(&mut s);
                let send = async {
                    w.write_all(&data).await.expect("write");
                    w.shutdown().await.expect("shutdown");
                };
                let mut back = Vec::new();
                let (_, got) = tokio::join!(send, r.read_to_end(&mut back));
                got.expect("read");
                assert!(back == data, "connection {i} got its own bytes back");
            })
        })
        .collect();
    for t in tasks {
        tokio::time::timeout(WAIT, t)
            .await
            .expect("in time")
            .expect("connection task");
    }

    // Many short ones in a row.
    for i in 0..100u32 {
        let data = i.to_be_bytes();
        assert_eq!(echo_once(&f.stack_a, port, &data).await, data);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarder_resets_closed_ports_and_leaves_listened_ones() {
    let f = forwarded().await;

    // Nothing on the host's port: the connection is refused, not hung.
    let closed = common::procs::free_port();
    let refused = tokio::time::timeout(WAIT, f.stack_a.connect(SocketAddrV4::new(IP_B, closed)))
        .await
        .expect("answered in time");
    assert_eq!(
        refused.map(|_| ()).map_err(|e| e.kind()),
        Err(io::ErrorKind::ConnectionRefused)
    );

    // A port the stack itself listens on stays the stack's: the host has
    // nothing there, and the stack's own echo answers.
    let port = common::procs::free_port();
    let _echo = common::echo_server(&f.stack_b, port);
    assert_eq!(echo_once(&f.stack_a, port, b"mine").await, b"mine");
}

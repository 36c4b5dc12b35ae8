//! The acceptance test of the whole system in kernel TUN mode: the real
//! management server and two real `meshplane daemon` processes, each in a
//! network namespace this test creates, joined by a bridge on
//! 10.213.80.0/24. Both peers join with one setup key; the kernel's `ping`
//! and HTTP over TCP cross the WireGuard tunnel; policy changes made over
//! REST stop and restore the traffic within 2 s; a group-limited policy
//! lets TCP 8080 through and blocks 22; a daemon killed with SIGKILL shows
//! disconnected on the server and comes back as the same peer.
//!
//! Needs root, `ip netns`, `ping`, `curl` and `python3`; prints `SKIPPED …`
//! and passes otherwise. Every process is killed and every namespace
//! deleted on drop, also when the test fails.

#![cfg(target_os = "linux")]

mod common;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::netns::{exec_in, unsupported, Lan, LAN_SRV};
use common::netns_mesh::{listening, wait_until, NsDaemon, NsServer, Proc, ScratchDir};
use serde_json::{json, Value};

/// How fast a REST change must show in the traffic.
const PROMPT: Duration = Duration::from_secs(2);
/// How long two fresh peers may take to reach each other.
const JOIN_WITHIN: Duration = Duration::from_secs(20);
/// How long the server may take to see a killed daemon gone.
const DISCONNECT_WITHIN: Duration = Duration::from_secs(10);
const WEB_PORT: u16 = 8080;
const SSH_PORT: u16 = 22;
/// What the listeners in `b` serve, so a reply proves it crossed the tunnel.
const PAGE: &str = "hello through the tunnel\n";

fn ping(ns: &str, to: Ipv4Addr) -> bool {
    ping_waiting(ns, to, "1")
}

/// One ping that waits `secs` (fractions allowed) for its answer; a short
/// wait times the first packet through the tunnel closely.
fn ping_waiting(ns: &str, to: Ipv4Addr, secs: &str) -> bool {
    exec_in(ns, "ping")
        .args(["-c", "1", "-W", secs])
        .arg(to.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// An HTTP GET from inside `ns` of the page on `to:port`; whether the page
/// came back intact.
fn fetch(ns: &str, to: Ipv4Addr, port: u16) -> bool {
    let out = exec_in(ns, "curl")
        .args(["-s", "--connect-timeout", "1", "-m", "2"])
        .arg(format!("http://{to}:{port}/page.txt"))
        .stderr(Stdio::null())
        .output();
    out.is_ok_and(|o| o.status.success() && o.stdout == PAGE.as_bytes())
}

/// Runs `probe` until it returns true; panics unless one that started
/// within `limit` of `since` did. How long after `since` that probe started.
fn changes_within(
    since: Instant,
    limit: Duration,
    what: &str,
    mut probe: impl FnMut() -> bool,
) -> Duration {
    loop {
        let started = Instant::now();
        if probe() {
            return started - since;
        }
        assert!(
            started - since < limit,
            "{what} did not happen within {limit:?}"
        );
    }
}

/// The real interpreter behind `python3` (not a wrapper script), so that
/// killing the child kills the listener itself.
fn python() -> Option<String> {
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .ok()?;
    let path = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !path.is_empty()).then_some(path)
}

fn missing_tools() -> Option<String> {
    for tool in ["ping", "curl"] {
        let found = Command::new(tool)
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !found {
            return Some(format!("`{tool}` is not installed"));
        }
    }
    python()
        .is_none()
        .then(|| "`python3` is not installed".into())
}

/// An HTTP server for `dir` inside `ns` on `at`, up and accepting.
fn web_server(python: &str, ns: &str, at: SocketAddrV4, dir: &Path) -> Proc {
    let process = Proc::spawn(
        exec_in(ns, python)
            .args(["-m", "http.server", &at.port().to_string()])
            .args(["--bind", &at.ip().to_string()])
            .arg("--directory")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    wait_until(Duration::from_secs(10), "the web server listening", || {
        listening(ns, at)
    });
    process
}

fn mesh_ip(status: &Value) -> Ipv4Addr {
    status["ip"]
        .as_str()
        .and_then(|ip| ip.parse().ok())
        .unwrap_or_else(|| panic!("no mesh IP in {status:#}"))
}

/// The server's view of the peer with mesh IP `ip`.
fn server_peer(server: &NsServer, ip: Ipv4Addr) -> Value {
    server
        .get("/api/peers")
        .as_array()
        .and_then(|peers| {
            peers
                .iter()
                .find(|p| p["ip"] == ip.to_string().as_str())
                .cloned()
        })
        .unwrap_or_else(|| panic!("the server does not list {ip}"))
}

/// Deletes every policy; the time just before the first deletion.
fn delete_policies(server: &NsServer) -> Instant {
    let policies = server.get("/api/policies");
    let since = Instant::now();
    for p in policies.as_array().into_iter().flatten() {
        server.delete(&format!("/api/policies/{}", p["id"].as_str().unwrap_or("")));
    }
    since
}

fn policy(name: &str, rule: Value) -> Value {
    json!({"name": name, "enabled": true, "rules": [rule]})
}

#[test]
fn two_daemons_talk_over_wireguard_under_policy_control_in_namespaces() {
    if let Some(why) = unsupported().or_else(missing_tools) {
        println!("SKIPPED kernel TUN end-to-end namespace test: {why}");
        return;
    }
    let python = python().unwrap_or_default();
    let lan = Lan::create("e2e");
    let scratch = ScratchDir::new("netns-e2e");
    let dir = &scratch.0;

    let server = NsServer::start(&lan.srv, SocketAddrV4::new(LAN_SRV, 33073), dir);
    let group = server.post("/api/groups", json!({"name": "e2e"}))["id"].clone();
    let all = server.group_id("All");
    let key = server.post(
        "/api/setup-keys",
        json!({"name": "e2e", "type": "reusable", "expires_in": 0,
            "auto_groups": [group], "usage_limit": 0}),
    )["key"]
        .as_str()
        .expect("the setup key")
        .to_string();

    let a = NsDaemon::start(&lan.a, dir.join("a"));
    let mut b = NsDaemon::start(&lan.b, dir.join("b"));
    // Time from b's `up` (a is already up) to the first packet through the
    // tunnel: a ping from a to b answered.
    a.ok(&["up", "--management-url", &server.url, "--setup-key", &key]);
    let upped = Instant::now();
    b.ok(&["up", "--management-url", &server.url, "--setup-key", &key]);
    let up_returned = upped.elapsed();
    let (sa, sb) = (a.status(), b.status());
    for s in [&sa, &sb] {
        assert_eq!(s["up"], true, "{s:#}");
        assert!(
            s["mode"].as_str().is_some_and(|m| m.starts_with("kernel")),
            "{s:#}"
        );
    }
    let (ip_a, ip_b) = (mesh_ip(&sa), mesh_ip(&sb));
    assert_ne!(ip_a, ip_b);
    wait_until(JOIN_WITHIN, "a pinging b", || {
        ping_waiting(&lan.a, ip_b, "0.2")
    });
    eprintln!(
        "up to first packet: a's ping answered by b {:?} after b's `up` started \
         (the `up` command returned after {up_returned:?})",
        upped.elapsed()
    );

    // Two listeners in b on its mesh IP.
    std::fs::write(dir.join("page.txt"), PAGE).expect("page");
    let mut web = web_server(&python, &lan.b, SocketAddrV4::new(ip_b, WEB_PORT), dir);
    let _ssh = web_server(&python, &lan.b, SocketAddrV4::new(ip_b, SSH_PORT), dir);

    // The Default policy allows everything: ping both ways, HTTP on both ports.
    assert!(ping(&lan.a, ip_b), "a pings b");
    assert!(ping(&lan.b, ip_a), "b pings a");
    assert!(fetch(&lan.a, ip_b, WEB_PORT), "HTTP on 8080 crosses");
    assert!(
        fetch(&lan.a, ip_b, SSH_PORT),
        "TCP 22 crosses under allow-all"
    );

    // Without any policy the traffic stops.
    let since = delete_policies(&server);
    let took = changes_within(since, PROMPT, "ping failing without a policy", || {
        !ping(&lan.a, ip_b)
    });
    eprintln!("policy deleted: ping failed {took:?} later");
    assert!(!fetch(&lan.a, ip_b, WEB_PORT), "HTTP is blocked too");

    // An allow-all policy brings it back.
    let since = Instant::now();
    let allow_all = server.post(
        "/api/policies",
        policy(
            "allow all",
            json!({"name": "all", "enabled": true, "action": "accept", "bidirectional": true,
                "protocol": "all", "sources": [all], "destinations": [all]}),
        ),
    );
    let took = changes_within(since, PROMPT, "ping working again", || ping(&lan.a, ip_b));
    eprintln!("allow-all re-added: ping worked {took:?} later");
    assert!(fetch(&lan.a, ip_b, WEB_PORT), "HTTP crosses again");

    // Only TCP 8080 within the group: 8080 passes, 22 and ping do not.
    server.post(
        "/api/policies",
        policy(
            "web only",
            json!({"name": "8080", "enabled": true, "action": "accept", "bidirectional": false,
                "protocol": "tcp", "ports": ["8080"], "sources": [group], "destinations": [group]}),
        ),
    );
    let since = Instant::now();
    server.delete(&format!(
        "/api/policies/{}",
        allow_all["id"].as_str().expect("policy id")
    ));
    let took = changes_within(since, PROMPT, "TCP 22 blocked", || {
        !fetch(&lan.a, ip_b, SSH_PORT)
    });
    eprintln!("group-limited policy: 22 blocked {took:?} later");
    changes_within(since, PROMPT + PROMPT, "HTTP on 8080 passing", || {
        fetch(&lan.a, ip_b, WEB_PORT)
    });
    assert!(!fetch(&lan.a, ip_b, SSH_PORT), "TCP 22 stays blocked");
    assert!(!ping(&lan.a, ip_b), "ping is blocked");
    assert!(fetch(&lan.a, ip_b, WEB_PORT), "8080 still passes");

    // kill -9 of b: the server sees it gone.
    assert_eq!(server_peer(&server, ip_b)["connected"], true);
    b.kill();
    let took = wait_until(DISCONNECT_WITHIN, "b disconnected on the server", || {
        server_peer(&server, ip_b)["connected"] == false
    });
    eprintln!("b killed: disconnected on the server {took:?} later");

    // A new daemon on b's state comes back as the same peer with the same IP.
    // It was up and nobody ran `down`, so it reconnects by itself.
    b.launch();
    wait_until(JOIN_WITHIN, "b back up by itself", || {
        b.status()["up"] == true
    });
    let back = b.status();
    assert_eq!(back["peer_id"], sb["peer_id"]);
    assert_eq!(mesh_ip(&back), ip_b);
    wait_until(JOIN_WITHIN, "b connected again", || {
        server_peer(&server, ip_b)["connected"] == true
    });
    // The old listener's address went with the killed daemon's interface.
    web.kill();
    let _web = web_server(&python, &lan.b, SocketAddrV4::new(ip_b, WEB_PORT), dir);
    wait_until(JOIN_WITHIN, "HTTP on 8080 to the restarted b", || {
        fetch(&lan.a, ip_b, WEB_PORT)
    });
    assert!(!fetch(&lan.a, ip_b, SSH_PORT), "TCP 22 is still blocked");
}

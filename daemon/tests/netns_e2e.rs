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
use common::netns_mesh::{listening, ns_daemon, NsServer};
use common::procs::{
    changes_within, kill_and_restart, mesh_ip, wait_until, Proc, Rest, ScratchDir,
};

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
    let group = server.new_group("e2e");
    let all = server.group_id("All");
    let key = server.reusable_key("e2e", &[&group]);

    let a = ns_daemon(&lan.a, dir.join("a"));
    let mut b = ns_daemon(&lan.b, dir.join("b"));
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
    let since = server.delete_policies();
    let took = changes_within(since, PROMPT, "ping failing without a policy", || {
        !ping(&lan.a, ip_b)
    });
    eprintln!("policy deleted: ping failed {took:?} later");
    assert!(!fetch(&lan.a, ip_b, WEB_PORT), "HTTP is blocked too");

    // An allow-all policy brings it back.
    let since = Instant::now();
    let allow_all = server.allow_all(&all);
    let took = changes_within(since, PROMPT, "ping working again", || ping(&lan.a, ip_b));
    eprintln!("allow-all re-added: ping worked {took:?} later");
    assert!(fetch(&lan.a, ip_b, WEB_PORT), "HTTP crosses again");

    // Only TCP 8080 within the group: 8080 passes, 22 and ping do not.
    server.allow_tcp_port(&group, WEB_PORT);
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

    // kill -9 of b: the server sees it gone; a new daemon on b's state
    // comes back as the same peer with the same IP.
    kill_and_restart(&server, &mut b, &sb, DISCONNECT_WITHIN, JOIN_WITHIN);
    // The old listener's address went with the killed daemon's interface.
    web.kill();
    let _web = web_server(&python, &lan.b, SocketAddrV4::new(ip_b, WEB_PORT), dir);
    wait_until(JOIN_WITHIN, "HTTP on 8080 to the restarted b", || {
        fetch(&lan.a, ip_b, WEB_PORT)
    });
    assert!(!fetch(&lan.a, ip_b, SSH_PORT), "TCP 22 is still blocked");
}

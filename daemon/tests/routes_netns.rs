//! Routes, networks and high availability with real processes: the
//! management server and three `meshplane daemon`s (kernel TUN mode) in
//! namespaces this test creates ([`OfficeLan`]): peer `a`, and routing
//! peers `b` and `c`, both with a leg on an office network (10.50.0.0/24)
//! holding host H, which `a` has no path to of its own.
//!
//! 1. A route created over REST (`/api/routes`, through `b`) lets `a` ping H
//!    and fetch HTTP from it; with masquerade H sees `b`'s office address,
//!    without it `a`'s mesh address; deleting the policies, then the route,
//!    cuts it.
//! 2. The same through a network (`/api/networks`) with a resource and a
//!    router; a netstack peer `d` (in `a`'s namespace) reaches H through its
//!    SOCKS5 proxy.
//! 3. High availability: `c` becomes a second router of that network with a
//!    higher metric; `b` is killed and `a` reaches H through `c`.
//!
//! Times are measured and printed, never asserted; the waits are generous.
//! Needs root, `ip netns`, `nft`, `ping`, `curl` and `python3`; prints
//! `SKIPPED …` and passes otherwise.

#![cfg(target_os = "linux")]

mod common;

use std::ffi::OsString;
use std::net::SocketAddrV4;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::lan::{OfficeLan, HOST_H, OFFICE, OFFICE_B, OFFICE_C};
use common::netns::{exec_in, ping_once, unsupported, LAN_SRV};
use common::netns_mesh::{listening, ns_daemon, NsServer};
use common::procs::{installed, mesh_ip, wait_until, Daemon, Proc, Rest, ScratchDir, MESHPLANE};
use serde_json::{json, Value};

/// How long a change may take to show in the traffic (generous: a fresh
/// peer connects first; the time it took is printed).
const WITHIN: Duration = Duration::from_secs(20);
/// How long the three fresh daemons may take to join.
const JOIN_WITHIN: Duration = Duration::from_secs(30);
const WEB_PORT: u16 = 8080;

/// A web server that answers every GET with the client's address, so the
/// test sees which source address reached H. One thread per connection and
/// a read timeout: a connection whose request was lost while a route
/// changed must not hold up the ones after it.
const WHO_AM_I: &str = r#"
import http.server, sys
class Who(http.server.BaseHTTPRequestHandler):
    timeout = 3
    def do_GET(self):
        body = self.client_address[0].encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), Who).serve_forever()
"#;

/// The source address H saw for an HTTP GET from `ns`, if the GET worked.
fn seen_by_h(ns: &str) -> Option<String> {
    seen_by_h_via(ns, &[])
}

/// [`seen_by_h`] with further curl arguments (a proxy).
fn seen_by_h_via(ns: &str, args: &[&str]) -> Option<String> {
    let out = exec_in(ns, "curl")
        .args(["-s", "--connect-timeout", "1", "-m", "2"])
        .args(args)
        .arg(format!("http://{HOST_H}:{WEB_PORT}/"))
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn missing_tools() -> Option<String> {
    ["ping", "curl", "python3"]
        .into_iter()
        .find(|t| !installed(t))
        .map(|t| format!("`{t}` is not installed"))
        .or_else(|| {
            let nft = Command::new("nft")
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            (!nft.is_ok_and(|s| s.success())).then(|| "`nft` is not installed".to_string())
        })
}

/// Waits until `probe` holds; prints and returns how long it took.
fn measure(what: &str, since: Instant, within: Duration, probe: impl FnMut() -> bool) {
    wait_until(within, what, probe);
    eprintln!("{what}: {:?}", since.elapsed());
}

/// The one network `a`'s status lists, with its chosen routing peer.
fn network_of(status: &Value) -> &Value {
    &status["routes"]["networks"][0]
}

#[test]
fn routes_networks_and_failover_between_routing_peers_in_namespaces() {
    if let Some(why) = unsupported().or_else(missing_tools) {
        println!("SKIPPED routes namespace test: {why}");
        return;
    }
    let office = OfficeLan::create("rt");
    let lan = &office.lan;
    let scratch = ScratchDir::new("routes-netns");
    let dir = &scratch.0;

    let server = NsServer::start(&lan.srv, SocketAddrV4::new(LAN_SRV, 33073), dir);
    let all = server.group_id("All");
    let key = server.reusable_key("rt", &[]);
    let a = ns_daemon(&lan.a, dir.join("a"));
    let mut b = ns_daemon(&lan.b, dir.join("b"));
    let c = ns_daemon(&office.c, dir.join("c"));
    let socks = "127.0.0.1:1080";
    let d = Daemon::start(
        ["ip", "netns", "exec", &lan.a, MESHPLANE]
            .map(OsString::from)
            .to_vec(),
        dir.join("d"),
        &["--netstack", "--socks5", socks],
    );
    for d in [&a, &b, &c, &d] {
        d.ok(&["up", "--management-url", &server.url, "--setup-key", &key]);
    }
    let (ip_a, ip_b, ip_c) = (
        mesh_ip(&a.status()),
        mesh_ip(&b.status()),
        mesh_ip(&c.status()),
    );
    wait_until(JOIN_WITHIN, "a pinging b and c", || {
        ping_once(&lan.a, ip_b) && ping_once(&lan.a, ip_c)
    });
    let _web = Proc::spawn(
        exec_in(&office.h, "python3")
            .args(["-c", WHO_AM_I, &HOST_H.to_string(), &WEB_PORT.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    wait_until(Duration::from_secs(10), "H's web server", || {
        listening(&office.h, SocketAddrV4::new(HOST_H, WEB_PORT))
    });
    assert!(!ping_once(&lan.a, HOST_H), "a has no path to H of its own");
    let b_id = server.peer_by_ip(ip_b)["id"].clone();
    let c_id = server.peer_by_ip(ip_c)["id"].clone();

    // 1. A route through b, masqueraded.
    let mut route = json!({"description": "office", "network_id": "office", "enabled": true,
        "peer": b_id, "network": OFFICE, "metric": 9999, "masquerade": true,
        "groups": [all], "keep_route": false});
    let since = Instant::now();
    let created = server.post("/api/routes", route.clone());
    let route_path = format!("/api/routes/{}", created["id"].as_str().expect("route id"));
    measure("route created: a pings H", since, WITHIN, || {
        ping_once(&lan.a, HOST_H)
    });
    measure("route created: a fetches from H", since, WITHIN, || {
        seen_by_h(&lan.a).is_some()
    });
    assert_eq!(
        seen_by_h(&lan.a).as_deref(),
        Some(OFFICE_B.to_string().as_str())
    );
    let sa = a.status();
    assert_eq!(network_of(&sa)["network"], OFFICE, "{sa:#}");
    assert_eq!(
        network_of(&sa)["routing_peer_ip"],
        ip_b.to_string(),
        "{sa:#}"
    );
    let sb = b.status();
    assert_eq!(sb["routes"]["served"][0]["network"], OFFICE, "{sb:#}");
    assert_eq!(sb["routes"]["served"][0]["masquerade"], true, "{sb:#}");
    assert!(
        a.ok(&["status", "-d"]).contains(&format!("{OFFICE}  via ")),
        "the human status names the routing peer"
    );

    // Without masquerade H sees a's mesh address (it routes back via b).
    office.route_back_via(OFFICE_B);
    route["masquerade"] = json!(false);
    let since = Instant::now();
    server.call("PUT", &route_path, Some(route.clone()));
    let a_mesh = ip_a.to_string();
    measure(
        "masquerade off: H sees a's mesh address",
        since,
        WITHIN,
        || seen_by_h(&lan.a).as_deref() == Some(a_mesh.as_str()),
    );

    // Deleting the policies cuts it; an allow-all policy restores it.
    let since = server.delete_policies();
    measure(
        "policies deleted: a no longer reaches H",
        since,
        WITHIN,
        || !ping_once(&lan.a, HOST_H),
    );
    let since = Instant::now();
    server.allow_all(&all);
    measure("allow-all policy: a reaches H again", since, WITHIN, || {
        ping_once(&lan.a, HOST_H)
    });

    // Deleting the route cuts it.
    let since = Instant::now();
    server.delete(&route_path);
    measure(
        "route deleted: a no longer reaches H",
        since,
        WITHIN,
        || !ping_once(&lan.a, HOST_H),
    );

    // 2. A network with the office as a resource and b as its router.
    let resources = server.new_group("office resources");
    let network = server.post("/api/networks", json!({"name": "office"}));
    let net_path = format!(
        "/api/networks/{}",
        network["id"].as_str().expect("network id")
    );
    server.post(
        &format!("{net_path}/resources"),
        json!({"name": "office lan", "address": OFFICE, "enabled": true, "groups": [resources]}),
    );
    server.post(
        "/api/policies",
        json!({"name": "office", "enabled": true, "rules": [{"name": "office", "enabled": true,
            "action": "accept", "bidirectional": false, "protocol": "all",
            "sources": [all], "destinations": [resources]}]}),
    );
    let since = Instant::now();
    server.post(
        &format!("{net_path}/routers"),
        json!({"peer": b_id, "metric": 10, "masquerade": true, "enabled": true}),
    );
    measure("network router b: a pings H", since, WITHIN, || {
        ping_once(&lan.a, HOST_H)
    });
    measure("network router b: a fetches from H", since, WITHIN, || {
        seen_by_h(&lan.a).as_deref() == Some(OFFICE_B.to_string().as_str())
    });
    measure(
        "network router b: netstack d fetches from H over SOCKS5",
        since,
        WITHIN,
        || {
            seen_by_h_via(&lan.a, &["--socks5", socks]).as_deref()
                == Some(OFFICE_B.to_string().as_str())
        },
    );
    assert!(
        d.status()["routes"]["networks"][0]["routing_peer_ip"] == ip_b.to_string(),
        "netstack d routes the office through b"
    );

    // 3. c as a second router with a higher metric: b stays chosen until
    // it is killed, then c carries the network.
    server.post(
        &format!("{net_path}/routers"),
        json!({"peer": c_id, "metric": 20, "masquerade": true, "enabled": true}),
    );
    let sa = a.wait_for(WITHIN, "a seeing both routers", |s| {
        network_of(s)["routing_peers"] == 2
    });
    assert_eq!(
        network_of(&sa)["routing_peer_ip"],
        ip_b.to_string(),
        "{sa:#}"
    );
    let since = Instant::now();
    b.kill();
    measure("b killed: a pings H through c", since, WITHIN, || {
        ping_once(&lan.a, HOST_H)
    });
    let c_office = OFFICE_C.to_string();
    measure("b killed: H sees c's address", since, WITHIN, || {
        seen_by_h(&lan.a).as_deref() == Some(c_office.as_str())
    });
    let sa = a.status();
    assert_eq!(
        network_of(&sa)["routing_peer_ip"],
        ip_c.to_string(),
        "{sa:#}"
    );
}

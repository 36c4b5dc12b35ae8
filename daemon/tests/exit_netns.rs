//! Exit nodes in network namespaces this test creates.
//!
//! `policy_routing_sends_unmarked_traffic_into_the_tunnel` checks the
//! kernel's routing decisions with the exit route on and off, and that a
//! run that died with the exit on leaves nothing behind the next start.
//!
//! `exit_node_carries_internet_traffic_and_keeps_management` runs the real
//! server and two daemons (kernel TUN) on a LAN namespace, plus an
//! "internet" namespace that both the LAN's router and peer B can reach:
//!
//! ```text
//!   srv (server at 10.213.99.1 on lo, LAN router) --- inet (198.51.100.7)
//!    |  bridge 10.213.80.0/24                            |
//!    a (default route via srv)        b (route to 198.51.100.7 only) --+
//! ```
//!
//! The internet host answers with the address it sees, so the test tells
//! the two paths apart: a's own (via srv, it sees 10.213.80.2) and the exit
//! (via b, masqueraded, it sees b's 10.213.90.1). a reaches management at
//! 10.213.99.1 through its default route, which b cannot route at all: had
//! a's management or relay connections entered the tunnel, they would die.
//! The server restarts while the exit is on, and a logs in, syncs (a rename
//! of b and then the route's removal reach it) and reconnects its relay.
//! `down` with the exit on, and the exit peer going away, restore a's own
//! path too.
//!
//! `domain_route_resolves_and_routes_its_addresses` uses the same
//! namespaces with a DNS server the test runs in `srv` (a's and b's
//! resolver through `/etc/netns/<ns>/resolv.conf`): a route to `web.test`
//! through b sends the internet host's address, and only it, through b.
//!
//! Needs root and `ip netns`; prints `SKIPPED …` and passes otherwise.

#![cfg(target_os = "linux")]

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

use common::netns::{exec_in, in_netns, unsupported, Lan, Namespaces, LAN_SRV, UNDERLAY_B};
use common::netns_mesh::{ns_daemon, NsServer};
use common::procs::{mesh_ip, wait_until, Rest, ScratchDir};
use ipnet::Ipv4Net;
use meshplane::engine::kernel_tun::KernelTun;
use meshplane::engine::wg::{Engine, EngineConfig};
use meshplane::key::PrivateKey;
use meshplane::routing::exit::{ExitRouting, PRIORITY_MAIN, PRIORITY_TUNNEL};
use meshplane::routing::mark::UNDERLAY_MARK;

/// An address on no network of the test: only a default route reaches it.
const INTERNET: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
const INTERNET_V6: &str = "2001:db8:99::7";

fn ip(ns: &str, args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["-n", ns])
        .args(args)
        .output()
        .expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The interface the kernel would send a packet to `to` out of, for a
/// socket with `mark`.
fn route_dev(ns: &str, to: Ipv4Addr, mark: Option<u32>) -> String {
    route_dev_any(ns, &to.to_string(), mark).unwrap_or_else(|| panic!("no route to {to}"))
}

/// [`route_dev`] for any address; `None` when the kernel refuses (an
/// unreachable route).
fn route_dev_any(ns: &str, to: &str, mark: Option<u32>) -> Option<String> {
    let mark = mark.map(|m| m.to_string());
    let mut args = vec!["-n", ns, "route", "get", to];
    if let Some(m) = &mark {
        args.extend(["mark", m.as_str()]);
    }
    let out = Command::new("ip").args(&args).output().expect("run ip");
    let text = String::from_utf8_lossy(&out.stdout);
    let dev = text.split_whitespace().skip_while(|w| *w != "dev").nth(1);
    out.status
        .success()
        .then(|| dev.unwrap_or_default().to_string())
}

/// Whether any of our policy rules (IPv4 or IPv6) is installed.
fn has_our_rules(ns: &str) -> bool {
    let rules = ip(ns, &["rule", "list"]) + &ip(ns, &["-6", "rule", "list"]);
    rules.lines().any(|l| {
        l.starts_with(&format!("{PRIORITY_MAIN}:")) || l.starts_with(&format!("{PRIORITY_TUNNEL}:"))
    })
}

#[test]
fn policy_routing_sends_unmarked_traffic_into_the_tunnel() {
    if let Some(why) = unsupported() {
        println!("SKIPPED exit policy routing test: {why}");
        return;
    }
    let ns = Namespaces::create("exitpol");
    let a = ns.a.clone();
    let gateway = UNDERLAY_B.to_string();
    ip(&a, &["route", "add", "default", "via", &gateway]);
    let v6 = [
        "addr",
        "add",
        "2001:db8:77::1/64",
        "dev",
        "mpveth-a",
        "nodad",
    ];
    ip(&a, &["-6"].iter().chain(&v6).copied().collect::<Vec<_>>());
    ip(
        &a,
        &[
            "-6",
            "route",
            "add",
            "default",
            "via",
            "2001:db8:77::2",
            "dev",
            "mpveth-a",
        ],
    );
    let check = a.clone();
    in_netns(&a, move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let mesh_ip = Ipv4Addr::new(100, 64, 0, 1);
            let (_engine, tunnel) = Engine::start(EngineConfig {
                private_key: PrivateKey::generate(),
                listen: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
                mesh_ip,
            })
            .await
            .expect("engine starts");
            let address = Ipv4Net::new(mesh_ip, 10).expect("valid prefix");
            let _tun = KernelTun::start("mp0", address, tunnel).expect("tun starts");
            let ns = check.as_str();
            let underlay = "mpveth-a";
            assert_eq!(route_dev(ns, INTERNET, None), underlay, "before");
            assert_eq!(
                route_dev_any(ns, INTERNET_V6, None).as_deref(),
                Some(underlay),
                "IPv6 before"
            );

            let mut exit = ExitRouting::new("mp0").expect("netlink");
            exit.set(true).await.expect("exit on");
            assert_eq!(route_dev(ns, INTERNET, None), "mp0", "internet: tunnel");
            assert_eq!(
                route_dev(ns, INTERNET, Some(UNDERLAY_MARK)),
                underlay,
                "our own marked sockets keep the host's path"
            );
            assert_eq!(
                route_dev(ns, UNDERLAY_B, None),
                underlay,
                "the LAN stays on the LAN"
            );
            assert_eq!(
                route_dev(ns, Ipv4Addr::new(100, 64, 0, 2), None),
                "mp0",
                "the mesh stays on the TUN"
            );
            assert_eq!(
                route_dev_any(ns, INTERNET_V6, None),
                None,
                "IPv6 to the internet is refused, not leaked past the exit"
            );
            assert_eq!(
                route_dev_any(ns, INTERNET_V6, Some(UNDERLAY_MARK)).as_deref(),
                Some(underlay)
            );
            // Twice is once.
            exit.set(true).await.expect("exit still on");

            exit.set(false).await.expect("exit off");
            assert_eq!(route_dev(ns, INTERNET, None), underlay, "off: own path");
            assert_eq!(
                route_dev_any(ns, INTERNET_V6, None).as_deref(),
                Some(underlay),
                "off: IPv6 too"
            );
            assert!(!has_our_rules(ns), "off: no rules left");

            // A run that dies with the exit on: the next start cleans up.
            exit.set(true).await.expect("exit on again");
            drop(exit);
            assert!(has_our_rules(ns), "a dead run's rules are still there");
            let mut next = ExitRouting::new("mp0").expect("netlink");
            next.set(false).await.expect("first use");
            assert!(!has_our_rules(ns), "the next run removed them");
            assert_eq!(route_dev(ns, INTERNET, None), underlay, "own path again");
        });
    })
    .join()
    .expect("test thread");
}

/// The internet host's address, on the `inet` namespace's loopback.
const INET_HOST: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
const INET_PORT: u16 = 8080;
/// The server's address on `srv`'s loopback: a reaches it through its
/// default route, b not at all.
const SERVER_FAR: Ipv4Addr = Ipv4Addr::new(10, 213, 99, 1);
/// b's address on its link to `inet`, what masquerade makes traffic from b
/// come from.
const B_INET: Ipv4Addr = Ipv4Addr::new(10, 213, 90, 1);
const MGMT_PORT: u16 = 33073;
/// Generous limits: the daemons start, join and follow REST changes.
const WITHIN: Duration = Duration::from_secs(20);

/// The `inet` namespace, deleted on drop.
struct Internet(String);

impl Drop for Internet {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Adds the `inet` namespace and its links to `srv` and `b`, and the
/// routes described in the module docs.
fn internet(lan: &Lan) -> Internet {
    let inet = Internet(lan.srv.replace("-srv-", "-inet-"));
    let n = inet.0.as_str();
    common::netns::ip(&["netns", "add", n]);
    ip(n, &["link", "set", "lo", "up"]);
    ip(n, &["addr", "add", &format!("{INET_HOST}/32"), "dev", "lo"]);
    for (side, side_dev, side_addr, inet_dev, inet_addr) in [
        (
            &lan.srv,
            "mpinet0",
            "10.213.91.1/24",
            "mpup0",
            "10.213.91.2/24",
        ),
        (
            &lan.b,
            "mpinet1",
            "10.213.90.1/24",
            "mpup1",
            "10.213.90.2/24",
        ),
    ] {
        common::netns::ip(&[
            "link", "add", side_dev, "netns", side, "type", "veth", "peer", "name", inet_dev,
            "netns", n,
        ]);
        ip(side, &["addr", "add", side_addr, "dev", side_dev]);
        ip(side, &["link", "set", side_dev, "up"]);
        ip(n, &["addr", "add", inet_addr, "dev", inet_dev]);
        ip(n, &["link", "set", inet_dev, "up"]);
    }
    let host = format!("{INET_HOST}/32");
    ip(n, &["route", "add", "10.213.80.0/24", "via", "10.213.91.1"]);
    ip(
        &lan.srv,
        &["addr", "add", &format!("{SERVER_FAR}/32"), "dev", "lo"],
    );
    ip(&lan.srv, &["route", "add", &host, "via", "10.213.91.2"]);
    let forward = exec_in(&lan.srv, "sysctl")
        .args(["-qw", "net.ipv4.ip_forward=1"])
        .status()
        .expect("run sysctl");
    assert!(forward.success(), "srv forwards");
    ip(
        &lan.a,
        &["route", "add", "default", "via", &LAN_SRV.to_string()],
    );
    ip(&lan.b, &["route", "add", &host, "via", "10.213.90.2"]);
    inet
}

/// A TCP service in `inet` that answers every connection with the address
/// it came from, and closes it. Serves until the test process ends.
fn who_am_i_server(inet: &str) {
    let (ready, up) = std::sync::mpsc::channel();
    let _detached = in_netns(inet, move || {
        let listener = TcpListener::bind((INET_HOST, INET_PORT)).expect("bind");
        ready.send(()).expect("test waits");
        for mut conn in listener.incoming().flatten() {
            if let Ok(peer) = conn.peer_addr() {
                let _ = conn.write_all(peer.ip().to_string().as_bytes());
            }
        }
    });
    up.recv_timeout(WITHIN).expect("server up");
}

/// Who the internet host says `ns` is, or `None` when it cannot be
/// reached.
fn seen_as(ns: &str) -> Option<String> {
    in_netns(ns, || {
        let at = SocketAddr::from((INET_HOST, INET_PORT));
        let mut conn = TcpStream::connect_timeout(&at, Duration::from_secs(1)).ok()?;
        conn.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut answer = String::new();
        conn.read_to_string(&mut answer).ok()?;
        Some(answer)
    })
    .join()
    .expect("client thread")
}

#[test]
fn exit_node_carries_internet_traffic_and_keeps_management() {
    if let Some(why) = unsupported() {
        println!("SKIPPED exit node end-to-end test: {why}");
        return;
    }
    let lan = Lan::create("exit");
    let inet = internet(&lan);
    who_am_i_server(&inet.0);
    let scratch = ScratchDir::new("exit-e2e");
    let dir = &scratch.0;
    let listen = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, MGMT_PORT);
    let server = NsServer::start(&lan.srv, listen, dir);
    let all = server.group_id("All");
    let key = server.reusable_key("exit", &[]);
    let a = ns_daemon(&lan.a, dir.join("a"));
    let mut b = ns_daemon(&lan.b, dir.join("b"));
    let far = format!("http://{SERVER_FAR}:{MGMT_PORT}");
    let near = format!("http://{LAN_SRV}:{MGMT_PORT}");
    a.ok(&["up", "--management-url", &far, "--setup-key", &key]);
    b.ok(&["up", "--management-url", &near, "--setup-key", &key]);
    let ip_b = mesh_ip(&b.status());
    let b_id = server.peer_by_ip(ip_b)["id"].clone();
    a.wait_for(WITHIN, "a connected to b", |s| {
        s["peers"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["connected"] == true))
    });

    // a's own path: through srv, from its LAN address.
    assert_eq!(seen_as(&lan.a).as_deref(), Some("10.213.80.2"));

    // b becomes the exit node.
    let exit_route = serde_json::json!({"description": "exit", "network_id": "exit",
        "enabled": true, "peer": b_id, "network": "0.0.0.0/0", "metric": 9999,
        "masquerade": true, "groups": [all], "keep_route": false});
    let route = server.post("/api/routes", exit_route.clone());
    let b_inet = B_INET.to_string();
    let through_b = || seen_as(&lan.a).as_deref() == Some(b_inet.as_str());
    let own_path = || seen_as(&lan.a).as_deref() == Some("10.213.80.2");
    let took = wait_until(WITHIN, "a's internet traffic leaving through b", through_b);
    eprintln!("exit route created: a's traffic left through b {took:?} later");
    let status = a.status();
    assert_eq!(
        status["exit_node"]["peer_ip"],
        ip_b.to_string(),
        "{status:#}"
    );
    assert_eq!(status["management_connected"], true, "{status:#}");

    // Management still reaches a: the server restarts, so a must log in
    // and sync again over new connections while the exit is on, and a
    // rename of b made afterwards reaches it.
    drop(server);
    let server = NsServer::start(&lan.srv, listen, dir);
    server.call(
        "PUT",
        &format!("/api/peers/{}", b_id.as_str().unwrap_or_default()),
        Some(serde_json::json!({"name": "exit-b", "ssh_enabled": false,
            "login_expiration_enabled": false, "inactivity_expiration_enabled": false})),
    );
    let took = wait_until(WITHIN, "a synced again, with the rename of b", || {
        let s = a.status();
        s["management_connected"] == true
            && s["exit_node"]["fqdn"]
                .as_str()
                .is_some_and(|f| f.starts_with("exit-b."))
    });
    eprintln!("server restarted with the exit on: a synced again {took:?} later");
    a.wait_for(WITHIN, "a's relay connection back", |s| {
        s["relay_connected"] == true
    });
    eprintln!("{}", a.ok(&["status"]));

    // Removing the route restores a's own path.
    server.delete(&format!(
        "/api/routes/{}",
        route["id"].as_str().unwrap_or_default()
    ));
    let took = wait_until(WITHIN, "a's own path back", own_path);
    eprintln!("exit route deleted: a's own path back {took:?} later");
    assert_eq!(a.status()["exit_node"], serde_json::Value::Null);
    assert!(!has_our_rules(&lan.a), "no policy rules left");

    // `down` with the exit on restores the host's path, rules and all.
    server.post("/api/routes", exit_route);
    wait_until(WITHIN, "the exit on again", through_b);
    a.ok(&["down"]);
    assert!(!has_our_rules(&lan.a), "down: no policy rules left");
    assert!(own_path(), "down: a's own path");

    // So does the exit peer going away.
    a.ok(&["up"]);
    wait_until(WITHIN, "the exit on after up", through_b);
    b.kill();
    let took = wait_until(WITHIN, "a's own path without b", own_path);
    eprintln!("exit peer killed: a's own path back {took:?} later");
    assert_eq!(a.status()["exit_node"], serde_json::Value::Null);
    a.ok(&["down"]);
}

/// The name the domain route names, and what the test's DNS server says
/// it is: the internet host.
const WEB_NAME: &str = "web.test";

/// `/etc/netns/<ns>/resolv.conf` pointing at `nameserver`, which `ip netns
/// exec` shows the namespace's processes as `/etc/resolv.conf` (the real
/// host's file is never touched); removed on drop.
struct NsResolvConf(std::path::PathBuf);

impl NsResolvConf {
    fn write(ns: &str, nameserver: Ipv4Addr) -> NsResolvConf {
        let dir = std::path::Path::new("/etc/netns").join(ns);
        std::fs::create_dir_all(&dir).expect("netns etc directory");
        std::fs::write(
            dir.join("resolv.conf"),
            format!("nameserver {nameserver}\n"),
        )
        .expect("resolv.conf");
        NsResolvConf(dir)
    }
}

impl Drop for NsResolvConf {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A DNS server in `ns` on UDP `at`: `web.test A` is [`INET_HOST`]
/// (TTL 60), every other name does not exist. Serves until the test
/// process ends.
fn dns_server(ns: &str, at: Ipv4Addr) {
    use hickory_resolver::proto::op::{Message, ResponseCode};
    use hickory_resolver::proto::rr::{rdata::A, RData, Record, RecordType};
    let (ready, up) = std::sync::mpsc::channel();
    let _detached = in_netns(ns, move || {
        let socket = std::net::UdpSocket::bind((at, 53)).expect("bind DNS");
        ready.send(()).expect("test waits");
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            let Ok(query) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut answer = Message::response(query.metadata.id, query.metadata.op_code);
            answer.metadata.recursion_desired = query.metadata.recursion_desired;
            answer.metadata.recursion_available = true;
            answer.metadata.response_code = ResponseCode::NXDomain;
            for q in &query.queries {
                answer.add_query(q.clone());
                if q.name().to_ascii().trim_end_matches('.') == WEB_NAME {
                    answer.metadata.response_code = ResponseCode::NoError;
                    if q.query_type() == RecordType::A {
                        answer.add_answer(Record::from_rdata(
                            q.name().clone(),
                            60,
                            RData::A(A(INET_HOST)),
                        ));
                    }
                }
            }
            if let Ok(bytes) = answer.to_vec() {
                let _ = socket.send_to(&bytes, from);
            }
        }
    });
    up.recv_timeout(WITHIN).expect("DNS server up");
}

#[test]
fn domain_route_resolves_and_routes_its_addresses() {
    if let Some(why) = unsupported() {
        println!("SKIPPED domain route end-to-end test: {why}");
        return;
    }
    let lan = Lan::create("dom");
    let inet = internet(&lan);
    who_am_i_server(&inet.0);
    dns_server(&lan.srv, LAN_SRV);
    let _resolv_a = NsResolvConf::write(&lan.a, LAN_SRV);
    let _resolv_b = NsResolvConf::write(&lan.b, LAN_SRV);
    let scratch = ScratchDir::new("exit-dom");
    let dir = &scratch.0;
    let listen = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, MGMT_PORT);
    let server = NsServer::start(&lan.srv, listen, dir);
    let all = server.group_id("All");
    let key = server.reusable_key("dom", &[]);
    let a = ns_daemon(&lan.a, dir.join("a"));
    let b = ns_daemon(&lan.b, dir.join("b"));
    let url = format!("http://{LAN_SRV}:{MGMT_PORT}");
    a.ok(&["up", "--management-url", &url, "--setup-key", &key]);
    b.ok(&["up", "--management-url", &url, "--setup-key", &key]);
    let ip_b = mesh_ip(&b.status());
    let b_id = server.peer_by_ip(ip_b)["id"].clone();
    assert_eq!(seen_as(&lan.a).as_deref(), Some("10.213.80.2"), "own path");

    // web.test through b, masqueraded: its address (only) leaves via b.
    let route = server.post(
        "/api/routes",
        serde_json::json!({"description": "web", "network_id": "web", "enabled": true,
            "peer": b_id, "domains": [WEB_NAME], "metric": 9999, "masquerade": true,
            "groups": [all], "keep_route": false}),
    );
    let b_inet = B_INET.to_string();
    let took = wait_until(WITHIN, "web.test's address routed through b", || {
        seen_as(&lan.a).as_deref() == Some(b_inet.as_str())
    });
    eprintln!("domain route created: its address routed through b {took:?} later");
    let status = a.status();
    let network = &status["routes"]["networks"][0];
    assert_eq!(network["domains"][0], WEB_NAME, "{status:#}");
    assert_eq!(network["routing_peer_ip"], ip_b.to_string(), "{status:#}");
    assert_eq!(status["exit_node"], serde_json::Value::Null, "not an exit");
    assert_eq!(
        route_dev(&lan.a, SERVER_FAR, None),
        "mpeth0",
        "other addresses keep a's own path"
    );

    server.delete(&format!(
        "/api/routes/{}",
        route["id"].as_str().unwrap_or_default()
    ));
    wait_until(WITHIN, "a's own path back", || {
        seen_as(&lan.a).as_deref() == Some("10.213.80.2")
    });
    a.ok(&["down"]);
    b.ok(&["down"]);
}

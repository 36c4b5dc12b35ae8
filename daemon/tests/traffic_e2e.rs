//! The network traffic log end to end on loopback: the real management
//! server with traffic logging on, and two `meshplane daemon --netstack
//! --socks5 … --flow-report-secs 1` processes. A TCP connection through
//! A's SOCKS5 proxy to B and a ping from A to B show up as start events
//! that A reported in `GET /api/events/network-traffic` (filtered by
//! reporter and protocol); under a policy that only lets one TCP port
//! through, a connection to another port shows as A's drop event.
//!
//! The server binary is `meshplane-server` next to this test's directory
//! (`cargo build -p meshplane-server` with the same target directory).

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::time::Duration;

use common::procs::{cli, free_port, mesh_ip, wait_until, Daemon, Rest, ScratchDir, Server};
use serde_json::{json, Value};

/// How long two fresh peers may take to reach each other, and reported
/// events to show up.
const WITHIN: Duration = Duration::from_secs(30);
/// How long one connection attempt through the proxy waits.
const PROBE: Duration = Duration::from_millis(1500);
const GREETING: &[u8] = b"hello over the mesh\n";

/// A TCP server on the host's `127.0.0.1:port` that greets every
/// connection; B's forwarder hands mesh connections to it.
fn greeter(port: u16) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).expect("bind the greeter");
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let _ = conn.write_all(GREETING);
        }
    });
}

/// Connects to `to` through the SOCKS5 proxy on `proxy` and reads what the
/// far end says until it closes; or why that failed.
fn talk_via(proxy: u16, to: SocketAddrV4) -> Result<Vec<u8>, String> {
    let fail = |e: std::io::Error| e.to_string();
    let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, proxy)).map_err(fail)?;
    s.set_read_timeout(Some(PROBE)).map_err(fail)?;
    let mut request = vec![5, 1, 0, 5, 1, 0, 1];
    request.extend_from_slice(&to.ip().octets());
    request.extend_from_slice(&to.port().to_be_bytes());
    s.write_all(&request).map_err(fail)?;
    let mut replies = [0u8; 12];
    s.read_exact(&mut replies).map_err(fail)?;
    if replies[..2] != [5, 0] || replies[3] != 0 {
        return Err(format!("SOCKS replies {replies:?}"));
    }
    let mut said = Vec::new();
    s.read_to_end(&mut said).map_err(fail)?;
    Ok(said)
}

/// The flows the server lists for `query`.
fn flows(server: &Server, query: &str) -> Vec<Value> {
    let page = server.get(&format!("/api/events/network-traffic?{query}"));
    page["data"].as_array().cloned().unwrap_or_default()
}

/// Waits until a flow listed for `query` goes to `destination` and has an
/// event of `kind`; that flow.
fn wait_for_flow(server: &Server, query: &str, destination: &str, kind: &str) -> Value {
    let mut found = None;
    wait_until(WITHIN, &format!("a {kind} flow to {destination}"), || {
        found = flows(server, query).into_iter().find(|f| {
            f["destination"]["address"] == destination
                && f["events"]
                    .as_array()
                    .is_some_and(|e| e.iter().any(|e| e["type"] == kind))
        });
        found.is_some()
    });
    found.unwrap_or_default()
}

#[test]
fn reported_flows_reach_the_traffic_log() {
    let scratch = ScratchDir::new("traffic-e2e");
    let dir = &scratch.0;
    let server = Server::start(dir);
    let group = server.new_group("traffic");
    let key = server.reusable_key("traffic", &[&group]);
    let account = server.get("/api/accounts")[0].clone();
    let mut settings = account["settings"].clone();
    settings["extra"]["network_traffic_logs_enabled"] = json!(true);
    settings["extra"]["network_traffic_packet_counter_enabled"] = json!(true);
    let account_path = format!("/api/accounts/{}", account["id"].as_str().unwrap_or(""));
    server.call("PUT", &account_path, Some(json!({ "settings": settings })));

    let proxy = free_port();
    let listen = format!("127.0.0.1:{proxy}");
    let a = Daemon::netstack(
        dir.join("a"),
        &["--socks5", &listen, "--flow-report-secs", "1"],
    );
    let b = Daemon::netstack(dir.join("b"), &["--flow-report-secs", "1"]);
    for d in [&a, &b] {
        d.ok(&["up", "--management-url", &server.url, "--setup-key", &key]);
    }
    let (ip_a, ip_b) = (mesh_ip(&a.status()), mesh_ip(&b.status()));
    let id_a = server.peer_by_ip(ip_a)["id"].clone();
    let id_b = server.peer_by_ip(ip_b)["id"].clone();
    let reporter_a = format!("reporter_id={}", id_a.as_str().unwrap_or(""));

    let (open, closed) = (free_port(), free_port());
    greeter(open);
    greeter(closed);
    wait_until(WITHIN, "a pinging b", || {
        cli(
            &a.socket,
            &["ping", &ip_b.to_string(), "-c", "1", "-W", "0.3"],
        )
        .status
        .success()
    });
    let said = talk_via(proxy, SocketAddrV4::new(ip_b, open));
    assert_eq!(said.as_deref(), Ok(GREETING), "through the proxy");

    // The TCP connection, as A saw it leave.
    let tcp = wait_for_flow(
        &server,
        &format!("{reporter_a}&protocol=6"),
        &format!("{ip_b}:{open}"),
        "TYPE_START",
    );
    assert_eq!(tcp["reporter_id"], id_a);
    assert_eq!(tcp["direction"], "EGRESS");
    assert_eq!(tcp["source"]["id"], id_a);
    assert_eq!(tcp["destination"]["id"], id_b);
    assert_eq!(tcp["destination"]["type"], "PEER");
    // Closed by FIN both ways: its end carries the counts.
    let ended = wait_for_flow(
        &server,
        &format!("{reporter_a}&protocol=6&type=TYPE_END"),
        &format!("{ip_b}:{open}"),
        "TYPE_END",
    );
    assert_eq!(ended["flow_id"], tcp["flow_id"]);
    assert!(ended["rx_packets"].as_u64().unwrap_or(0) > 0, "{ended}");
    assert!(
        ended["rx_bytes"].as_u64().unwrap_or(0) >= GREETING.len() as u64,
        "{ended}"
    );
    assert!(ended["tx_packets"].as_u64().unwrap_or(0) > 0, "{ended}");
    // B saw it come in.
    let reporter_b = format!("reporter_id={}", id_b.as_str().unwrap_or(""));
    let incoming = wait_for_flow(
        &server,
        &format!("{reporter_b}&direction=INGRESS&protocol=6"),
        &format!("{ip_b}:{open}"),
        "TYPE_START",
    );
    assert_eq!(incoming["source"]["id"], id_a);
    // The ping.
    let ping = wait_for_flow(
        &server,
        &format!("{reporter_a}&protocol=1"),
        &format!("{ip_b}:0"),
        "TYPE_START",
    );
    assert_eq!(ping["icmp"]["type"], 8);
    assert!(flows(&server, &format!("{reporter_a}&protocol=1"))
        .iter()
        .all(|f| f["protocol"] == 1));

    // Only TCP `open` within the group: a connection to `closed` is
    // dropped by A's firewall on the way out.
    server.allow_tcp_port(&group, open);
    for p in server.get("/api/policies").as_array().into_iter().flatten() {
        if p["name"] != "one port" {
            server.delete(&format!("/api/policies/{}", p["id"].as_str().unwrap_or("")));
        }
    }
    let blocked = format!("{ip_b}:{closed}");
    let mut dropped = None;
    wait_until(WITHIN, "a drop event for the blocked port", || {
        let _ = talk_via(proxy, SocketAddrV4::new(ip_b, closed));
        dropped = flows(&server, &format!("{reporter_a}&type=TYPE_DROP&protocol=6"))
            .into_iter()
            .find(|f| f["destination"]["address"] == blocked.as_str());
        dropped.is_some()
    });
    let dropped = dropped.unwrap_or_default();
    assert_eq!(dropped["direction"], "EGRESS");
    assert_eq!(dropped["num_of_drops"], 1);
    assert_eq!(dropped["source"]["id"], id_a);
}

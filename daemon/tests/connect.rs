//! How two peers reach each other, end to end on loopback without
//! privileges: the real management server (signal, STUN and relay on its
//! one port) and two `meshplane daemon --netstack` processes.
//!
//! - With nothing in the way, the peers find each other's candidates over
//!   signal and talk directly: `status --json` says `"connection":
//!   "direct"` with the peer's UDP address, and pings pass.
//! - With `--relay-only` on both sides neither announces nor tries an
//!   address, so the only way is the relay: `"connection": "relayed"`,
//!   and pings still pass, through the server's relay over TCP.
//!
//! The server binary is `meshplane-server` next to this test's directory;
//! `cargo test --workspace` builds it.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::procs::{cli, Daemon, Rest, ScratchDir, Server};
use serde_json::Value;

/// How long two peers may take from `up` to a working path.
const CONNECT_WITHIN: Duration = Duration::from_secs(30);

/// The entry of `status` for the peer with mesh IP `ip`.
fn peer<'a>(status: &'a Value, ip: &Value) -> Option<&'a Value> {
    status["peers"]
        .as_array()?
        .iter()
        .find(|p| p["mesh_ip"] == *ip)
}

/// Whether one `meshplane ping` from `from` to `ip` is answered.
fn pings(from: &Daemon, ip: &Value) -> bool {
    cli(
        &from.socket,
        &["ping", ip.as_str().unwrap(), "-c", "1", "-W", "2"],
    )
    .status
    .success()
}

/// Two daemons with `flags`, both up with one setup key; their statuses.
fn two_peers(scratch: &ScratchDir, flags: &[&str]) -> (Server, Daemon, Daemon, Value, Value) {
    let server = Server::start(&scratch.0);
    let key = server.reusable_key("connect", &[]);
    let a = Daemon::netstack(scratch.0.join("a"), flags);
    let b = Daemon::netstack(scratch.0.join("b"), flags);
    for d in [&a, &b] {
        d.ok(&["up", "--management-url", &server.url, "--setup-key", &key]);
    }
    let (sa, sb) = (a.status(), b.status());
    (server, a, b, sa, sb)
}

#[test]
fn peers_on_one_network_connect_directly() {
    let scratch = ScratchDir::new("connect-direct");
    let (_server, a, b, sa, sb) = two_peers(&scratch, &[]);
    let (ip_a, ip_b) = (sa["ip"].clone(), sb["ip"].clone());
    let b_port = sb["listen"]
        .as_str()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();

    let seen = a.wait_for(CONNECT_WITHIN, "a directly connected to b", |s| {
        peer(s, &ip_b).is_some_and(|p| p["connection"] == "direct" && p["connected"] == true)
    });
    let to_b = peer(&seen, &ip_b).unwrap();
    // The address in use is one of b's: its WireGuard port.
    let endpoint = to_b["endpoint"].as_str().unwrap();
    assert!(endpoint.ends_with(&format!(":{b_port}")), "{to_b:#}");
    // a announced what STUN saw: on loopback, its own socket.
    let candidates = seen["candidates"].as_array().unwrap();
    assert!(
        candidates
            .iter()
            .any(|c| c.as_str().unwrap().contains("typ srflx")
                || c.as_str().unwrap().contains("typ host")),
        "{seen:#}"
    );
    b.wait_for(CONNECT_WITHIN, "b directly connected to a", |s| {
        peer(s, &ip_a).is_some_and(|p| p["connection"] == "direct")
    });
    assert!(pings(&a, &ip_b), "{}", a.log());
    assert!(pings(&b, &ip_a), "{}", b.log());

    let text = a.ok(&["status", "-d"]);
    assert!(text.contains("Connection type: P2P"), "{text}");
    assert!(text.contains(&format!("Endpoint: {endpoint}")), "{text}");
}

#[test]
fn peers_without_candidates_connect_over_the_relay() {
    let scratch = ScratchDir::new("connect-relayed");
    let (_server, a, b, sa, sb) = two_peers(&scratch, &["--relay-only"]);
    let (ip_a, ip_b) = (sa["ip"].clone(), sb["ip"].clone());

    let seen = a.wait_for(CONNECT_WITHIN, "a relayed to b", |s| {
        s["relay_connected"] == true
            && peer(s, &ip_b)
                .is_some_and(|p| p["connection"] == "relayed" && p["connected"] == true)
    });
    assert_eq!(seen["candidates"], Value::Array(Vec::new()), "{seen:#}");
    assert_eq!(peer(&seen, &ip_b).unwrap()["endpoint"], Value::Null);
    b.wait_for(CONNECT_WITHIN, "b relayed to a", |s| {
        peer(s, &ip_a).is_some_and(|p| p["connection"] == "relayed")
    });
    assert!(pings(&a, &ip_b), "{}", a.log());
    assert!(pings(&b, &ip_a), "{}", b.log());

    let text = a.ok(&["status", "-d"]);
    let relay = seen["relay"].as_str().unwrap();
    assert!(text.contains("Connection type: Relayed"), "{text}");
    assert!(text.contains(&format!("Endpoint: {relay}")), "{text}");
}

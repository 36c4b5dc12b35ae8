//! Kernel TUN mode between two network namespaces this test creates, joined
//! by a veth pair on a private subnet: the kernel's own `ping` and a TCP
//! transfer (32 MiB, checked byte for byte by the receiver, so the
//! segmentation offloads and batching are smoke-tested) cross the WireGuard
//! tunnel, and a map allowing only TCP 8080
//! stops ping and port 22. Needs root and `ip netns`; skipped (with a
//! message) otherwise. Nothing but the test's namespaces carries traffic.

#![cfg(target_os = "linux")]

mod common;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::{Command, Stdio};

use common::netns::{
    count_server, ns_peer, send_bytes, unsupported, Namespaces, NsPeer, UNDERLAY_A, UNDERLAY_B,
};
use common::{allow_all, rule, IP_A, IP_B};
use meshplane::engine::wg::{NetworkUpdate, PeerConfig};
use meshplane::key::PrivateKey;
use meshplane_core::firewall::Rule;
use meshplane_core::model::Protocol;
use meshplane_core::netmap::firewall::Direction;

fn ping(ns: &str, to: Ipv4Addr) -> bool {
    Command::new("ip")
        .args([
            "netns", "exec", ns, "ping", "-c", "2", "-W", "2", "-i", "0.5",
        ])
        .arg(to.to_string())
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn kernel_ping_and_tcp_cross_the_tunnel_between_namespaces() {
    let why = unsupported().or_else(|| {
        (!common::procs::installed("ping"))
            .then(|| "`ping` is not installed (scripts/setup.sh installs it)".to_string())
    });
    if let Some(why) = why {
        println!("SKIPPED kernel TUN namespace test: {why}");
        return;
    }
    let ns = Namespaces::create("test");
    let (key_a, key_b) = (PrivateKey::generate(), PrivateKey::generate());
    let map = |other: PeerConfig, firewall: Vec<Rule>| NetworkUpdate {
        peers: vec![other],
        firewall,
        ..NetworkUpdate::default()
    };
    let a = NsPeer::start(
        &ns.a,
        key_a.clone(),
        IP_A,
        map(ns_peer(&key_b, IP_B, UNDERLAY_B), allow_all()),
    );
    let b = NsPeer::start(
        &ns.b,
        key_b.clone(),
        IP_B,
        map(ns_peer(&key_a, IP_A, UNDERLAY_A), allow_all()),
    );

    assert!(ping(&ns.a, IP_B), "A pings B over the tunnel");
    assert!(ping(&ns.b, IP_A), "B pings A over the tunnel");
    let at = |port| SocketAddrV4::new(IP_B, port);
    let server = count_server(&ns.b, at(5001));
    let len = 32 << 20;
    assert_eq!(send_bytes(&ns.a, at(5001), len).expect("transfer"), len);
    server.join().expect("server thread");

    // Only TCP 8080 from A may reach B now.
    b.update(map(
        ns_peer(&key_a, IP_A, UNDERLAY_A),
        vec![rule(IP_A, Direction::In, Protocol::Tcp, Some(8080))],
    ));
    assert!(!ping(&ns.a, IP_B), "ping is blocked");
    let web = count_server(&ns.b, at(8080));
    assert_eq!(
        send_bytes(&ns.a, at(8080), 1 << 20).expect("8080 passes"),
        1 << 20
    );
    web.join().expect("server thread");
    let _ssh = count_server(&ns.b, at(22));
    assert!(
        send_bytes(&ns.a, at(22), 1024).is_err(),
        "port 22 is blocked"
    );

    a.stop();
    b.stop();
}

//! Netstack mode on loopback, no privileges: two engines in this process,
//! each with its own UDP socket on 127.0.0.1, real WireGuard handshakes and
//! real TCP through smoltcp.

mod common;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use common::netbird::echo_request;
use common::{allow_all, echo_server, join, rule, Side, IP_A, IP_B};
use ipnet::Ipv4Net;
use meshplane::engine::netstack::{Netstack, TcpStream};
use meshplane::engine::wg::PeerConfig;
use meshplane_core::model::Protocol;
use meshplane_core::netmap::firewall::Direction;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);
/// Long enough for a handshake and a few retransmissions on loopback.
const BLOCKED: Duration = Duration::from_secs(2);

fn loopback() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
}

fn net(ip: Ipv4Addr) -> Ipv4Net {
    Ipv4Net::new(ip, 10).expect("valid prefix")
}

struct Pair {
    a: Side,
    b: Side,
    stack_a: Netstack,
    stack_b: Netstack,
}

impl Pair {
    /// A connection from A to B's `port`, which must open in time.
    async fn connect(&self, port: u16) -> TcpStream {
        timeout(WAIT, self.stack_a.connect(SocketAddrV4::new(IP_B, port)))
            .await
            .expect("connects in time")
            .expect("connected")
    }

    /// Whether a connection from A to B's `port` fails to open.
    async fn cannot_connect(&self, port: u16) -> bool {
        timeout(BLOCKED, self.stack_a.connect(SocketAddrV4::new(IP_B, port)))
            .await
            .is_err()
    }
}

/// Whether nothing comes back for what `s` sends now.
async fn echo_stopped(s: &mut TcpStream) -> bool {
    s.write_all(b"anyone?").await.expect("write");
    let mut buf = [0u8; 16];
    timeout(BLOCKED, s.read(&mut buf)).await.is_err()
}

async fn pair() -> Pair {
    let (a, tunnel_a) = Side::start(IP_A, loopback()).await;
    let (b, tunnel_b) = Side::start(IP_B, loopback()).await;
    let stack_a = Netstack::start(net(IP_A), tunnel_a);
    let stack_b = Netstack::start(net(IP_B), tunnel_b);
    Pair {
        a,
        b,
        stack_a,
        stack_b,
    }
}

/// Sends `data` and reads the echo back.
async fn round_trip(s: &mut TcpStream, data: &[u8]) -> Vec<u8> {
    let (mut got, mut buf) = (Vec::with_capacity(data.len()), vec![0u8; 64 * 1024]);
    let mut sent = 0;
    while got.len() < data.len() {
        if sent < data.len() {
            let end = (sent + 32 * 1024).min(data.len());
            s.write_all(&data[sent..end]).await.expect("write");
            sent = end;
        }
        let n = s.read(&mut buf).await.expect("read");
        assert!(n > 0, "connection closed after {} bytes", got.len());
        got.extend_from_slice(&buf[..n]);
    }
    got
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

#[tokio::test]
async fn tcp_carries_data_both_ways_and_status_shows_it() {
    // A few MiB each way, compared byte for byte: the smoke test of the
    // batched paths (throughput itself is measured by the bench).
    let p = pair().await;
    join(&p.a, allow_all(), &p.b, allow_all()).await;
    let _server = echo_server(&p.stack_b, 7000);

    let mut s = p.connect(7000).await;
    let data = pattern(4 << 20);
    let echoed = timeout(WAIT * 4, round_trip(&mut s, &data))
        .await
        .expect("echo in time");
    assert!(echoed == data, "echo differs");

    let status = p.a.engine.status().await.unwrap();
    assert_eq!(status.peers.len(), 1);
    let peer = &status.peers[0];
    assert_eq!(peer.mesh_ip, IP_B);
    assert!(peer.connected && peer.last_handshake.is_some());
    assert!(
        peer.tx_bytes > 1 << 20 && peer.rx_bytes > 1 << 20,
        "{peer:?}"
    );
    // B never had A's endpoint: it learned it from A's packets.
    let b_status = p.b.engine.status().await.unwrap();
    assert_eq!(b_status.peers[0].endpoint, Some(p.a.engine.local_addr()));
}

#[tokio::test]
async fn firewall_lets_8080_through_and_blocks_22() {
    let p = pair().await;
    // A may send anything; B lets in TCP 8080 from A only.
    let b_rules = vec![rule(IP_A, Direction::In, Protocol::Tcp, Some(8080))];
    join(&p.a, allow_all(), &p.b, b_rules).await;
    let _web = echo_server(&p.stack_b, 8080);
    let _ssh = echo_server(&p.stack_b, 22);

    let mut s = p.connect(8080).await;
    assert_eq!(round_trip(&mut s, b"hello 8080").await, b"hello 8080");
    assert!(p.cannot_connect(22).await, "port 22 must not connect");
}

/// A pair that allows everything, with an echo connection from A to B that
/// has carried data.
async fn open_echo() -> (Pair, TcpStream) {
    let p = pair().await;
    join(&p.a, allow_all(), &p.b, allow_all()).await;
    echo_server(&p.stack_b, 7000);
    let mut s = p.connect(7000).await;
    assert_eq!(round_trip(&mut s, b"open").await, b"open");
    (p, s)
}

#[tokio::test]
async fn removing_the_peer_stops_traffic() {
    let (p, mut s) = open_echo().await;
    p.b.map(vec![], allow_all()).await;
    assert!(p.b.engine.status().await.unwrap().peers.is_empty());
    assert!(echo_stopped(&mut s).await, "no echo may come back");
    assert!(p.cannot_connect(7000).await, "no new connection either");
}

#[tokio::test]
async fn revoking_the_rule_cuts_an_open_connection() {
    let (p, mut s) = open_echo().await;
    p.b.map(vec![p.a.as_peer(false)], vec![]).await;
    assert!(echo_stopped(&mut s).await, "the open connection is cut");
}

#[tokio::test]
async fn a_new_endpoint_in_the_map_keeps_the_session() {
    // B listens on every loopback address, so A can be sent to either.
    let (a, tunnel_a) = Side::start(IP_A, loopback()).await;
    let (b, tunnel_b) = Side::start(IP_B, SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))).await;
    let port = b.engine.local_addr().port();
    let p = Pair {
        stack_a: Netstack::start(net(IP_A), tunnel_a),
        stack_b: Netstack::start(net(IP_B), tunnel_b),
        a,
        b,
    };
    let b_at = |last| PeerConfig {
        endpoint: Some(SocketAddr::from((Ipv4Addr::new(127, 0, 0, last), port))),
        ..p.b.as_peer(false)
    };
    p.a.map(vec![b_at(1)], allow_all()).await;
    p.b.map(vec![p.a.as_peer(false)], allow_all()).await;
    echo_server(&p.stack_b, 7000);
    let mut s = p.connect(7000).await;
    assert_eq!(round_trip(&mut s, b"one").await, b"one");
    let before = p.a.engine.status().await.unwrap().peers[0].clone();

    tokio::time::sleep(Duration::from_millis(300)).await;
    p.a.map(vec![b_at(2)], allow_all()).await;
    assert_eq!(round_trip(&mut s, b"two").await, b"two");
    // (A now follows B's replies, which come from 127.0.0.1 again: that is
    // roaming, tested below; the map's endpoint itself is checked in the
    // peer table's unit test.)
    let after = p.a.engine.status().await.unwrap().peers[0].clone();
    let (t0, t1) = (
        before.last_handshake.unwrap(),
        after.last_handshake.unwrap(),
    );
    assert!(
        (t1.as_millis() - t0.as_millis()).abs() < 100,
        "the session was kept: handshakes at {t0} and {t1}"
    );
}

#[tokio::test]
async fn a_roaming_peer_is_followed() {
    let (p, mut s) = open_echo().await;
    let Pair { a, b, stack_b, .. } = p;
    drop(s.shutdown().await);
    // A comes back on another socket with the same key; B's map is as it was.
    let key = a.key.clone();
    drop(a);
    let (a2, tunnel) = Side::with_key(key, IP_A, loopback()).await;
    let stack_a2 = Netstack::start(net(IP_A), tunnel);
    a2.map(vec![b.as_peer(true)], allow_all()).await;
    let mut s2 = timeout(WAIT, stack_a2.connect(SocketAddrV4::new(IP_B, 7000)))
        .await
        .expect("connects in time")
        .expect("connected");
    assert_eq!(round_trip(&mut s2, b"moved").await, b"moved");
    let seen = b.engine.status().await.unwrap().peers[0].endpoint;
    assert_eq!(seen, Some(a2.engine.local_addr()));
    drop(stack_b);
}

#[tokio::test]
async fn netstack_answers_ping() {
    // A is a bare tunnel (the test plays the host); B runs the netstack.
    let (a, mut tunnel_a) = Side::start(IP_A, loopback()).await;
    let (b, tunnel_b) = Side::start(IP_B, loopback()).await;
    let _stack_b = Netstack::start(net(IP_B), tunnel_b);
    join(&a, allow_all(), &b, allow_all()).await;

    tunnel_a
        .outbound
        .send(echo_request(IP_A, IP_B, 0x4d50, b"meshplane ping"))
        .await
        .unwrap();
    let reply = timeout(WAIT, tunnel_a.inbound.recv())
        .await
        .expect("reply in time")
        .expect("tunnel open");
    assert_eq!(&reply[12..16], &IP_B.octets(), "from B");
    assert_eq!(&reply[16..20], &IP_A.octets(), "to A");
    assert_eq!(reply[9], 1, "ICMP");
    assert_eq!(reply[20], 0, "echo reply");
    assert_eq!(&reply[24..26], &0x4d50u16.to_be_bytes(), "same identifier");
    assert!(reply.ends_with(b"meshplane ping"));
}

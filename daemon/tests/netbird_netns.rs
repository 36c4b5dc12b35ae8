//! A NetBird peer and a `meshplane daemon` in one mesh, each in a network
//! namespace of its own with the management server in a third: the NetBird
//! side is our NetBird-protocol test peer ([`common::netbird`]: encrypted
//! Login and Sync, the signal exchange, ICE checks, WireGuard packets from
//! boringtun), the daemon is the real binary with a kernel TUN interface.
//!
//! 1. On one flat network: ICE succeeds between them, a WireGuard ping
//!    goes over the checked UDP path, and the daemon shows the peer
//!    `direct` at the test peer's address.
//! 2. Each behind its own symmetric NAT (`MASQUERADE --random-fully`): no
//!    ICE check gets through, the test peer reaches the daemon through the
//!    server's relay (NetBird's framing, with the HMAC token of its
//!    login), the WireGuard ping goes through it, and the daemon shows
//!    the peer `relayed`.
//!
//! Needs root, `ip netns` and `iptables`; prints `SKIPPED …` and passes
//! otherwise. Every process is killed and every namespace deleted on drop,
//! also when the test fails.

#![cfg(target_os = "linux")]

mod common;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use common::nat::{Internet, Nat, INTERNET_HOST};
use common::netbird::{map_until, pinging_channel, wireguard_ping, IceLink, NbPeer, Wire};
use common::netns::{in_netns, unsupported, Lan, LAN_B, LAN_SRV};
use common::netns_mesh::{ns_daemon, NsServer};
use common::procs::{installed, mesh_ip, Daemon, Rest, ScratchDir};
use meshplane_core::connect::Candidate;
use meshplane_proto::netbird::LoginResponse;
use meshplane_proto::stun::{binding_request, parse_binding_response};
use meshplane_relay::{PeerId, RelayClient, Token};
use serde_json::Value;
use tokio::net::UdpSocket;
use tonic::transport::Channel;

/// Where the server listens (TCP, and UDP for STUN on the same port).
const MANAGEMENT_PORT: u16 = 33073;
/// How long ICE checks go unanswered before the test peer takes the relay
/// (NetBird's clients wait longer; nothing gets through a symmetric NAT
/// however long they wait).
const ICE_TRIES: Duration = Duration::from_secs(3);
/// How long the daemon may take to show the path the ping took.
const SHOWN_WITHIN: Duration = Duration::from_secs(20);

fn skip(what: &str) -> bool {
    let missing = || (!installed("iptables")).then(|| "`iptables` is not installed".to_string());
    match unsupported().or_else(missing) {
        Some(why) => {
            println!("SKIPPED {what}: {why}");
            true
        }
        None => false,
    }
}

/// What the test peer is told: the server and the daemon it pings.
struct NbRun {
    url: String,
    setup_key: String,
    daemon_key: String,
    daemon_ip: Ipv4Addr,
}

/// The server in `server_ns` listening on `at`, and a kernel-mode daemon
/// in `daemon_ns` up with a setup key of it; what the test peer needs.
fn server_and_daemon(
    server_ns: &str,
    at: Ipv4Addr,
    daemon_ns: &str,
    dir: &Path,
) -> (NsServer, Daemon, NbRun) {
    let server = NsServer::start(server_ns, SocketAddrV4::new(at, MANAGEMENT_PORT), dir);
    let group = server.new_group("nb");
    let setup_key = server.reusable_key("nb", &[&group]);
    let daemon = ns_daemon(daemon_ns, dir.join("daemon"));
    daemon.ok(&[
        "up",
        "--management-url",
        &server.url,
        "--setup-key",
        &setup_key,
    ]);
    let status = daemon.status();
    let run = NbRun {
        url: server.url.clone(),
        setup_key,
        daemon_key: status["public_key"].as_str().expect("a key").to_string(),
        daemon_ip: mesh_ip(&status),
    };
    (server, daemon, run)
}

/// How the test peer reports and is stopped.
struct Hold {
    /// Where the peer sends its key once its ping was answered.
    pinged: mpsc::Sender<String>,
    /// Set by the test when it has seen what it needed: the peer stops.
    stop: Arc<AtomicBool>,
}

impl Hold {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

/// Stops the test peer when dropped.
struct Stopping(Arc<AtomicBool>);

impl Drop for Stopping {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// The test peer registered, and synced until the daemon is in its map.
struct Registered {
    nb: NbPeer,
    /// Its mesh IP.
    ip: Ipv4Addr,
    login: LoginResponse,
    channel: Channel,
}

async fn nb_up(run: &NbRun, hostname: &str) -> Registered {
    let channel = pinging_channel(&run.url, Duration::from_secs(30)).await;
    let mut nb = NbPeer::connect(channel.clone(), hostname).await;
    let login = nb
        .up(&run.setup_key)
        .await
        .expect("the NetBird peer logs in");
    let address = &login.peer_config.as_ref().expect("a peer config").address;
    let ip = address.split('/').next().expect("an address");
    let mut sync = nb.sync().await.expect("a Sync stream");
    map_until(&nb, &mut sync, |m| {
        m.remote_peers
            .iter()
            .any(|p| p.wg_pub_key == run.daemon_key)
    })
    .await;
    Registered {
        nb,
        ip: ip.parse().expect("an IPv4 address"),
        login,
        channel,
    }
}

/// The entry of `status` for the peer with `key`.
fn peer_entry<'a>(status: &'a Value, key: &str) -> Option<&'a Value> {
    status["peers"]
        .as_array()?
        .iter()
        .find(|p| p["public_key"] == key)
}

/// Runs `peer` in namespace `ns` on a runtime of its own and waits for
/// its key, sent once its ping was answered; then for `daemon` to show
/// the peer as `connection`, and stops the peer. The daemon's entry for
/// the peer. Panics with the daemon's and the server's logs if the peer
/// fails.
fn netbird_peer_connects<F>(
    ns: &str,
    peer: impl FnOnce(Hold) -> F + Send + 'static,
    (daemon, server): (&Daemon, &NsServer),
    connection: &str,
) -> Value
where
    F: std::future::Future<Output = ()>,
{
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let (pinged, key) = mpsc::channel();
    let hold = Hold {
        pinged,
        stop: Arc::clone(&stop),
    };
    let thread = in_netns(ns, move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(peer(hold));
    });
    let Ok(key) = key.recv_timeout(Duration::from_secs(60)) else {
        let failed = thread.join().is_err();
        panic!(
            "the NetBird peer never pinged (failed: {failed})\n--- daemon\n{}\n--- server\n{}",
            daemon.log(),
            server.log()
        );
    };
    eprintln!(
        "{connection}: pinged {:?} after the peer started",
        started.elapsed()
    );
    // Stopped also when the wait fails.
    let stopping = Stopping(stop);
    let what = format!("the NetBird peer {connection}");
    let status = daemon.wait_for(SHOWN_WITHIN, &what, |s| {
        peer_entry(s, &key).is_some_and(|p| p["connection"] == connection)
    });
    drop(stopping);
    thread.join().expect("the NetBird peer");
    peer_entry(&status, &key).expect("listed").clone()
}

/// The socket the test peer's WireGuard and ICE use, on every address;
/// its address on the network with `local`.
async fn wireguard_socket(local: Ipv4Addr) -> (UdpSocket, SocketAddr) {
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
        .await
        .expect("a UDP socket");
    let port = socket.local_addr().expect("bound").port();
    (socket, SocketAddr::from((local, port)))
}

/// Offers the daemon an ICE session with `candidates` and starts checking
/// the (IPv4) candidates of its answer, which it returns.
async fn ice_with_daemon(
    run: &NbRun,
    nb: &NbPeer,
    channel: Channel,
    socket: UdpSocket,
    candidates: &[Candidate],
) -> (IceLink, Vec<SocketAddr>) {
    let mut ice = IceLink::offer(nb, channel, &run.daemon_key, socket, candidates).await;
    let (credentials, theirs) = ice.answer().await;
    let targets: Vec<SocketAddr> = theirs
        .iter()
        .map(|c| c.addr)
        .filter(SocketAddr::is_ipv4)
        .collect();
    ice.check(&nb.key, credentials, &targets);
    (ice, targets)
}

/// The test peer on a flat network: ICE with the daemon, then a ping over
/// the checked address; keeps answering checks until stopped.
async fn direct_peer(run: NbRun, hold: Hold, local: Ipv4Addr) {
    let Registered {
        nb, ip, channel, ..
    } = nb_up(&run, "nb-direct").await;
    let (socket, base) = wireguard_socket(local).await;
    let host = [Candidate::host(base)];
    let (mut ice, targets) = ice_with_daemon(&run, &nb, channel, socket, &host).await;
    let started = Instant::now();
    let target = loop {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no ICE answer from {targets:?}"
        );
        if let Some(addr) = ice.step().await.answered {
            break addr;
        }
    };
    eprintln!("ICE answered at {target} after {:?}", started.elapsed());
    let mut wire = Wire::Direct(&ice.socket, target);
    wireguard_ping(&mut wire, &nb, &run.daemon_key, ip, run.daemon_ip).await;
    hold.pinged.send(nb.key.clone()).expect("the test waits");
    while !hold.stopped() {
        ice.step().await;
    }
}

#[test]
fn a_netbird_peer_and_a_daemon_on_one_network_connect_directly() {
    if skip("NetBird peer, direct") {
        return;
    }
    let started = Instant::now();
    let scratch = ScratchDir::new("nb-direct");
    let lan = Lan::create("nbd");
    let (server, daemon, run) = server_and_daemon(&lan.srv, LAN_SRV, &lan.a, &scratch.0);
    let peer = move |hold| direct_peer(run, hold, LAN_B);
    let entry = netbird_peer_connects(&lan.b, peer, (&daemon, &server), "direct");
    let endpoint = entry["endpoint"].as_str().expect("an endpoint");
    assert!(
        endpoint.starts_with(&format!("{LAN_B}:")),
        "direct at the test peer's own address: {entry}"
    );
    eprintln!("direct: {:?} in all", started.elapsed());
}

/// The test peer behind a symmetric NAT: its host and server-reflexive
/// candidates offered, ICE checks unanswered for [`ICE_TRIES`], then a
/// ping through the relay with its login's token; holds the relay
/// connection until stopped.
async fn relayed_peer(run: NbRun, hold: Hold, local: Ipv4Addr) {
    let Registered {
        nb,
        ip,
        login,
        channel,
    } = nb_up(&run, "nb-relayed").await;
    let (socket, base) = wireguard_socket(local).await;
    let stun = SocketAddr::from((INTERNET_HOST, MANAGEMENT_PORT));
    let mapped = reflexive(&socket, stun).await;
    assert_ne!(mapped, base, "the NAT maps the address");
    let candidates = [
        Candidate::host(base),
        Candidate::server_reflexive(mapped, base),
    ];
    let (mut ice, _) = ice_with_daemon(&run, &nb, channel, socket, &candidates).await;
    let tried = Instant::now();
    while tried.elapsed() < ICE_TRIES {
        let step = ice.step().await;
        assert!(
            step.answered.is_none() && step.checked.is_none(),
            "an ICE check got through two symmetric NATs: {step:?}"
        );
    }

    // What a NetBird client does next: the relay its login named, with
    // the token it got there.
    let relay = login
        .netbird_config
        .and_then(|c| c.relay)
        .expect("a relay in the login");
    let url = relay.urls.first().expect("a relay URL").clone();
    assert_eq!(url, format!("rel://{INTERNET_HOST}:{MANAGEMENT_PORT}"));
    let token = Token {
        payload: relay.token_payload,
        signature: relay.token_signature,
    };
    let (sender, mut receiver) = RelayClient::connect(&url, &nb.key, &token)
        .await
        .expect("the relay admits the NetBird peer");
    let daemon = PeerId::from_public_key(&run.daemon_key);
    let mut wire = Wire::Relayed(&sender, &mut receiver, daemon);
    wireguard_ping(&mut wire, &nb, &run.daemon_key, ip, run.daemon_ip).await;
    hold.pinged.send(nb.key.clone()).expect("the test waits");
    while !hold.stopped() {
        let wait = tokio::time::timeout(Duration::from_millis(100), receiver.recv());
        if let Ok(None) = wait.await {
            panic!("the relay closed the connection");
        }
    }
}

/// The address `stun` sees `socket`'s packets come from.
async fn reflexive(socket: &UdpSocket, stun: SocketAddr) -> SocketAddr {
    let mut buf = [0u8; 1500];
    for _ in 0..20 {
        let (id, request) = binding_request();
        socket.send_to(&request, stun).await.expect("send to STUN");
        let wait = tokio::time::timeout(Duration::from_millis(250), socket.recv_from(&mut buf));
        if let Ok(Ok((n, _))) = wait.await {
            if let Some((got, mapped)) = parse_binding_response(&buf[..n]) {
                if got == id {
                    return mapped;
                }
            }
        }
    }
    panic!("no STUN answer from {stun}");
}

#[test]
fn a_netbird_peer_and_a_daemon_behind_symmetric_nats_connect_through_the_relay() {
    if skip("NetBird peer, relayed") {
        return;
    }
    let started = Instant::now();
    let scratch = ScratchDir::new("nb-relayed");
    let mut net = Internet::create("nbr");
    let mut daemon_home = net.home(Nat::Symmetric);
    let mut nb_home = net.home(Nat::Symmetric);
    let daemon_side = net.peer("d", &mut daemon_home);
    let nb_side = net.peer("nb", &mut nb_home);
    let (server, daemon, run) =
        server_and_daemon(&net.ns, INTERNET_HOST, &daemon_side.ns, &scratch.0);
    let local = nb_side.address;
    let peer = move |hold| relayed_peer(run, hold, local);
    netbird_peer_connects(&nb_side.ns, peer, (&daemon, &server), "relayed");
    eprintln!("relayed: {:?} in all", started.elapsed());
}

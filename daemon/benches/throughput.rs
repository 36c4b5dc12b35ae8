//! Throughput through the WireGuard tunnel compared with the same transfer
//! without it.
//!
//! - netstack mode: two engines on 127.0.0.1, TCP from A's smoltcp stack to
//!   B's; baseline: kernel TCP over loopback.
//! - netstack application path: a host TCP client through A's SOCKS5 proxy,
//!   the tunnel and B's forwarder to a sink on the host's loopback (what
//!   `curl --socks5` to a service behind a netstack peer does); same
//!   baseline.
//! - TUN mode (root with `ip netns` only): two namespaces joined by veth,
//!   kernel TCP from A to B's mesh IP through the TUN interfaces; baseline:
//!   kernel TCP over the veth itself.
//! - Forwarded through a routing peer (TUN mode): B routes 10.50.0.0/24, a
//!   third namespace H on a veth behind it; kernel TCP from A to H through
//!   the tunnel, B's route filter and B's kernel forwarding, against the
//!   same transfer peer to peer (A to B's mesh IP).
//!
//! - Relayed (netstack mode): the same two engines with no UDP path
//!   between them, joined only through a relay
//!   (`meshplane_relay::server::serve` on loopback, WebSocket over TCP);
//!   baseline: kernel TCP over loopback, the relay's own path.
//!
//! - Ping (TUN mode): the average round trip of 50 ICMP echoes from A to B
//!   through the tunnel, against the same over the veth, with no load.
//!
//! Each tunnelled path's throughput is also given as a share of plain TCP
//! on the same path. `cargo bench -p meshplane --bench throughput`;
//! `MESHPLANE_BENCH_BYTES` sets the transfer size (default 1 GiB).

#[path = "../tests/common/mod.rs"]
mod common;

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{allow_all, joined_stacks, IP_A, IP_B};
use meshplane::engine::forward::Forwarder;
use meshplane::engine::netstack::Netstack;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const CHUNK: usize = 256 * 1024;

/// Prints a transfer's figures; returns its rate in bytes per second.
fn report(what: &str, bytes: u64, took: Duration) -> f64 {
    let rate = bytes as f64 / took.as_secs_f64();
    println!(
        "{what:<48} {bytes} bytes in {:>7.2} s = {:>8.1} MiB/s ({:.2} Gbit/s)",
        took.as_secs_f64(),
        rate / (1 << 20) as f64,
        rate * 8.0 / 1e9
    );
    rate
}

/// Prints a tunnelled transfer's throughput as a share of plain TCP's on
/// the same path.
fn ratio(what: &str, tunnelled: f64, plain: f64) {
    println!(
        "{:<48} {:.1} % of plain TCP on the same path",
        format!("  {what}"),
        tunnelled / plain * 100.0
    );
}

/// Reads to EOF and answers with the count.
async fn sink<S: AsyncRead + AsyncWrite + Unpin>(mut s: S) -> std::io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    let mut total: u64 = 0;
    loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    s.write_all(&total.to_be_bytes()).await
}

/// Writes `len` bytes, closes its side and waits for the count.
async fn source<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, len: u64) -> std::io::Result<u64> {
    let chunk = vec![0x5au8; CHUNK];
    let mut left = len;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        s.write_all(&chunk[..n]).await?;
        left -= n as u64;
    }
    s.shutdown().await?;
    let mut count = [0u8; 8];
    s.read_exact(&mut count).await?;
    Ok(u64::from_be_bytes(count))
}

/// Moves `len` bytes from the connected stream to the accepted one; the
/// time from connection to the receiver's count.
async fn timed<A, C>(
    accepted: impl Future<Output = std::io::Result<A>> + Send + 'static,
    connected: impl Future<Output = std::io::Result<C>>,
    len: u64,
) -> std::io::Result<Duration>
where
    A: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    C: AsyncRead + AsyncWrite + Unpin,
{
    let server = tokio::spawn(async move { sink(accepted.await?).await });
    let s = connected.await?;
    let start = Instant::now();
    let got = source(s, len).await?;
    let took = start.elapsed();
    server.await.map_err(std::io::Error::other)??;
    assert_eq!(got, len, "every byte arrived");
    Ok(took)
}

/// A transfer from A's smoltcp stack to B's.
async fn stack_to_stack(
    stack_a: &Netstack,
    stack_b: &Netstack,
    len: u64,
) -> std::io::Result<Duration> {
    let mut listener = stack_b.listen(5201)?;
    let accepted = async move { Ok(listener.accept().await?.0) };
    timed(
        accepted,
        stack_a.connect(SocketAddrV4::new(IP_B, 5201)),
        len,
    )
    .await
}

async fn netstack(len: u64) -> std::io::Result<Duration> {
    let (_a, _b, stack_a, stack_b) = joined_stacks().await;
    stack_to_stack(&stack_a, &stack_b, len).await
}

/// A SOCKS5 CONNECT to `to` through the proxy at `proxy`.
async fn socks_connect(
    proxy: SocketAddr,
    to: SocketAddrV4,
) -> std::io::Result<tokio::net::TcpStream> {
    let mut s = tokio::net::TcpStream::connect(proxy).await?;
    s.set_nodelay(true)?;
    s.write_all(&[5, 1, 0]).await?;
    let mut chosen = [0u8; 2];
    s.read_exact(&mut chosen).await?;
    let mut request = vec![5, 1, 0, 1];
    request.extend_from_slice(&to.ip().octets());
    request.extend_from_slice(&to.port().to_be_bytes());
    s.write_all(&request).await?;
    let mut reply = [0u8; 10];
    s.read_exact(&mut reply).await?;
    if chosen != [5, 0] || reply[1] != 0 {
        return Err(std::io::Error::other(format!(
            "SOCKS5 refused: {chosen:?} {reply:?}"
        )));
    }
    Ok(s)
}

async fn socks_forward(len: u64) -> std::io::Result<Duration> {
    let (_a, _b, stack_a, stack_b) = joined_stacks().await;
    let _forward = Forwarder::start(&stack_b);
    let proxy = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let proxy_at = proxy.local_addr()?;
    let _socks = tokio::spawn(meshplane::socks::serve(proxy, Arc::new(stack_a.dialer())));
    let sink_listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let port = sink_listener.local_addr()?.port();
    let accepted = async move { Ok(sink_listener.accept().await?.0) };
    timed(
        accepted,
        socks_connect(proxy_at, SocketAddrV4::new(IP_B, port)),
        len,
    )
    .await
}

/// Two engines whose peers have no address to try (so no direct path),
/// each connected to a relay on loopback; smoltcp both ends.
async fn relayed(len: u64) -> std::io::Result<Duration> {
    use meshplane::engine::wg::{Engine, EngineConfig, Underlay};
    use meshplane::key::PrivateKey;
    use meshplane_relay::{Limits, PeerId, Relay, RelayClient, TokenSigner};

    let signer = TokenSigner::generate().map_err(std::io::Error::other)?;
    let relay = Relay::new(signer.verifier(), Limits::default());
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let url = format!("rel://{}", listener.local_addr()?);
    tokio::spawn(meshplane_relay::server::serve(
        listener,
        relay,
        axum::Router::new(),
        std::future::pending(),
    ));
    let expires = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(std::io::Error::other)?
        .as_secs() as i64
        + 3600;
    let mut sides = Vec::new();
    for ip in [IP_A, IP_B] {
        let key = PrivateKey::generate();
        let (engine, tunnel, underlay) = Engine::start_with_underlay(EngineConfig {
            private_key: key.clone(),
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            mesh_ip: ip,
        })
        .await?;
        let own = key.public_key().to_string();
        let token = signer.mint(&PeerId::from_public_key(&own), expires);
        let (sender, mut receiver) = RelayClient::connect(&url, &own, &token)
            .await
            .map_err(std::io::Error::other)?;
        let Underlay {
            mut relay_out,
            relay_in,
            ..
        } = underlay;
        // What the daemon's relay task does with a connection: neither
        // side waits for the other, a full queue drops.
        tokio::spawn(async move {
            while let Some((to, payload)) = relay_out.recv().await {
                let id = PeerId::from_public_key(&to.to_string());
                if sender.try_send(&id, &payload).is_err() {
                    return;
                }
            }
        });
        tokio::spawn(async move {
            while let Some((_, payload)) = receiver.recv().await {
                let _ = relay_in.try_send(payload);
            }
        });
        engine.relay(true).await.map_err(std::io::Error::other)?;
        let stack = Netstack::start(ipnet::Ipv4Net::new(ip, 10).expect("prefix"), tunnel);
        sides.push((common::Side { key, ip, engine }, stack));
    }
    let (b, stack_b) = sides.pop().expect("two sides");
    let (a, stack_a) = sides.pop().expect("two sides");
    // No endpoints: the relay is the only way.
    a.map(vec![b.as_peer(false)], allow_all()).await;
    b.map(vec![a.as_peer(false)], allow_all()).await;
    stack_to_stack(&stack_a, &stack_b, len).await
}

async fn plain_loopback(len: u64) -> std::io::Result<Duration> {
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let at = listener.local_addr()?;
    let accepted = async move { Ok(listener.accept().await?.0) };
    timed(accepted, tokio::net::TcpStream::connect(at), len).await
}

#[cfg(target_os = "linux")]
fn tun_mode(len: u64) {
    use common::netns::{
        count_server, ns_peer, send_bytes, unsupported, Namespaces, NsPeer, UNDERLAY_A, UNDERLAY_B,
    };
    use meshplane::engine::wg::{NetworkUpdate, RoutedPrefix};
    use meshplane::key::PrivateKey;
    use meshplane_core::model::{Action, Protocol};
    use meshplane_core::routing::forward::RouteRule;

    if let Some(why) = unsupported() {
        println!("TUN mode skipped: {why}");
        return;
    }
    let ns = Namespaces::create("bench");
    let (key_a, key_b) = (PrivateKey::generate(), PrivateKey::generate());
    // B routes the office network of H to A.
    let office: ipnet::Ipv4Net = "10.50.0.0/24".parse().expect("prefix");
    let host_h = Ipv4Addr::new(10, 50, 0, 2);
    let h = Office::create(&ns.b);
    let a = NsPeer::start(
        &ns.a,
        key_a.clone(),
        IP_A,
        NetworkUpdate {
            peers: vec![ns_peer(&key_b, IP_B, UNDERLAY_B)],
            firewall: allow_all(),
            routes: vec![RoutedPrefix {
                prefix: office,
                via: key_b.public_key(),
            }],
            route_rules: vec![RouteRule::outbound(IP_A, office)],
            mesh_network: None,
        },
    );
    let b = NsPeer::start(
        &ns.b,
        key_b,
        IP_B,
        NetworkUpdate {
            peers: vec![ns_peer(&key_a, IP_A, UNDERLAY_A)],
            firewall: allow_all(),
            routes: Vec::new(),
            route_rules: vec![RouteRule {
                source_ranges: vec!["0.0.0.0/0".parse().expect("prefix")],
                destination: office,
                action: Action::Accept,
                protocol: Protocol::All,
                port: None,
                port_range: None,
            }],
            mesh_network: None,
        },
    );
    common::netns::ip(&["-n", &ns.a, "route", "add", "10.50.0.0/24", "dev", "mp0"]);
    match (ping_rtt(&ns.a, IP_B), ping_rtt(&ns.a, UNDERLAY_B)) {
        (Some(tunnel), Some(plain)) => println!(
            "{:<48} {tunnel:.3} ms, plain veth {plain:.3} ms ({:.1}x)",
            "ping round trip through the TUN tunnel (avg)",
            tunnel / plain
        ),
        _ => println!("ping round trip skipped: `ping` did not answer"),
    }
    let mut took = Vec::new();
    for (what, to) in [
        (
            "TUN tunnel (namespaces over veth)",
            SocketAddrV4::new(IP_B, 5201),
        ),
        (
            "plain TCP over the same veth (no tunnel)",
            SocketAddrV4::new(UNDERLAY_B, 5202),
        ),
        (
            "TUN tunnel forwarded by B to H (routing peer)",
            SocketAddrV4::new(host_h, 5203),
        ),
    ] {
        let at = if *to.ip() == host_h { &h.name } else { &ns.b };
        let server = count_server(at, to);
        let start = Instant::now();
        let got = send_bytes(&ns.a, to, len).expect("transfer");
        let elapsed = start.elapsed();
        server.join().expect("server thread");
        assert_eq!(got, len, "every byte arrived intact");
        took.push(report(what, len, elapsed));
    }
    ratio("TUN tunnel", took[0], took[1]);
    ratio("TUN tunnel forwarded by B to H", took[2], took[1]);
    a.stop();
    b.stop();
}

/// The average round trip in ms of 50 pings from `ns` to `to`, from
/// ping's summary line; `None` when ping is missing or nothing answered.
#[cfg(target_os = "linux")]
fn ping_rtt(ns: &str, to: Ipv4Addr) -> Option<f64> {
    let out = common::netns::exec_in(ns, "ping")
        .args(["-q", "-c", "50", "-i", "0.01", "-W", "1"])
        .arg(to.to_string())
        .output()
        .ok()?;
    // "rtt min/avg/max/mdev = 0.031/0.045/0.094/0.011 ms"
    let summary = String::from_utf8_lossy(&out.stdout);
    let line = summary.lines().find(|l| l.contains("min/avg/max"))?;
    line.split('=')
        .nth(1)?
        .trim()
        .split('/')
        .nth(1)?
        .parse()
        .ok()
}

/// H's namespace on a veth behind `b` (10.50.0.1 on b's side, H at
/// 10.50.0.2), with forwarding on in `b` and H routing the mesh back
/// through it; deleted on drop.
#[cfg(target_os = "linux")]
struct Office {
    name: String,
}

#[cfg(target_os = "linux")]
impl Office {
    fn create(b: &str) -> Office {
        use common::netns::ip;
        let office = Office {
            name: format!("mp-bench-h-{}", std::process::id()),
        };
        ip(&["netns", "add", &office.name]);
        ip(&[
            "link",
            "add",
            "mpofc0",
            "netns",
            b,
            "type",
            "veth",
            "peer",
            "name",
            "mpofc0",
            "netns",
            &office.name,
        ]);
        for (ns, cidr) in [(b, "10.50.0.1/24"), (office.name.as_str(), "10.50.0.2/24")] {
            ip(&["-n", ns, "addr", "add", cidr, "dev", "mpofc0"]);
            ip(&["-n", ns, "link", "set", "mpofc0", "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        ip(&[
            "-n",
            &office.name,
            "route",
            "add",
            "100.64.0.0/10",
            "via",
            "10.50.0.1",
        ]);
        let forwarding = common::netns::exec_in(b, "sysctl")
            .args(["-qw", "net.ipv4.ip_forward=1"])
            .status();
        assert!(forwarding.is_ok_and(|s| s.success()), "forwarding in {b}");
        office
    }
}

#[cfg(target_os = "linux")]
impl Drop for Office {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn main() -> std::io::Result<()> {
    // `cargo test` runs benches with `--bench` absent: keep that quick.
    let benching = std::env::args().any(|a| a == "--bench");
    let len: u64 = std::env::var("MESHPLANE_BENCH_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if benching { 1 << 30 } else { 1 << 20 });
    // One thread carries both peers, both stacks and both ends of each
    // transfer: the figures are what one core does, and hopping between
    // worker threads (the multi-threaded runtime) costs more than it gains
    // on a two-core machine.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let stacks = report(
        "netstack tunnel (loopback, smoltcp both ends)",
        len,
        rt.block_on(netstack(len))?,
    );
    let socks = report(
        "SOCKS5 -> tunnel -> forwarder -> loopback sink",
        len,
        rt.block_on(socks_forward(len))?,
    );
    let plain = report(
        "plain TCP on loopback (no tunnel)",
        len,
        rt.block_on(plain_loopback(len))?,
    );
    let relay = report(
        "relayed tunnel (netstack, relay on loopback)",
        len,
        rt.block_on(relayed(len))?,
    );
    ratio("netstack tunnel", stacks, plain);
    ratio("SOCKS5 application path", socks, plain);
    ratio("relayed tunnel", relay, plain);
    #[cfg(target_os = "linux")]
    tun_mode(len);
    Ok(())
}

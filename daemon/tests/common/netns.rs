//! Two network namespaces joined by a veth pair, with a WireGuard peer in
//! each on a kernel TUN interface; used by the TUN test and the bench.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::thread::JoinHandle;
use std::time::Duration;

use ipnet::Ipv4Net;
use meshplane::engine::kernel_tun::KernelTun;
use meshplane::engine::wg::{Engine, EngineConfig, NetworkUpdate, PeerConfig};
use meshplane::key::PrivateKey;
use nix::sched::{setns, CloneFlags};
use tokio::sync::mpsc;

pub const UNDERLAY_A: Ipv4Addr = Ipv4Addr::new(10, 213, 77, 1);
pub const UNDERLAY_B: Ipv4Addr = Ipv4Addr::new(10, 213, 77, 2);
const WG_PORT: u16 = 51820;

/// Runs `ip args`; must succeed.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One ping from namespace `ns` to `to`, waiting a second for the answer.
pub fn ping_once(ns: &str, to: Ipv4Addr) -> bool {
    exec_in(ns, "ping")
        .args(["-c", "1", "-W", "1"])
        .arg(to.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Why this machine cannot run namespace tests, if it cannot.
pub fn unsupported() -> Option<String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Some("not running as root".into());
    }
    let netns = Command::new("ip")
        .args(["netns", "list"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !netns.is_ok_and(|s| s.success()) {
        return Some("`ip netns` is not available".into());
    }
    if !std::path::Path::new("/dev/net/tun").exists() {
        return Some("/dev/net/tun is missing".into());
    }
    None
}

/// The two namespaces and their veth pair; deleted on drop, even when the
/// test fails.
pub struct Namespaces {
    pub a: String,
    pub b: String,
}

impl Namespaces {
    pub fn create(tag: &str) -> Namespaces {
        let id = std::process::id();
        let ns = Namespaces {
            a: format!("mp-{tag}-a-{id}"),
            b: format!("mp-{tag}-b-{id}"),
        };
        ip(&["netns", "add", &ns.a]);
        ip(&["netns", "add", &ns.b]);
        ip(&[
            "link", "add", "mpveth-a", "netns", &ns.a, "type", "veth", "peer", "name", "mpveth-b",
            "netns", &ns.b,
        ]);
        for (name, dev, addr) in [
            (&ns.a, "mpveth-a", UNDERLAY_A),
            (&ns.b, "mpveth-b", UNDERLAY_B),
        ] {
            let cidr = format!("{addr}/24");
            ip(&["-n", name, "addr", "add", &cidr, "dev", dev]);
            ip(&["-n", name, "link", "set", dev, "up"]);
            ip(&["-n", name, "link", "set", "lo", "up"]);
        }
        ns
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for name in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

/// Runs `f` on a thread that has entered namespace `ns`; sockets and
/// devices it creates live there.
pub fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> JoinHandle<T> {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = File::open(&path).expect("open namespace");
        setns(file, CloneFlags::CLONE_NEWNET).expect("enter namespace");
        f()
    })
}

/// A peer running in a namespace: an engine and a TUN interface on a
/// runtime of its own; maps are sent to it over `updates`.
pub struct NsPeer {
    updates: mpsc::Sender<NetworkUpdate>,
    thread: JoinHandle<()>,
}

impl NsPeer {
    pub fn start(ns: &str, key: PrivateKey, mesh_ip: Ipv4Addr, first: NetworkUpdate) -> NsPeer {
        let (updates, mut rx) = mpsc::channel::<NetworkUpdate>(4);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = in_netns(ns, move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let (engine, tunnel) = Engine::start(EngineConfig {
                    private_key: key,
                    listen: SocketAddr::from((Ipv4Addr::UNSPECIFIED, WG_PORT)),
                    mesh_ip,
                })
                .await
                .expect("engine starts");
                let address = Ipv4Net::new(mesh_ip, 10).expect("valid prefix");
                let _tun = KernelTun::start("mp0", address, tunnel).expect("tun starts");
                engine.update(first).await.expect("engine runs");
                ready_tx.send(()).expect("caller waits");
                while let Some(u) = rx.recv().await {
                    engine.update(u).await.expect("engine runs");
                }
            });
        });
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("peer ready");
        NsPeer { updates, thread }
    }

    pub fn update(&self, u: NetworkUpdate) {
        self.updates.blocking_send(u).expect("peer runs");
    }

    pub fn stop(self) {
        drop(self.updates);
        self.thread.join().expect("peer thread");
    }
}

/// A peer as the other namespace's map lists it, reachable over the veth.
pub fn ns_peer(key: &PrivateKey, mesh_ip: Ipv4Addr, underlay: Ipv4Addr) -> PeerConfig {
    PeerConfig {
        public_key: key.public_key(),
        mesh_ip,
        endpoint: Some(SocketAddr::from((underlay, WG_PORT))),
        keepalive: Some(25),
    }
}

/// Byte `i` of every transfer is `i % 251`: a prime period that no chunk
/// or segment size divides, so lost, repeated or misplaced data shows.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// Listens in `ns` on `at`, accepts one connection, reads to EOF and
/// answers with the number of bytes read that followed the pattern
/// [`send_bytes`] writes (it stops reading at the first that does not).
pub fn count_server(ns: &str, at: SocketAddrV4) -> JoinHandle<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    let h = in_netns(ns, move || {
        let listener = TcpListener::bind(at).expect("bind");
        tx.send(()).expect("caller waits");
        if let Ok((mut s, _)) = listener.accept() {
            let mut buf = vec![0u8; 256 * 1024];
            let expected = pattern(buf.len() + 251);
            let mut total: u64 = 0;
            while let Ok(n) = s.read(&mut buf) {
                let at = (total % 251) as usize;
                if n == 0 || buf[..n] != expected[at..at + n] {
                    break;
                }
                total += n as u64;
            }
            let _ = s.write_all(&total.to_be_bytes());
        }
    });
    rx.recv_timeout(Duration::from_secs(5)).expect("server up");
    h
}

/// Sends `len` bytes of the pattern from `ns` to `to`; the count of intact
/// bytes the server read, or the error.
pub fn send_bytes(ns: &str, to: SocketAddrV4, len: u64) -> std::io::Result<u64> {
    in_netns(ns, move || {
        let mut s = TcpStream::connect_timeout(&to.into(), Duration::from_secs(3))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        // A whole number of periods, so every write continues the pattern.
        let chunk = pattern(251 * 1024);
        let mut left = len;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            s.write_all(&chunk[..n])?;
            left -= n as u64;
        }
        s.shutdown(Shutdown::Write)?;
        let mut count = [0u8; 8];
        s.read_exact(&mut count)?;
        Ok(u64::from_be_bytes(count))
    })
    .join()
    .expect("client thread")
}

/// Three namespaces on one private subnet: `srv` holds a bridge (with the
/// subnet's first address) that `a` and `b` join through veth pairs. All
/// three are deleted on drop, even when the test fails.
pub struct Lan {
    pub srv: String,
    pub a: String,
    pub b: String,
}

/// The addresses of [`Lan`]'s namespaces on 10.213.80.0/24.
pub const LAN_SRV: Ipv4Addr = Ipv4Addr::new(10, 213, 80, 1);
pub const LAN_A: Ipv4Addr = Ipv4Addr::new(10, 213, 80, 2);
pub const LAN_B: Ipv4Addr = Ipv4Addr::new(10, 213, 80, 3);

impl Lan {
    pub fn create(tag: &str) -> Lan {
        let id = std::process::id();
        let lan = Lan {
            srv: format!("mp-{tag}-srv-{id}"),
            a: format!("mp-{tag}-a-{id}"),
            b: format!("mp-{tag}-b-{id}"),
        };
        // The guard exists before the first namespace does, so a failure
        // half way still deletes what was made.
        for name in [&lan.srv, &lan.a, &lan.b] {
            ip(&["netns", "add", name]);
            ip(&["-n", name, "link", "set", "lo", "up"]);
        }
        ip(&["-n", &lan.srv, "link", "add", "mpbr0", "type", "bridge"]);
        ip(&["-n", &lan.srv, "link", "set", "mpbr0", "up"]);
        let srv_cidr = format!("{LAN_SRV}/24");
        ip(&["-n", &lan.srv, "addr", "add", &srv_cidr, "dev", "mpbr0"]);
        for (name, port, addr) in [(&lan.a, "mpport-a", LAN_A), (&lan.b, "mpport-b", LAN_B)] {
            ip(&[
                "link", "add", port, "netns", &lan.srv, "type", "veth", "peer", "name", "mpeth0",
                "netns", name,
            ]);
            ip(&["-n", &lan.srv, "link", "set", port, "master", "mpbr0"]);
            ip(&["-n", &lan.srv, "link", "set", port, "up"]);
            let cidr = format!("{addr}/24");
            ip(&["-n", name, "addr", "add", &cidr, "dev", "mpeth0"]);
            ip(&["-n", name, "link", "set", "mpeth0", "up"]);
        }
        lan
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for name in [&self.srv, &self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

/// `ip netns exec <ns> <program>`: a command to run inside namespace `ns`
/// (`ip` execs the program, so the child's pid is the program's own).
pub fn exec_in(ns: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns]).arg(program);
    cmd
}

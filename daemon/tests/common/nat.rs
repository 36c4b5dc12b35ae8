//! A small internet in network namespaces: one "internet" namespace whose
//! bridge carries the public addresses (the management server lives there),
//! home routers that reach it through a WAN veth and NAT everything their
//! LAN bridge sends out, and peers plugged into a home's LAN. Routers can
//! block all UDP leaving their home, change their public address, and a
//! peer can be unplugged from one home and plugged into another, as a
//! laptop moves.
//!
//! Every namespace is deleted on drop, also when the test fails half way.
//! Names carry the test's tag and the process id, so tests run in
//! parallel.

use std::net::Ipv4Addr;
use std::process::Command;

/// The internet namespace's own address on its bridge (where the server
/// listens); routers get `10.213.100.(11 + n)` there.
pub const INTERNET_HOST: Ipv4Addr = Ipv4Addr::new(10, 213, 100, 1);
/// The LAN bridge inside every router.
const LAN_BRIDGE: &str = "lan0";
/// The router's uplink.
const WAN: &str = "wan";
/// A peer's interface on its home's LAN.
const PEER_DEV: &str = "eth0";

/// How a home router translates what leaves its LAN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nat {
    /// `MASQUERADE`: the source port is kept where it can be, so one
    /// socket keeps one public address and port whoever it talks to
    /// (endpoint-independent mapping); hole punching works through it.
    Masquerade,
    /// `MASQUERADE --random-fully`: every new destination gets a random
    /// public port (a symmetric NAT); hole punching cannot work.
    Symmetric,
}

/// A home network: its router namespace and LAN subnet.
#[derive(Clone, Debug)]
pub struct Home {
    pub router: String,
    /// `10.213.(101 + n).0/24`; the router is `.1`.
    pub lan: u8,
    /// Its address on the internet, as NAT makes the home's packets appear.
    pub public: Ipv4Addr,
    /// Hosts on the LAN so far (addresses are handed out from `.2`).
    hosts: u8,
}

/// A peer's namespace and where it is plugged in now.
#[derive(Clone, Debug)]
pub struct Peer {
    pub ns: String,
    /// Its interface's name on the router's side.
    port: String,
    pub address: Ipv4Addr,
}

/// The internet namespace, the homes and peers made on it; all deleted on
/// drop.
pub struct Internet {
    pub ns: String,
    tag: String,
    homes: usize,
    /// Every namespace made, in order, for the drop.
    made: Vec<String>,
}

fn run(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ip(args: &[&str]) {
    run("ip", args);
}

/// Runs `program args` inside namespace `ns`; must succeed.
fn in_ns(ns: &str, program: &str, args: &[&str]) {
    let mut all = vec!["netns", "exec", ns, program];
    all.extend_from_slice(args);
    run("ip", &all);
}

impl Internet {
    /// The internet namespace with its bridge up at [`INTERNET_HOST`].
    pub fn create(tag: &str) -> Internet {
        let mut net = Internet {
            ns: format!("mp-{tag}-net-{}", std::process::id()),
            tag: tag.to_string(),
            homes: 0,
            made: Vec::new(),
        };
        let ns = net.ns.clone();
        net.namespace(&ns);
        ip(&["-n", &ns, "link", "add", "inet0", "type", "bridge"]);
        ip(&["-n", &ns, "link", "set", "inet0", "up"]);
        let cidr = format!("{INTERNET_HOST}/24");
        ip(&["-n", &ns, "addr", "add", &cidr, "dev", "inet0"]);
        net
    }

    /// A new namespace with loopback up, recorded for the drop first.
    fn namespace(&mut self, name: &str) {
        self.made.push(name.to_string());
        ip(&["netns", "add", name]);
        ip(&["-n", name, "link", "set", "lo", "up"]);
    }

    /// A home router on the internet doing `nat` for a LAN bridge.
    pub fn home(&mut self, nat: Nat) -> Home {
        let n = self.homes as u8;
        self.homes += 1;
        let router = format!("mp-{}-r{n}-{}", self.tag, std::process::id());
        self.namespace(&router);
        let uplink = format!("up{n}");
        ip(&[
            "link", "add", WAN, "netns", &router, "type", "veth", "peer", "name", &uplink, "netns",
            &self.ns,
        ]);
        ip(&["-n", &self.ns, "link", "set", &uplink, "master", "inet0"]);
        ip(&["-n", &self.ns, "link", "set", &uplink, "up"]);
        let public = Ipv4Addr::new(10, 213, 100, 11 + n);
        ip(&[
            "-n",
            &router,
            "addr",
            "add",
            &format!("{public}/24"),
            "dev",
            WAN,
        ]);
        ip(&["-n", &router, "link", "set", WAN, "up"]);
        ip(&["-n", &router, "link", "add", LAN_BRIDGE, "type", "bridge"]);
        ip(&["-n", &router, "link", "set", LAN_BRIDGE, "up"]);
        let lan = 101 + n;
        let gateway = format!("10.213.{lan}.1/24");
        ip(&["-n", &router, "addr", "add", &gateway, "dev", LAN_BRIDGE]);
        in_ns(&router, "sysctl", &["-q", "-w", "net.ipv4.ip_forward=1"]);
        let mut rule = vec![
            "-t",
            "nat",
            "-A",
            "POSTROUTING",
            "-o",
            WAN,
            "-j",
            "MASQUERADE",
        ];
        if nat == Nat::Symmetric {
            rule.push("--random-fully");
        }
        in_ns(&router, "iptables", &rule);
        // Like every home router's firewall: nothing unasked from the WAN
        // reaches the router itself. This matters to hole punching, not
        // only to realism: a probe that arrives before the router has sent
        // anything to its source would otherwise be accepted by the
        // router's own stack, and its conntrack entry would take the
        // public port the peer's own outgoing packets need (MASQUERADE
        // would pick another one). Dropped packets leave no entry.
        in_ns(
            &router,
            "iptables",
            &[
                "-A",
                "INPUT",
                "-i",
                WAN,
                "-m",
                "conntrack",
                "--ctstate",
                "NEW,INVALID",
                "-j",
                "DROP",
            ],
        );
        Home {
            router,
            lan,
            public,
            hosts: 1,
        }
    }

    /// A peer namespace `name` plugged into `home`'s LAN.
    pub fn peer(&mut self, name: &str, home: &mut Home) -> Peer {
        let ns = format!("mp-{}-{name}-{}", self.tag, std::process::id());
        self.namespace(&ns);
        let mut peer = Peer {
            ns,
            port: format!("lan-{name}"),
            address: Ipv4Addr::UNSPECIFIED,
        };
        plug(&mut peer, home);
        peer
    }

    /// Unplugs `peer` from its home and plugs it into `to`, with a new
    /// address there (its namespace, and what runs in it, stay).
    pub fn move_peer(&self, peer: &mut Peer, to: &mut Home) {
        ip(&["-n", &peer.ns, "link", "del", PEER_DEV]);
        plug(peer, to);
    }
}

/// A veth from `home`'s LAN bridge to `peer`, a fresh address on the LAN
/// and the default route through the router.
fn plug(peer: &mut Peer, home: &mut Home) {
    home.hosts += 1;
    let address = Ipv4Addr::new(10, 213, home.lan, home.hosts);
    ip(&[
        "link",
        "add",
        PEER_DEV,
        "netns",
        &peer.ns,
        "type",
        "veth",
        "peer",
        "name",
        &peer.port,
        "netns",
        &home.router,
    ]);
    ip(&[
        "-n",
        &home.router,
        "link",
        "set",
        &peer.port,
        "master",
        LAN_BRIDGE,
    ]);
    ip(&["-n", &home.router, "link", "set", &peer.port, "up"]);
    let cidr = format!("{address}/24");
    ip(&["-n", &peer.ns, "addr", "add", &cidr, "dev", PEER_DEV]);
    ip(&["-n", &peer.ns, "link", "set", PEER_DEV, "up"]);
    let gateway = format!("10.213.{}.1", home.lan);
    ip(&["-n", &peer.ns, "route", "add", "default", "via", &gateway]);
    peer.address = address;
}

impl Home {
    /// Drops every UDP packet leaving this home (a network that lets only
    /// TCP out), or lets them through again.
    pub fn block_udp(&self, blocked: bool) {
        let op = if blocked { "-I" } else { "-D" };
        in_ns(
            &self.router,
            "iptables",
            &[op, "FORWARD", "-i", LAN_BRIDGE, "-p", "udp", "-j", "DROP"],
        );
    }

    /// Gives the router a new public address (as a provider does on a
    /// reconnect); the old one goes, and with it every NAT mapping made
    /// for it.
    pub fn renumber(&mut self, to: Ipv4Addr) {
        let (old, new) = (format!("{}/24", self.public), format!("{to}/24"));
        // The old one goes first: added first, the new address would be a
        // secondary on the same subnet, and deleting the primary deletes
        // the secondaries with it.
        ip(&["-n", &self.router, "addr", "del", &old, "dev", WAN]);
        ip(&["-n", &self.router, "addr", "add", &new, "dev", WAN]);
        self.public = to;
    }
}

impl Drop for Internet {
    fn drop(&mut self) {
        for name in self.made.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

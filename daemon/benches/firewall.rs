//! Per-packet cost of the firewall decision, as the data plane pays it, for
//! maps with few and with many rules.
//!
//! `cargo bench -p meshplane --bench firewall`

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::Instant;

use meshplane_core::firewall::{Firewall, Packet, Rule, RuleSet, Transport};
use meshplane_core::model::{Action, PortRange, Protocol};
use meshplane_core::netmap::firewall::Direction;
use meshplane_core::Timestamp;

fn peer(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(0x6440_0000 + 2 + i)
}

/// `n` rules: per peer an inbound TCP port, a UDP range and a drop rule,
/// plus an ICMP rule for everyone.
fn rules(n: u32) -> Vec<Rule> {
    let mut out = vec![Rule {
        peer_ip: Ipv4Addr::UNSPECIFIED,
        direction: Direction::In,
        action: Action::Accept,
        protocol: Protocol::Icmp,
        port: None,
        port_range: None,
    }];
    for i in 0..n / 3 {
        let base = Rule {
            peer_ip: peer(i),
            direction: Direction::In,
            action: Action::Accept,
            protocol: Protocol::Tcp,
            port: Some(8000 + (i % 1000) as u16),
            port_range: None,
        };
        out.push(base);
        out.push(Rule {
            protocol: Protocol::Udp,
            port: None,
            port_range: Some(PortRange {
                start: 10_000,
                end: 10_000 + i % 500,
            }),
            ..base
        });
        out.push(Rule {
            action: Action::Drop,
            port: Some(22),
            ..base
        });
    }
    out
}

fn packets(peers: u32) -> Vec<Packet> {
    (0..4096u32)
        .map(|i| Packet {
            direction: Direction::In,
            remote: peer(i % peers.max(1)),
            transport: [Transport::Tcp, Transport::Udp, Transport::Icmp][(i % 3) as usize],
            src_port: 40_000 + (i % 2000) as u16,
            dst_port: [8000 + (i % 1000) as u16, 10_100, 22][(i % 3) as usize],
        })
        .collect()
}

fn main() {
    const ROUNDS: usize = 2_000;
    for n in [10u32, 1_000, 10_000, 100_000] {
        let rules = rules(n);
        let start = Instant::now();
        let set = RuleSet::new(&rules);
        let compile = start.elapsed();
        let pkts = packets(n / 3);

        let start = Instant::now();
        for _ in 0..ROUNDS {
            for p in &pkts {
                black_box(set.decide(black_box(p)));
            }
        }
        let stateless = start.elapsed().as_nanos() as f64 / (ROUNDS * pkts.len()) as f64;

        // Stateful: the first round opens flows, the rest hit them.
        let mut fw = Firewall::new(&rules);
        let now = Timestamp::from_millis(0);
        let start = Instant::now();
        for _ in 0..ROUNDS {
            for p in &pkts {
                black_box(fw.check(black_box(p), now));
            }
        }
        let stateful = start.elapsed().as_nanos() as f64 / (ROUNDS * pkts.len()) as f64;
        println!(
            "{:>7} rules: compile {:>9.3} ms, rules only {stateless:>6.1} ns/packet, with flows {stateful:>6.1} ns/packet",
            rules.len(),
            compile.as_secs_f64() * 1e3
        );
    }
}

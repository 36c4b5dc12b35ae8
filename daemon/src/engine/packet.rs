//! Just enough IPv4 parsing to route a packet and to summarise it for the
//! firewall. Anything that is not a well-formed IPv4 packet is refused here
//! and never reaches a peer or the host.

use std::net::Ipv4Addr;

use meshplane_core::firewall::{Packet, Transport};
use meshplane_core::netmap::firewall::Direction;
use meshplane_core::routing::forward::Packet as RoutedPacket;

const TCP: u8 = 6;
const UDP: u8 = 17;
const ICMP: u8 = 1;
const ICMP_ECHO_REPLY: u8 = 0;
const ICMP_ECHO_REQUEST: u8 = 8;

/// The addresses of an IPv4 packet, or `None` if it is not one.
pub fn addresses(ip: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr)> {
    if ip.len() < 20 || ip[0] >> 4 != 4 {
        return None;
    }
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    Some((src, dst))
}

/// The firewall's view of an IPv4 packet crossing the tunnel in
/// `direction`. Non-first fragments carry no transport header, so they are
/// summarised with ports 0 (only port-less rules let them through).
pub fn summary(ip: &[u8], direction: Direction) -> Option<Packet> {
    let p = routed(ip)?;
    let remote = match direction {
        Direction::In => p.src,
        Direction::Out => p.dst,
    };
    Some(Packet {
        direction,
        remote,
        transport: p.transport,
        src_port: p.src_port,
        dst_port: p.dst_port,
    })
}

/// The route filter's view of an IPv4 packet (the same fields as
/// [`summary`], named by address).
pub fn routed(ip: &[u8]) -> Option<RoutedPacket> {
    let (src, dst) = addresses(ip)?;
    let header = usize::from(ip[0] & 0x0f) * 4;
    if header < 20 || ip.len() < header {
        return None;
    }
    let first_fragment = u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff == 0;
    let l4 = if first_fragment { &ip[header..] } else { &[] };
    let port_pair = |l4: &[u8]| match l4 {
        [a, b, c, d, ..] => (u16::from_be_bytes([*a, *b]), u16::from_be_bytes([*c, *d])),
        _ => (0, 0),
    };
    let (transport, (src_port, dst_port)) = match ip[9] {
        TCP => (Transport::Tcp, port_pair(l4)),
        UDP => (Transport::Udp, port_pair(l4)),
        ICMP => {
            let ident = match l4 {
                [t, _, _, _, i0, i1, ..] if matches!(*t, ICMP_ECHO_REQUEST | ICMP_ECHO_REPLY) => {
                    u16::from_be_bytes([*i0, *i1])
                }
                _ => 0,
            };
            (Transport::Icmp, (ident, ident))
        }
        _ => (Transport::Other, (0, 0)),
    };
    Some(RoutedPacket {
        src,
        dst,
        transport,
        src_port,
        dst_port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipv4(proto: u8, l4: &[u8]) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, proto, 0, 0];
        p.extend_from_slice(&[100, 64, 0, 1, 100, 64, 0, 2]);
        p.extend_from_slice(l4);
        p
    }

    #[test]
    fn summarises_tcp_icmp_and_others() {
        let tcp = ipv4(TCP, &[0x9c, 0x40, 0x1f, 0x90, 0, 0, 0, 0]);
        let s = summary(&tcp, Direction::Out).unwrap();
        assert_eq!(s.remote, Ipv4Addr::new(100, 64, 0, 2));
        assert_eq!(
            (s.transport, s.src_port, s.dst_port),
            (Transport::Tcp, 40000, 8080)
        );
        let s = summary(&tcp, Direction::In).unwrap();
        assert_eq!(s.remote, Ipv4Addr::new(100, 64, 0, 1));

        let echo = ipv4(ICMP, &[ICMP_ECHO_REQUEST, 0, 0, 0, 0x12, 0x34, 0, 1]);
        let s = summary(&echo, Direction::Out).unwrap();
        assert_eq!(
            (s.transport, s.src_port, s.dst_port),
            (Transport::Icmp, 0x1234, 0x1234)
        );

        let gre = ipv4(47, &[]);
        assert_eq!(
            summary(&gre, Direction::In).unwrap().transport,
            Transport::Other
        );
    }

    #[test]
    fn refuses_what_is_not_ipv4() {
        assert!(summary(&[0x60; 40], Direction::In).is_none());
        assert!(summary(&[0x45; 10], Direction::In).is_none());
        let mut bad_ihl = ipv4(TCP, &[]);
        bad_ihl[0] = 0x4f;
        assert!(summary(&bad_ihl, Direction::In).is_none());
    }

    #[test]
    fn later_fragments_have_no_ports() {
        let mut frag = ipv4(TCP, &[0x9c, 0x40, 0x1f, 0x90]);
        frag[7] = 10;
        assert_eq!(summary(&frag, Direction::In).unwrap().dst_port, 0);
    }
}

//! Just enough IPv4 parsing to route a packet, summarise it for the
//! firewall and describe it to the flow table, on `smoltcp::wire`'s checked
//! views. Anything that is not a well-formed IPv4 packet (short, a header
//! length or total length that does not fit) is refused here and never
//! reaches a peer or the host.

use std::net::Ipv4Addr;

use meshplane_core::firewall::{Packet, Transport};
use meshplane_core::netmap::firewall::Direction;
use meshplane_core::routing::forward::Packet as RoutedPacket;
use smoltcp::wire::{Icmpv4Message, Icmpv4Packet, IpProtocol, Ipv4Packet, TcpPacket, UdpPacket};

/// `ip` as a checked IPv4 packet, or `None` if it is not one.
fn ipv4(ip: &[u8]) -> Option<Ipv4Packet<&[u8]>> {
    Ipv4Packet::new_checked(ip)
        .ok()
        .filter(|p| p.version() == 4)
}

/// The transport header and payload of a first fragment; later fragments
/// carry none.
fn transport<'a>(packet: &Ipv4Packet<&'a [u8]>) -> &'a [u8] {
    if packet.frag_offset() == 0 {
        packet.payload()
    } else {
        &[]
    }
}

/// The addresses of an IPv4 packet, or `None` if it is not one.
pub fn addresses(ip: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr)> {
    let p = ipv4(ip)?;
    Some((p.src_addr(), p.dst_addr()))
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
/// [`summary`], named by address). A TCP or UDP header that is cut short
/// (a tiny first fragment) gives ports 0, like a later fragment.
pub fn routed(ip: &[u8]) -> Option<RoutedPacket> {
    let p = ipv4(ip)?;
    let l4 = transport(&p);
    let (transport, (src_port, dst_port)) = match p.next_header() {
        IpProtocol::Tcp => (
            Transport::Tcp,
            TcpPacket::new_checked(l4).map_or((0, 0), |t| (t.src_port(), t.dst_port())),
        ),
        // The length field is not checked: in a first fragment it covers
        // the whole datagram, more than the fragment holds.
        IpProtocol::Udp if l4.len() >= UDP_HEADER_LEN => {
            let u = UdpPacket::new_unchecked(l4);
            (Transport::Udp, (u.src_port(), u.dst_port()))
        }
        IpProtocol::Udp => (Transport::Udp, (0, 0)),
        IpProtocol::Icmp => {
            let ident = Icmpv4Packet::new_checked(l4)
                .ok()
                .filter(|i| {
                    matches!(
                        i.msg_type(),
                        Icmpv4Message::EchoRequest | Icmpv4Message::EchoReply
                    )
                })
                .map_or(0, |i| i.echo_ident());
            (Transport::Icmp, (ident, ident))
        }
        _ => (Transport::Other, (0, 0)),
    };
    Some(RoutedPacket {
        src: p.src_addr(),
        dst: p.dst_addr(),
        transport,
        src_port,
        dst_port,
    })
}

/// Bytes of a UDP header.
const UDP_HEADER_LEN: usize = 8;

/// What the flow table records of a packet beyond its [`summary`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Details {
    /// The IP protocol number.
    pub protocol: u8,
    /// ICMP type and code (zero for other protocols).
    pub icmp: (u8, u8),
    /// TCP FIN and RST flags.
    pub fin: bool,
    pub rst: bool,
}

/// The flow table's [`Details`] of an IPv4 packet, or `None` if it is not one.
pub fn details(ip: &[u8]) -> Option<Details> {
    let p = ipv4(ip)?;
    let l4 = transport(&p);
    let mut details = Details {
        protocol: p.next_header().into(),
        ..Details::default()
    };
    match p.next_header() {
        IpProtocol::Icmp => {
            if let Ok(i) = Icmpv4Packet::new_checked(l4) {
                details.icmp = (i.msg_type().into(), i.msg_code());
            }
        }
        IpProtocol::Tcp => {
            if let Ok(t) = TcpPacket::new_checked(l4) {
                details.fin = t.fin();
                details.rst = t.rst();
            }
        }
        _ => {}
    }
    Some(details)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: u8 = 6;
    const ICMP: u8 = 1;

    /// An IPv4 packet from 100.64.0.1 to 100.64.0.2 carrying `l4`.
    fn ipv4(proto: u8, l4: &[u8]) -> Vec<u8> {
        let total = u16::try_from(20 + l4.len()).unwrap().to_be_bytes();
        let mut p = vec![0x45, 0, total[0], total[1], 0, 0, 0, 0, 64, proto, 0, 0];
        p.extend_from_slice(&[100, 64, 0, 1, 100, 64, 0, 2]);
        p.extend_from_slice(l4);
        p
    }

    /// A TCP header from port 40000 to 8080 with `flags`.
    fn tcp_header(flags: u8) -> Vec<u8> {
        let mut h = vec![0x9c, 0x40, 0x1f, 0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0x50, flags];
        h.extend_from_slice(&[0; 6]);
        h
    }

    #[test]
    fn summarises_tcp_udp_icmp_and_others() {
        let tcp = ipv4(TCP, &tcp_header(0x02));
        let s = summary(&tcp, Direction::Out).unwrap();
        assert_eq!(s.remote, Ipv4Addr::new(100, 64, 0, 2));
        assert_eq!(
            (s.transport, s.src_port, s.dst_port),
            (Transport::Tcp, 40000, 8080)
        );
        let s = summary(&tcp, Direction::In).unwrap();
        assert_eq!(s.remote, Ipv4Addr::new(100, 64, 0, 1));

        let udp = ipv4(17, &[0x9c, 0x40, 0, 53, 0, 8, 0, 0]);
        let s = summary(&udp, Direction::Out).unwrap();
        assert_eq!(
            (s.transport, s.src_port, s.dst_port),
            (Transport::Udp, 40000, 53)
        );

        let echo = ipv4(ICMP, &[8, 0, 0, 0, 0x12, 0x34, 0, 1]);
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
        let mut too_long = ipv4(TCP, &tcp_header(0));
        too_long[3] += 1;
        assert!(summary(&too_long, Direction::In).is_none());
    }

    #[test]
    fn later_fragments_and_cut_headers_have_no_ports() {
        let mut frag = ipv4(TCP, &[0x9c, 0x40, 0x1f, 0x90]);
        assert_eq!(summary(&frag, Direction::In).unwrap().dst_port, 0);
        frag = ipv4(TCP, &tcp_header(0));
        frag[7] = 10;
        assert_eq!(summary(&frag, Direction::In).unwrap().dst_port, 0);
    }

    #[test]
    fn details_for_the_flow_table() {
        let fin_ack = ipv4(TCP, &tcp_header(0x11));
        let d = details(&fin_ack).unwrap();
        assert_eq!((d.protocol, d.fin, d.rst), (TCP, true, false));
        let rst = details(&ipv4(TCP, &tcp_header(0x04))).unwrap();
        assert!(rst.rst && !rst.fin);
        let unreachable = details(&ipv4(ICMP, &[3, 1, 0, 0, 0, 0, 0, 0])).unwrap();
        assert_eq!((unreachable.protocol, unreachable.icmp), (ICMP, (3, 1)));
        assert!(details(&[0x45; 10]).is_none());
    }
}

//! The host's interface addresses in CIDR form, for network-range posture
//! checks: every address of an interface that is up, except loopback,
//! link-local and multicast addresses (they say nothing about where the
//! host is, and a link-local address of a flapping interface would change
//! the report at every flap) and the mesh's own interface and address
//! (the check is about the network the host sits in, not the mesh).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use nix::ifaddrs::getifaddrs;
use nix::net::if_::InterfaceFlags;
use nix::sys::socket::SockaddrStorage;

/// Most addresses reported; the server refuses more.
pub const MAX_ADDRESSES: usize = 256;

/// What belongs to the mesh and is left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mesh {
    /// The mesh address (in every mode).
    pub ip: Option<Ipv4Addr>,
    /// The kernel TUN interface's name, in kernel mode.
    pub interface: Option<String>,
}

/// The addresses, sorted and without duplicates; empty when the interfaces
/// cannot be listed.
pub fn read(mesh: &Mesh) -> Vec<String> {
    let Ok(interfaces) = getifaddrs() else {
        return Vec::new();
    };
    let mut out: Vec<String> = interfaces
        .filter(|i| i.flags.contains(InterfaceFlags::IFF_UP))
        .filter(|i| !i.flags.contains(InterfaceFlags::IFF_LOOPBACK))
        .filter(|i| mesh.interface.as_deref() != Some(i.interface_name.as_str()))
        .filter_map(|i| cidr(i.address.as_ref()?, i.netmask.as_ref()))
        .filter(|(ip, _)| reportable(*ip, mesh))
        .map(|(ip, len)| format!("{ip}/{len}"))
        .collect();
    out.sort_unstable();
    out.dedup();
    out.truncate(MAX_ADDRESSES);
    out
}

/// An interface address and its prefix length (from the netmask; a missing
/// netmask means a host route).
fn cidr(address: &SockaddrStorage, netmask: Option<&SockaddrStorage>) -> Option<(IpAddr, u32)> {
    if let Some(v4) = address.as_sockaddr_in() {
        let len = netmask
            .and_then(|m| m.as_sockaddr_in())
            .map_or(32, |m| m.ip().to_bits().count_ones());
        return Some((IpAddr::V4(v4.ip()), len));
    }
    let v6 = address.as_sockaddr_in6()?;
    let len = netmask
        .and_then(|m| m.as_sockaddr_in6())
        .map_or(128, |m| m.ip().to_bits().count_ones());
    Some((IpAddr::V6(v6.ip()), len))
}

fn reportable(ip: IpAddr, mesh: &Mesh) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            Some(v4) != mesh.ip && !v4.is_loopback() && !v4.is_link_local() && !v4.is_multicast()
        }
        IpAddr::V6(v6) => !v6.is_loopback() && !v6.is_multicast() && !link_local(v6),
    }
}

/// fe80::/10.
fn link_local(ip: Ipv6Addr) -> bool {
    ip.segments()[0] & 0xffc0 == 0xfe80
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_reported() {
        let mesh = Mesh {
            ip: Some(Ipv4Addr::new(100, 64, 0, 7)),
            interface: None,
        };
        let yes = ["192.168.1.10", "10.0.0.1", "fd00::1", "2001:db8::1"];
        let no = [
            "100.64.0.7",
            "127.0.0.1",
            "169.254.1.1",
            "224.0.0.1",
            "fe80::1",
            "::1",
        ];
        for ip in yes {
            assert!(reportable(ip.parse().expect("ip"), &mesh), "{ip}");
        }
        for ip in no {
            assert!(!reportable(ip.parse().expect("ip"), &mesh), "{ip}");
        }
    }

    #[test]
    fn loopback_is_never_listed() {
        assert!(read(&Mesh::default())
            .iter()
            .all(|a| !a.starts_with("127.") && !a.starts_with("::1/")));
    }
}

//! A [`Lan`] with a third peer namespace and an office network behind two
//! of its peers: namespace `h` holds a bridge on 10.50.0.0/24 with host H
//! (10.50.0.2) on it, and `b` (10.50.0.1) and `c` (10.50.0.3) have a leg
//! each on that bridge, so either can route the office network for `a`,
//! which has no path to it of its own. Every namespace is deleted on drop,
//! also when the test fails.

use std::net::Ipv4Addr;
use std::process::Command;

use super::netns::{ip, Lan};

/// The office network behind the routing peers.
pub const OFFICE: &str = "10.50.0.0/24";
/// Host H on the office network.
pub const HOST_H: Ipv4Addr = Ipv4Addr::new(10, 50, 0, 2);
/// `b`'s and `c`'s addresses on the office network.
pub const OFFICE_B: Ipv4Addr = Ipv4Addr::new(10, 50, 0, 1);
pub const OFFICE_C: Ipv4Addr = Ipv4Addr::new(10, 50, 0, 3);
/// `c`'s address on the underlay bridge (after `a` and `b`'s).
pub const LAN_C: Ipv4Addr = Ipv4Addr::new(10, 213, 80, 4);

/// The namespaces; see the module docs.
pub struct OfficeLan {
    pub lan: Lan,
    pub c: String,
    pub h: String,
}

impl OfficeLan {
    pub fn create(tag: &str) -> OfficeLan {
        let lan = Lan::create(tag);
        let id = std::process::id();
        let office = OfficeLan {
            c: format!("mp-{tag}-c-{id}"),
            h: format!("mp-{tag}-h-{id}"),
            lan,
        };
        for name in [&office.c, &office.h] {
            ip(&["netns", "add", name]);
            ip(&["-n", name, "link", "set", "lo", "up"]);
        }
        let (srv, b) = (&office.lan.srv, &office.lan.b);
        ip(&[
            "link", "add", "mpport-c", "netns", srv, "type", "veth", "peer", "name", "mpeth0",
            "netns", &office.c,
        ]);
        ip(&["-n", srv, "link", "set", "mpport-c", "master", "mpbr0"]);
        ip(&["-n", srv, "link", "set", "mpport-c", "up"]);
        let c_cidr = format!("{LAN_C}/24");
        ip(&["-n", &office.c, "addr", "add", &c_cidr, "dev", "mpeth0"]);
        ip(&["-n", &office.c, "link", "set", "mpeth0", "up"]);

        let h = &office.h;
        ip(&["-n", h, "link", "add", "mpbr1", "type", "bridge"]);
        ip(&["-n", h, "link", "set", "mpbr1", "up"]);
        let h_cidr = format!("{HOST_H}/24");
        ip(&["-n", h, "addr", "add", &h_cidr, "dev", "mpbr1"]);
        for (name, port, addr) in [(b, "mpofc-b", OFFICE_B), (&office.c, "mpofc-c", OFFICE_C)] {
            ip(&[
                "link", "add", port, "netns", h, "type", "veth", "peer", "name", "mpofc0", "netns",
                name,
            ]);
            ip(&["-n", h, "link", "set", port, "master", "mpbr1"]);
            ip(&["-n", h, "link", "set", port, "up"]);
            let cidr = format!("{addr}/24");
            ip(&["-n", name, "addr", "add", &cidr, "dev", "mpofc0"]);
            ip(&["-n", name, "link", "set", "mpofc0", "up"]);
        }
        office
    }

    /// Routes the mesh back from H through `gateway` (what an office
    /// router does when the routing peer does not masquerade).
    pub fn route_back_via(&self, gateway: Ipv4Addr) {
        ip(&[
            "-n",
            &self.h,
            "route",
            "replace",
            "100.64.0.0/10",
            "via",
            &gateway.to_string(),
        ]);
    }
}

impl Drop for OfficeLan {
    fn drop(&mut self) {
        for name in [&self.c, &self.h] {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

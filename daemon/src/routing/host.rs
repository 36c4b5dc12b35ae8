//! Kernel routes for the prefixes this peer reaches through the mesh, on
//! the TUN interface, through netlink ([`rtnetlink`]).
//!
//! [`HostRoutes::apply`] is the one entry point: it makes the main table
//! hold exactly one route per given prefix on the interface, adding what is
//! new and removing what went. Routes the host already has for a prefix
//! (its own LAN, another VPN) are never replaced: the add is exclusive, and
//! a prefix the kernel refuses is logged and left out. Prefixes that cover
//! an address that must stay on the underlay (the management server, the
//! relay) are carved around it: the prefix is replaced by the largest
//! sub-prefixes that leave the address out.
//!
//! Routes go when the interface does (the kernel removes them with it);
//! [`HostRoutes::clear`] removes them while it stays.

use std::collections::BTreeSet;
use std::io;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use rtnetlink::{Handle, RouteMessageBuilder};

/// The kernel routes this peer installed on its TUN interface.
#[derive(Debug)]
pub struct HostRoutes {
    handle: Handle,
    interface: String,
    /// Addresses no route of ours may cover.
    underlay: Vec<Ipv4Addr>,
    installed: BTreeSet<Ipv4Net>,
}

impl HostRoutes {
    /// Opens a netlink connection for routes on `interface`; `underlay` are
    /// the addresses that must keep their own path.
    pub fn new(interface: &str, underlay: Vec<Ipv4Addr>) -> io::Result<HostRoutes> {
        let (connection, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(connection);
        Ok(HostRoutes {
            handle,
            interface: interface.to_string(),
            underlay,
            installed: BTreeSet::new(),
        })
    }

    /// Makes the kernel route exactly `prefixes` (minus the underlay
    /// addresses) to the interface.
    pub async fn apply(&mut self, prefixes: &[Ipv4Net]) {
        let wanted: BTreeSet<Ipv4Net> = prefixes
            .iter()
            .flat_map(|p| {
                let carved = carve(p.trunc(), &self.underlay);
                if carved.len() != 1 || carved[0] != p.trunc() {
                    tracing::info!(
                        "route {p}: carved around the management and relay addresses into {carved:?}"
                    );
                }
                carved
            })
            .collect();
        let index = match nix::net::if_::if_nametoindex(self.interface.as_str()) {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!("routes: interface {}: {e}", self.interface);
                return;
            }
        };
        let gone: Vec<Ipv4Net> = self.installed.difference(&wanted).copied().collect();
        for prefix in gone {
            self.installed.remove(&prefix);
            let message = route(prefix, index);
            if let Err(e) = self.handle.route().del(message).execute().await {
                tracing::warn!("route {prefix} dev {}: remove: {e}", self.interface);
            } else {
                tracing::info!("route {prefix} dev {} removed", self.interface);
            }
        }
        let new: Vec<Ipv4Net> = wanted.difference(&self.installed).copied().collect();
        for prefix in new {
            match self
                .handle
                .route()
                .add(route(prefix, index))
                .execute()
                .await
            {
                Ok(()) => {
                    tracing::info!("route {prefix} dev {} added", self.interface);
                    self.installed.insert(prefix);
                }
                Err(e) => tracing::warn!(
                    "route {prefix} dev {}: not added ({e}); the host routes it already",
                    self.interface
                ),
            }
        }
    }

    /// The prefixes routed to the interface now.
    pub fn installed(&self) -> &BTreeSet<Ipv4Net> {
        &self.installed
    }

    /// Removes every route this peer added.
    pub async fn clear(&mut self) {
        self.apply(&[]).await;
    }
}

/// A route to `prefix` out of interface `index`, in the main table.
fn route(prefix: Ipv4Net, index: u32) -> rtnetlink::packet_route::route::RouteMessage {
    RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(prefix.network(), prefix.prefix_len())
        .output_interface(index)
        .build()
}

/// `prefix` without the `holes`: the largest sub-prefixes of it that
/// contain none of them (at most 32 per hole).
pub fn carve(prefix: Ipv4Net, holes: &[Ipv4Addr]) -> Vec<Ipv4Net> {
    if !holes.iter().any(|h| prefix.contains(h)) {
        return vec![prefix];
    }
    if prefix.prefix_len() == 32 {
        return Vec::new();
    }
    let mut out = Vec::new();
    if let Ok(halves) = prefix.subnets(prefix.prefix_len() + 1) {
        for half in halves {
            out.extend(carve(half, holes));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn carving_leaves_out_exactly_the_holes() {
        assert_eq!(carve(net("10.0.0.0/8"), &[]), vec![net("10.0.0.0/8")]);
        let hole = Ipv4Addr::new(10, 0, 0, 1);
        let parts = carve(net("10.0.0.0/30"), &[hole]);
        assert_eq!(parts, vec![net("10.0.0.0/32"), net("10.0.0.2/31")]);
        let all = carve(net("0.0.0.0/0"), &[Ipv4Addr::new(192, 0, 2, 1)]);
        assert_eq!(all.len(), 32);
        let covered: u64 = all.iter().map(|p| 1u64 << (32 - p.prefix_len())).sum();
        assert_eq!(covered, (1u64 << 32) - 1);
        assert!(all
            .iter()
            .all(|p| !p.contains(&Ipv4Addr::new(192, 0, 2, 1))));
    }
}

//! The exit node on this peer (Linux, kernel TUN mode): a chosen
//! `0.0.0.0/0` route sends all of the host's internet traffic into the
//! tunnel, to the exit peer, while the tunnel's own packets keep the
//! host's path.
//!
//! Replacing the main table's default route would also capture the
//! WireGuard packets, the management connection and the relay connection,
//! and the tunnel would route itself into itself. So, like wg-quick and
//! NetBird on Linux, the default route goes into a table of our own
//! ([`TABLE`]), reached through two policy rules:
//!
//! 1. priority [`PRIORITY_MAIN`]: `lookup main suppress_prefixlength 0` —
//!    every route of the main table except its default route still wins
//!    (the LAN, the mesh prefix on the TUN, routes the host has for
//!    specific networks);
//! 2. priority [`PRIORITY_TUNNEL`]: `not fwmark UNDERLAY_MARK lookup
//!    TABLE` — everything else, unless it comes from one of this peer's
//!    own underlay sockets ([`super::mark`]), takes the table's default
//!    route into the TUN. Marked packets fall through to the main table
//!    and its default route.
//!
//! Turning the exit off deletes both rules and flushes the table, which
//! restores the host's own path. Should the daemon die without doing so,
//! the TUN interface goes with the process and takes the table's route
//! with it; the rules left behind point at an empty table and change
//! nothing; and the next run's first [`ExitRouting::set`] removes them.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};

use futures_util::TryStreamExt;
use rtnetlink::packet_route::route::{RouteAttribute, RouteHeader, RouteMessage, RouteType};
use rtnetlink::packet_route::rule::{RuleAction, RuleAttribute, RuleFlags, RuleMessage};
use rtnetlink::{Handle, IpVersion, RouteMessageBuilder};
use tokio::task::JoinHandle;

use super::mark::UNDERLAY_MARK;

/// The routing table holding the exit route ("mp"; NetBird's is 0x1BD0,
/// so both clients can share a host).
pub const TABLE: u32 = 0x6d70;
/// The rule that keeps the main table's specific routes in front.
pub const PRIORITY_MAIN: u32 = 5270;
/// The rule that sends unmarked traffic to [`TABLE`].
pub const PRIORITY_TUNNEL: u32 = 5271;

/// Replies to marked packets come back on the underlay interface, while
/// an unmarked lookup of their source would point at the TUN: reverse-path
/// filtering must take the mark into account or it drops them (wg-quick
/// sets the same).
const SRC_VALID_MARK: &str = "/proc/sys/net/ipv4/conf/all/src_valid_mark";

/// Why the exit route could not be installed or removed.
#[derive(Debug, thiserror::Error)]
pub enum ExitError {
    #[error("cannot open a netlink socket: {0}")]
    Socket(io::Error),
    #[error("the tunnel interface {0} does not exist")]
    NoInterface(String),
    #[error("netlink: {0}")]
    Netlink(#[from] rtnetlink::Error),
    #[error("cannot set {SRC_VALID_MARK}: {0}")]
    Sysctl(io::Error),
}

/// The policy routing of one kernel TUN interface: off until
/// [`ExitRouting::set`] turns it on.
#[derive(Debug)]
pub struct ExitRouting {
    handle: Handle,
    /// The netlink connection's task.
    connection: JoinHandle<()>,
    /// The TUN interface's index.
    tun: u32,
    on: bool,
    /// Whether what an earlier run left has been removed (on the first
    /// [`ExitRouting::set`]).
    swept: bool,
}

impl ExitRouting {
    /// Opens a netlink connection for the TUN interface `interface`.
    pub fn new(interface: &str) -> Result<ExitRouting, ExitError> {
        let tun = nix::net::if_::if_nametoindex(interface)
            .map_err(|_| ExitError::NoInterface(interface.to_string()))?;
        let (connection, handle, _) = rtnetlink::new_connection().map_err(ExitError::Socket)?;
        Ok(ExitRouting {
            handle,
            connection: tokio::spawn(connection),
            tun,
            on: false,
            swept: false,
        })
    }

    /// Sends the host's internet traffic into the tunnel (`on`), or lets
    /// it take the host's own path again. Doing what is already done is a
    /// no-op; the first call also removes what a run that died left.
    pub async fn set(&mut self, on: bool) -> Result<(), ExitError> {
        if !self.swept {
            self.remove().await?;
            self.swept = true;
        }
        if on == self.on {
            return Ok(());
        }
        if on {
            if let Err(e) = self.install().await {
                // Nothing half-installed stays behind.
                let _ = self.remove().await;
                return Err(e);
            }
        } else {
            self.remove().await?;
        }
        self.on = on;
        Ok(())
    }

    async fn install(&self) -> Result<(), ExitError> {
        std::fs::write(SRC_VALID_MARK, "1").map_err(ExitError::Sysctl)?;
        let route = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(Ipv4Addr::UNSPECIFIED, 0)
            .output_interface(self.tun)
            .table_id(TABLE)
            .build();
        self.handle.route().add(route).replace().execute().await?;
        self.add_rules(&IpVersion::V4).await?;
        if let Err(e) = self.block_ipv6().await {
            tracing::warn!("exit node: the host's IPv6 keeps its own path ({e})");
        }
        Ok(())
    }

    /// The mesh carries IPv4 only: with an exit node in use, IPv6 to the
    /// internet is refused (`unreachable ::/0` in our table, behind the
    /// same rules) rather than leaving past the exit node, as NetBird's
    /// client does; the host's own IPv6 networks still work.
    async fn block_ipv6(&self) -> Result<(), ExitError> {
        let route = RouteMessageBuilder::<Ipv6Addr>::new()
            .destination_prefix(Ipv6Addr::UNSPECIFIED, 0)
            .table_id(TABLE)
            .kind(RouteType::Unreachable)
            .build();
        self.handle.route().add(route).replace().execute().await?;
        self.add_rules(&IpVersion::V6).await
    }

    /// The two rules of the module docs, for one address family.
    async fn add_rules(&self, version: &IpVersion) -> Result<(), ExitError> {
        let rules = self.handle.rule();
        let mut main = rules
            .add()
            .priority(PRIORITY_MAIN)
            .table_id(u32::from(RouteHeader::RT_TABLE_MAIN))
            .action(RuleAction::ToTable);
        main.message_mut()
            .attributes
            .push(RuleAttribute::SuppressPrefixLen(0));
        let mut tunnel = rules
            .add()
            .priority(PRIORITY_TUNNEL)
            .table_id(TABLE)
            .fw_mark(UNDERLAY_MARK)
            .action(RuleAction::ToTable);
        let message = tunnel.message_mut();
        message.attributes.push(RuleAttribute::FwMask(u32::MAX));
        message.header.flags |= RuleFlags::Invert;
        for rule in [main, tunnel] {
            match version {
                IpVersion::V4 => rule.v4().execute().await?,
                IpVersion::V6 => rule.v6().execute().await?,
            }
        }
        Ok(())
    }

    /// Deletes our rules (by priority or table) and every route in
    /// [`TABLE`]; also what a crashed run left.
    async fn remove(&self) -> Result<(), ExitError> {
        self.remove_family(IpVersion::V4).await?;
        // A host without IPv6 has nothing of ours there.
        if let Err(e) = self.remove_family(IpVersion::V6).await {
            tracing::debug!("exit node: IPv6 rules: {e}");
        }
        Ok(())
    }

    async fn remove_family(&self, version: IpVersion) -> Result<(), ExitError> {
        let dump = match version {
            IpVersion::V4 => RouteMessageBuilder::<Ipv4Addr>::new().build(),
            IpVersion::V6 => RouteMessageBuilder::<Ipv6Addr>::new().build(),
        };
        let ours: Vec<RuleMessage> = self
            .handle
            .rule()
            .get(version)
            .execute()
            .try_filter(|rule| std::future::ready(is_ours(rule)))
            .try_collect()
            .await?;
        for rule in ours {
            self.handle.rule().del(rule).execute().await?;
        }
        let routes: Vec<RouteMessage> = self
            .handle
            .route()
            .get(dump)
            .execute()
            .try_filter(|route| std::future::ready(route_table(route) == TABLE))
            .try_collect()
            .await?;
        for route in routes {
            self.handle.route().del(route).execute().await?;
        }
        Ok(())
    }
}

impl Drop for ExitRouting {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

fn is_ours(rule: &RuleMessage) -> bool {
    rule.attributes.iter().any(|a| match a {
        RuleAttribute::Priority(p) => *p == PRIORITY_MAIN || *p == PRIORITY_TUNNEL,
        RuleAttribute::Table(t) => *t == TABLE,
        _ => false,
    })
}

/// The table a route is in: the attribute when present (tables above
/// 255), else the header's byte.
fn route_table(route: &RouteMessage) -> u32 {
    route
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(route.header.table))
}

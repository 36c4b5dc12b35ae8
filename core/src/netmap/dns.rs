//! The DNS part of a map.
//!
//! A peer in any of `disabled_management_groups` gets DNS management switched
//! off: `service_enable` is false and, as in the reference, it gets no zones
//! and no nameserver groups. Otherwise it gets one zone for the account's DNS
//! domain with an A record for itself and for every peer in its `peers`, in
//! IP order, and the enabled nameserver groups that name one of its groups,
//! sorted by id.

use serde::Serialize;

use crate::index::AccountIndex;
use crate::model::{Nameserver, NameserverGroupId};

/// TTL of the A records of the account zone, in seconds.
pub const RECORD_TTL: u32 = 300;

/// Positions of the enabled nameserver groups that name one of `groups`,
/// sorted by id.
pub(crate) fn nameserver_groups(index: &AccountIndex<'_>, groups: &[u32]) -> Vec<u32> {
    let all = &index.account.nameserver_groups;
    let mut out: Vec<u32> = (0..all.len() as u32)
        .filter(|&i| {
            let ns = &all[i as usize];
            ns.enabled
                && ns
                    .groups
                    .iter()
                    .filter_map(|g| index.group(g.as_str()))
                    .any(|g| groups.binary_search(&g).is_ok())
        })
        .collect();
    out.sort_by_key(|&i| (&all[i as usize].id, i));
    out
}

/// An A record of the account zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Record<'a> {
    pub name: &'a str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub class: &'static str,
    pub ttl: u32,
    pub rdata: std::net::Ipv4Addr,
}

impl<'a> Record<'a> {
    pub(crate) fn of(index: &'a AccountIndex<'a>, rank: u32) -> Self {
        Record {
            name: index.fqdn(rank),
            kind: "A",
            class: "IN",
            ttl: RECORD_TTL,
            rdata: index.peer(rank).ip,
        }
    }
}

/// A nameserver group as it appears in a map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NameserverGroupView<'a> {
    pub id: &'a NameserverGroupId,
    pub name: &'a str,
    pub nameservers: &'a [Nameserver],
    pub primary: bool,
    pub domains: &'a [String],
    pub search_domains_enabled: bool,
}

impl<'a> NameserverGroupView<'a> {
    pub(crate) fn of(index: &AccountIndex<'a>, pos: u32) -> Self {
        let ns = &index.account.nameserver_groups[pos as usize];
        NameserverGroupView {
            id: &ns.id,
            name: &ns.name,
            nameservers: &ns.nameservers,
            primary: ns.primary,
            domains: &ns.domains,
            search_domains_enabled: ns.search_domains_enabled,
        }
    }
}

//! Equivalence classes of peers.
//!
//! Two peers in the same groups that are on the same rule sides (same
//! posture results, same direct references) see the same peers, get the same
//! firewall rules and the same routes, apart from never listing themselves.
//! A class's part of the map is computed once and shared; each peer's map
//! leaves the peer itself out when it is read.

use std::collections::HashMap;

use super::firewall::{templates, Template};
use super::reach::Reach;
use super::routes::{distributed_routes, resource_routes, RouteEntry};
use crate::index::{side_parts, PeerSet, SideId, SideOf};
use crate::model::Action;
use crate::policy::some_query_allowed;

/// How a class takes part in one rule.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Involved {
    pub rule: u32,
    /// The class is on the rule's source side.
    pub src: bool,
    /// The class is on the rule's destination side.
    pub dst: bool,
}

/// What every peer of a class shares.
#[derive(Debug)]
pub(crate) struct ClassMap {
    /// Approved peers the class sees (its own members may be in it).
    pub visible: PeerSet,
    pub firewall: Vec<Template>,
    /// Routes through other peers (entries through a member are skipped
    /// when that member's map is read).
    pub routes: Vec<RouteEntry>,
    /// Resources the class may reach.
    pub granted: Vec<u32>,
    /// DNS management is on (the class is in no disabled management group).
    pub dns_enabled: bool,
    /// Positions of the nameserver groups that apply, sorted by id.
    pub nameservers: Vec<u32>,
}

/// Groups sides into rules.
pub(crate) fn involvement(sides: &[SideId]) -> Vec<Involved> {
    let mut out: Vec<Involved> = Vec::new();
    for &s in sides {
        let (rule, which) = side_parts(s);
        let (src, dst) = (which == SideOf::Sources, which == SideOf::Destinations);
        match out.last_mut() {
            Some(last) if last.rule == rule => {
                last.src |= src;
                last.dst |= dst;
            }
            _ => out.push(Involved { rule, src, dst }),
        }
    }
    out
}

impl ClassMap {
    /// The shared part of the map of a peer in `groups` on `sides`.
    pub fn build(reach: &Reach<'_>, groups: &[u32], sides: &[SideId]) -> ClassMap {
        let involved = involvement(sides);
        let mut visible = visible_peers(reach, &involved);
        let granted = granted_resources(reach, &involved);
        let index = reach.index;
        for &res in &granted {
            for &router in index.network_routers(index.resource_at(res).network_id.as_str()) {
                if index.account.network_routers[router as usize].enabled {
                    let mut peers = index.router_peers(router).clone();
                    peers.intersect_with(index.approved());
                    visible.union_with(&peers);
                }
            }
        }
        let mut routes = distributed_routes(reach, groups, &visible);
        routes.extend(resource_routes(reach, &granted, None));
        routes.sort_unstable_by(|a, b| a.key(index).cmp(&b.key(index)));
        routes.dedup_by(|a, b| a.key(index) == b.key(index));
        let dns_enabled = !index
            .group_positions(&index.account.dns_settings.disabled_management_groups)
            .iter()
            .any(|g| groups.binary_search(g).is_ok());
        ClassMap {
            visible,
            firewall: templates(reach, &involved),
            routes,
            granted,
            dns_enabled,
            nameservers: super::dns::nameserver_groups(index, groups),
        }
    }
}

/// The approved peers a class sees: the other side of every accept rule it
/// is on, minus peers with which every query is dropped.
fn visible_peers(reach: &Reach<'_>, involved: &[Involved]) -> PeerSet {
    let rules = reach.index.rules();
    let mut visible = PeerSet::empty(reach.index.peer_count());
    let mut dropped = PeerSet::empty(reach.index.peer_count());
    for inv in involved {
        let target = match rules[inv.rule as usize].action {
            Action::Accept => &mut visible,
            Action::Drop => &mut dropped,
        };
        if inv.src {
            target.union_with(reach.side(inv.rule, SideOf::Destinations));
        }
        if inv.dst {
            target.union_with(reach.side(inv.rule, SideOf::Sources));
        }
    }
    dropped.intersect_with(&visible);
    if dropped.is_empty() {
        return visible;
    }
    // Peers on a drop rule's other side stay visible only if some query
    // between them is allowed; peers with the same memberships share the
    // verdict.
    let mut verdicts: HashMap<Vec<bool>, bool> = HashMap::new();
    for q in dropped.iter() {
        let signature: Vec<bool> = involved
            .iter()
            .flat_map(|inv| {
                [
                    reach.on_side(inv.rule, SideOf::Sources, q),
                    reach.on_side(inv.rule, SideOf::Destinations, q),
                ]
            })
            .collect();
        let seen = *verdicts
            .entry(signature)
            .or_insert_with_key(|sig| pair_visible(reach, involved, sig));
        if !seen {
            visible.remove(q);
        }
    }
    visible
}

/// Whether some query is allowed between the class and a peer whose side
/// memberships are `sig` (pairs of source / destination per involved rule),
/// in either direction.
fn pair_visible(reach: &Reach<'_>, involved: &[Involved], sig: &[bool]) -> bool {
    let rules = reach.index.rules();
    let direction = |outbound: bool| {
        involved.iter().enumerate().filter_map(move |(i, inv)| {
            let rule = &rules[inv.rule as usize];
            let (q_src, q_dst) = (sig[2 * i], sig[2 * i + 1]);
            // outbound: class -> q; inbound: q -> class.
            let (from_src, to_dst, from_dst, to_src) = if outbound {
                (inv.src, q_dst, inv.dst, q_src)
            } else {
                (q_src, inv.dst, q_dst, inv.src)
            };
            let forward = from_src && to_dst;
            let backward = rule.bidirectional && to_src && from_dst;
            (forward || backward).then_some(rule)
        })
    };
    some_query_allowed(direction(true)) || some_query_allowed(direction(false))
}

/// Resources the class may reach on some query.
fn granted_resources(reach: &Reach<'_>, involved: &[Involved]) -> Vec<u32> {
    let index = reach.index;
    let rules = index.rules();
    let mut candidates: Vec<u32> = involved
        .iter()
        .flat_map(|inv| {
            let rule = &rules[inv.rule as usize];
            let fwd = inv.src.then_some(rule.destinations.resources.iter());
            let back = (rule.bidirectional && inv.dst).then_some(rule.sources.resources.iter());
            fwd.into_iter().chain(back).flatten().copied()
        })
        .collect();
    candidates.sort_unstable();
    candidates.dedup();
    candidates.retain(|&res| {
        index.resource_at(res).enabled
            && some_query_allowed(involved.iter().filter_map(|inv| {
                let rule = &rules[inv.rule as usize];
                let fwd = inv.src && rule.destinations.resources.binary_search(&res).is_ok();
                let back = rule.bidirectional
                    && inv.dst
                    && rule.sources.resources.binary_search(&res).is_ok();
                (fwd || back).then_some(rule)
            }))
    });
    candidates
}

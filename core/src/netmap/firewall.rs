//! Peer firewall rules.
//!
//! Sources get OUT rules towards destinations and destinations get IN rules
//! from sources; a bidirectional rule adds the reverse pair. Per rule and
//! direction the peers on the far side are one set, so a peer on both sides
//! is listed once: rules come out deduplicated on (rule, peer IP, direction,
//! protocol, action, ports). When the far side is every other active peer of
//! the account, one rule with peer IP `0.0.0.0` stands for all of them.
//!
//! Order: by policy id, rule id, direction (`in` first), port (single ports
//! ascending, then ranges), then peer IP ascending.

use std::net::Ipv4Addr;
use std::sync::Arc;

use serde::Serialize;

use super::classes::Involved;
use super::reach::Reach;
use crate::index::{iter_words, AccountIndex, PeerSet, PortSpec, SideOf};
use crate::model::{Action, PolicyId, PortRange, Protocol, RuleId};

/// Which way traffic flows, seen from the peer whose map it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    In,
    Out,
}

/// One firewall rule of a peer's map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FirewallRule<'a> {
    pub policy_id: &'a PolicyId,
    pub rule_id: &'a RuleId,
    /// The remote peer, or `0.0.0.0` for every other peer.
    pub peer_ip: Ipv4Addr,
    pub direction: Direction,
    pub action: Action,
    pub protocol: Protocol,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port_range: Option<PortRange>,
}

/// The active peers outside a template's far side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Missing {
    None,
    One(u32),
    Many,
}

/// The firewall rules of one rule and direction for a class, before the
/// peer itself is left out.
#[derive(Debug)]
pub(crate) struct Template {
    rule: u32,
    direction: Direction,
    /// The far side is the union of these sets (intersected with the
    /// active peers when expanded).
    targets: Vec<Arc<PeerSet>>,
    missing: Missing,
    /// Active peers on the far side.
    present: usize,
}

/// A rule's port slots: one per port and per range, or one without a port.
pub(crate) fn port_slots(
    spec: &PortSpec,
) -> impl Iterator<Item = (Option<u16>, Option<PortRange>)> + '_ {
    let any = spec.is_any().then_some((None, None));
    any.into_iter()
        .chain(spec.ports.iter().map(|&p| (Some(p), None)))
        .chain(spec.ranges.iter().map(|&r| (None, Some(r))))
}

/// The word-wise union of `sets`, masked by `mask`.
pub(crate) fn union_words<'s>(
    sets: &'s [Arc<PeerSet>],
    mask: &'s PeerSet,
) -> impl Iterator<Item = u64> + 's {
    mask.words()
        .iter()
        .enumerate()
        .map(move |(i, m)| m & sets.iter().fold(0, |acc, s| acc | s.words()[i]))
}

/// The templates of a class on the `involved` rules, sorted.
pub(crate) fn templates(reach: &Reach<'_>, involved: &[Involved]) -> Vec<Template> {
    let index = reach.index;
    let rules = index.rules();
    let mut out = Vec::new();
    for inv in involved {
        let rule = &rules[inv.rule as usize];
        let mut towards = Vec::new();
        let mut from = Vec::new();
        if inv.src {
            let far = reach.side(inv.rule, SideOf::Destinations);
            towards.push(far.clone());
            if rule.bidirectional {
                from.push(far.clone());
            }
        }
        if inv.dst {
            let far = reach.side(inv.rule, SideOf::Sources);
            from.push(far.clone());
            if rule.bidirectional {
                towards.push(far.clone());
            }
        }
        for (direction, targets) in [(Direction::In, from), (Direction::Out, towards)] {
            if targets.is_empty() {
                continue;
            }
            let active = &reach.active;
            let mut present = 0;
            let mut missing = Missing::None;
            for (i, (far, all)) in union_words(&targets, active)
                .zip(active.words())
                .enumerate()
            {
                present += far.count_ones() as usize;
                let gap = all & !far;
                missing = match (missing, gap.count_ones()) {
                    (m, 0) => m,
                    (Missing::None, 1) => Missing::One(i as u32 * 64 + gap.trailing_zeros()),
                    _ => Missing::Many,
                };
            }
            out.push(Template {
                rule: inv.rule,
                direction,
                targets,
                missing,
                present,
            });
        }
    }
    out.sort_by(|a, b| sort_key(index, a).cmp(&sort_key(index, b)));
    out
}

fn sort_key<'a>(
    index: &AccountIndex<'a>,
    t: &Template,
) -> (&'a PolicyId, &'a RuleId, u32, u32, Direction) {
    let rule = &index.rules()[t.rule as usize];
    let (policy, r) = index.policy_rule(rule);
    (&policy.id, &r.id, rule.policy, rule.rule, t.direction)
}

/// The rules of `templates` in the map of the peer at `me`.
pub(crate) fn expand<'a, 'm>(
    index: &'m AccountIndex<'a>,
    templates: &'m [Template],
    active: &'m PeerSet,
    me: u32,
) -> impl Iterator<Item = FirewallRule<'a>> + 'm {
    templates.iter().flat_map(move |t| {
        let rule = &index.rules()[t.rule as usize];
        let (policy, r) = index.policy_rule(rule);
        let mine = t.targets.iter().any(|s| s.contains(me)) && active.contains(me);
        let others = t.present - usize::from(mine);
        let collapsed = match t.missing {
            Missing::None => true,
            Missing::One(m) => m == me,
            Missing::Many => false,
        };
        port_slots(&rule.ports)
            .filter(move |_| others > 0)
            .flat_map(move |(port, port_range)| {
                let ips: Box<dyn Iterator<Item = Ipv4Addr> + 'm> = if collapsed {
                    Box::new(std::iter::once(Ipv4Addr::UNSPECIFIED))
                } else {
                    let mut last = None;
                    Box::new(
                        iter_words(union_words(&t.targets, active))
                            .filter(move |&rank| rank != me)
                            .map(|rank| index.peer(rank).ip)
                            .filter(move |ip| last.replace(*ip) != Some(*ip)),
                    )
                };
                ips.map(move |peer_ip| FirewallRule {
                    policy_id: &policy.id,
                    rule_id: &r.id,
                    peer_ip,
                    direction: t.direction,
                    action: rule.action,
                    protocol: rule.protocol,
                    port,
                    port_range,
                })
            })
    })
}

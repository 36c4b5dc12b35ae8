//! Access evaluation: may this peer reach that peer or resource, and which
//! rule decided it.
//!
//! Only enabled rules of enabled policies count. A rule matches a query when
//! the source is on its source side and the destination on its destination
//! side, or — for a bidirectional rule — the other way round; when its
//! protocol matches (a rule for `all` matches every query protocol, a query
//! for `all` matches only rules for `all`, `netbird-ssh` is TCP); and when the
//! query port is inside the rule's ports or ranges (a rule without ports
//! matches any port, a rule with ports never matches a query without one).
//! A policy's source posture checks remove failing peers from the sources of
//! its rules, in both directions of a bidirectional rule. Peers waiting for
//! approval and peers whose login expired reach nothing and are reached by
//! nothing.
//!
//! Precedence: if any matching rule drops, the query is denied and the first
//! such rule (policies in account order, rules in policy order) is named as
//! the decider; otherwise the first matching accept rule allows it;
//! otherwise it is denied with no deciding rule. A drop therefore always wins
//! over an accept, whatever their order.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::error::{ErrorCode, Kind};
use crate::index::{AccountIndex, IndexedRule, PortSpec, SideOf};
use crate::model::{Action, PeerId, PolicyId, Protocol, ResourceId, RuleId};
use crate::posture;
use crate::time::Timestamp;

/// A reference the query makes that the account does not hold.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PolicyError {
    #[error("peer {0} not found")]
    PeerNotFound(String),
    #[error("resource {0} not found")]
    ResourceNotFound(String),
}

impl ErrorCode for PolicyError {
    fn code(&self) -> &'static str {
        match self {
            PolicyError::PeerNotFound(_) => "peer_not_found",
            PolicyError::ResourceNotFound(_) => "resource_not_found",
        }
    }

    fn kind(&self) -> Kind {
        Kind::NotFound
    }
}

/// What a query asks to reach.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Destination {
    Peer(PeerId),
    Resource(ResourceId),
}

/// May `source` reach `destination` over `protocol` (and `port`)?
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessQuery {
    pub source: PeerId,
    pub destination: Destination,
    pub protocol: Protocol,
    #[serde(default)]
    pub port: Option<u16>,
}

/// The rule that decided a query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecidingRule {
    pub policy_id: PolicyId,
    pub policy_name: String,
    pub rule_id: RuleId,
    pub rule_name: String,
    pub action: Action,
}

/// The answer to a query, with the reason in words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub allowed: bool,
    pub decided_by: Option<DecidingRule>,
    pub reason: String,
}

/// One end of a query: a peer (by rank) or a network resource (by position).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Peer(u32),
    Resource(u32),
}

/// Evaluates one query at `now` (which decides whose login has expired).
pub fn evaluate(
    index: &AccountIndex<'_>,
    query: &AccessQuery,
    now: Timestamp,
) -> Result<Decision, PolicyError> {
    let src = peer_rank(index, query.source.as_str())?;
    let (dst, dst_name) = match &query.destination {
        Destination::Peer(id) => (
            Endpoint::Peer(peer_rank(index, id.as_str())?),
            id.to_string(),
        ),
        Destination::Resource(id) => (
            Endpoint::Resource(
                index
                    .resource(id.as_str())
                    .ok_or_else(|| PolicyError::ResourceNotFound(id.to_string()))?,
            ),
            format!("resource {id}"),
        ),
    };
    let deny = |reason: String| Decision {
        allowed: false,
        decided_by: None,
        reason,
    };
    for end in [Endpoint::Peer(src), dst] {
        if let Some(reason) = unreachable_reason(index, end, now) {
            return Ok(deny(reason));
        }
    }
    let protocol = query.protocol.on_wire();
    let mut first_accept = None;
    for rule in index.rules() {
        if !query_matches(rule, protocol, query.port)
            || !direction_matches(index, rule, Endpoint::Peer(src), dst)
        {
            continue;
        }
        match rule.action {
            Action::Drop => {
                return Ok(Decision::by(index, rule));
            }
            Action::Accept => {
                first_accept.get_or_insert(rule);
            }
        }
    }
    Ok(match first_accept {
        Some(rule) => Decision::by(index, rule),
        None => {
            let what = match query.port {
                Some(p) => format!("{}/{p}", query.protocol.as_str()),
                None => query.protocol.as_str().to_string(),
            };
            deny(format!(
                "no enabled policy allows {what} from {} to {dst_name}",
                query.source
            ))
        }
    })
}

/// The rank of a peer of the account, or `peer_not_found`.
pub(crate) fn peer_rank(index: &AccountIndex<'_>, id: &str) -> Result<u32, PolicyError> {
    index
        .rank(id)
        .ok_or_else(|| PolicyError::PeerNotFound(id.to_string()))
}

/// Why an endpoint can take part in no connection, if it cannot.
pub(crate) fn unreachable_reason(
    index: &AccountIndex<'_>,
    end: Endpoint,
    now: Timestamp,
) -> Option<String> {
    match end {
        Endpoint::Peer(rank) => {
            let peer = index.peer(rank);
            if peer.approval_required {
                Some(format!("peer {} is waiting for approval", peer.id))
            } else if peer.login_expired(&index.account.settings, now) {
                Some(format!("login of peer {} has expired", peer.id))
            } else {
                None
            }
        }
        Endpoint::Resource(pos) => {
            let res = index.resource_at(pos);
            (!res.enabled).then(|| format!("resource {} is disabled", res.id))
        }
    }
}

impl Decision {
    /// The decision `rule` makes: allowed by an accept rule, denied by a
    /// drop rule, with the rule named in the reason.
    pub(crate) fn by(index: &AccountIndex<'_>, rule: &IndexedRule) -> Decision {
        let decided = deciding_rule(index, rule);
        let reason = match decided.action {
            Action::Accept => format!(
                "allowed by policy \"{}\" rule \"{}\"",
                decided.policy_name, decided.rule_name
            ),
            Action::Drop => format!(
                "denied by drop rule \"{}\" of policy \"{}\"",
                decided.rule_name, decided.policy_name
            ),
        };
        Decision {
            allowed: decided.action == Action::Accept,
            decided_by: Some(decided),
            reason,
        }
    }
}

fn deciding_rule(index: &AccountIndex<'_>, rule: &IndexedRule) -> DecidingRule {
    let (policy, r) = index.policy_rule(rule);
    DecidingRule {
        policy_id: policy.id.clone(),
        policy_name: policy.name.clone(),
        rule_id: r.id.clone(),
        rule_name: r.name.clone(),
        action: r.action,
    }
}

/// Whether `src -> dst` is a direction of the rule (forward, or backward for
/// a bidirectional rule).
fn direction_matches(
    index: &AccountIndex<'_>,
    rule: &IndexedRule,
    src: Endpoint,
    dst: Endpoint,
) -> bool {
    let on = |end, which| on_side(index, rule, which, end);
    (on(src, SideOf::Sources) && on(dst, SideOf::Destinations))
        || (rule.bidirectional && on(dst, SideOf::Sources) && on(src, SideOf::Destinations))
}

/// Whether an endpoint is on a side of a rule, with the policy's posture
/// checks applied to peers on the source side.
fn on_side(index: &AccountIndex<'_>, rule: &IndexedRule, which: SideOf, end: Endpoint) -> bool {
    let side = rule.side(which);
    match end {
        Endpoint::Resource(pos) => side.resources.binary_search(&pos).is_ok(),
        Endpoint::Peer(rank) => {
            side.peers.contains(rank)
                && (which == SideOf::Destinations
                    || posture::evaluate_all(
                        rule.posture.iter().map(|&c| index.posture_check_at(c)),
                        index.peer(rank),
                    )
                    .is_ok())
        }
    }
}

/// Whether a rule's protocol covers a query protocol (both as on the wire).
pub(crate) fn protocol_matches(rule: Protocol, query: Protocol) -> bool {
    rule == Protocol::All || rule == query
}

/// Whether a rule matches a query's protocol and port.
pub(crate) fn query_matches(rule: &IndexedRule, protocol: Protocol, port: Option<u16>) -> bool {
    protocol_matches(rule.protocol, protocol) && rule.ports.matches(port)
}

/// Whether some query is allowed by the given rules, all of which match the
/// pair of endpoints in question: some accept rule must match a query that
/// no drop rule among them also matches. This is what makes two peers see
/// each other in their maps.
pub(crate) fn some_query_allowed<'r>(rules: impl Iterator<Item = &'r IndexedRule> + Clone) -> bool {
    first_allowing(rules).is_some()
}

/// The first accept rule among `rules` (all matching one pair of endpoints)
/// that some query passes without a drop rule among them matching it too:
/// the rule that makes the pair connect, when there is one.
pub(crate) fn first_allowing<'r>(
    rules: impl Iterator<Item = &'r IndexedRule> + Clone,
) -> Option<&'r IndexedRule> {
    let drops: Vec<&IndexedRule> = rules.clone().filter(|r| r.action == Action::Drop).collect();
    rules
        .filter(|r| r.action == Action::Accept)
        .find(|accept| !fully_dropped(accept, &drops))
}

/// Whether every query `accept` matches is also matched by one of `drops`.
fn fully_dropped(accept: &IndexedRule, drops: &[&IndexedRule]) -> bool {
    let covered = |port: Option<u16>| {
        drops
            .iter()
            .any(|d| query_matches(d, accept.protocol, port))
    };
    if accept.ports.is_any() {
        // The widest query of the rule: its protocol with no port.
        return covered(None);
    }
    accept.ports.ports.iter().all(|&p| covered(Some(p)))
        && accept
            .ports
            .ranges
            .iter()
            .all(|r| range_dropped(accept.protocol, r.start, r.end, drops))
}

/// Whether every port of `start..=end` is dropped, found by jumping over the
/// drop intervals that cover the next undecided port.
fn range_dropped(protocol: Protocol, start: u32, end: u32, drops: &[&IndexedRule]) -> bool {
    let mut port = start;
    while port <= end {
        let reach = drops
            .iter()
            .filter(|d| protocol_matches(d.protocol, protocol))
            .filter_map(|d| covered_until(&d.ports, port))
            .max();
        match reach {
            Some(last) => port = last + 1,
            None => return false,
        }
    }
    true
}

/// The last port of the stretch starting at `port` that `spec` covers.
fn covered_until(spec: &PortSpec, port: u32) -> Option<u32> {
    if spec.is_any() {
        return Some(u32::from(u16::MAX));
    }
    let single = spec
        .ports
        .binary_search(&u16::try_from(port).ok()?)
        .ok()
        .map(|_| port);
    let ranged = spec
        .ranges
        .iter()
        .filter(|r| r.start <= port && port <= r.end)
        .map(|r| r.end)
        .max();
    single.max(ranged)
}

/// The peers `peer_id` may reach or be reached by (on some protocol), sorted
/// by id: the `peers` of its network map, as REST
/// `/api/peers/{id}/accessible-peers` lists them.
pub fn accessible_peers(
    index: &AccountIndex<'_>,
    peer_id: &str,
    now: Timestamp,
) -> Result<Vec<PeerId>, PolicyError> {
    let rank = peer_rank(index, peer_id)?;
    let map = crate::netmap::MapBuilder::new(index, now).map(rank);
    let mut ids: Vec<PeerId> = map.peers().map(|p| p.id.clone()).collect();
    ids.sort_unstable();
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::Side;
    use crate::model::PortRange;

    fn rule(
        action: Action,
        protocol: Protocol,
        ports: Vec<u16>,
        ranges: &[(u32, u32)],
    ) -> IndexedRule {
        IndexedRule {
            policy: 0,
            rule: 0,
            action,
            protocol,
            bidirectional: false,
            ports: PortSpec {
                ports,
                ranges: ranges
                    .iter()
                    .map(|&(start, end)| PortRange { start, end })
                    .collect(),
            },
            sources: Side::default(),
            destinations: Side::default(),
            posture: Vec::new(),
        }
    }

    #[test]
    fn drops_cover_ranges_piece_by_piece() {
        let accept = rule(Action::Accept, Protocol::Tcp, vec![], &[(10, 20)]);
        let low = rule(Action::Drop, Protocol::Tcp, vec![10, 11], &[(12, 15)]);
        let high = rule(Action::Drop, Protocol::Tcp, vec![], &[(17, 30)]);
        let sixteen = rule(Action::Drop, Protocol::Tcp, vec![16], &[]);
        assert!(some_query_allowed([&accept, &low, &high].into_iter()));
        assert!(!some_query_allowed(
            [&accept, &low, &high, &sixteen].into_iter()
        ));
        let udp_drop = rule(Action::Drop, Protocol::Udp, vec![], &[]);
        assert!(some_query_allowed([&accept, &udp_drop].into_iter()));
        let drop_all = rule(Action::Drop, Protocol::All, vec![], &[]);
        assert!(!some_query_allowed([&accept, &drop_all].into_iter()));
    }

    #[test]
    fn protocol_all_needs_a_drop_of_all() {
        let accept = rule(Action::Accept, Protocol::All, vec![], &[]);
        let tcp = rule(Action::Drop, Protocol::Tcp, vec![], &[]);
        assert!(some_query_allowed([&accept, &tcp].into_iter()));
        let none: [&IndexedRule; 0] = [];
        assert!(!some_query_allowed(none.into_iter()));
    }
}

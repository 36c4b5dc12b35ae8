//! Who connects with whom, and why: one peer's verdict on every other peer
//! ("why can A reach B?"), and the preview of a policy change (which pairs
//! of peers gain or lose a connection, and the rule that decides it).
//!
//! Two peers connect when they list each other in their network maps: some
//! query between them is allowed, in either direction (see
//! [`crate::policy`] for how rules match and how drops win). The deciding
//! rule of a connected pair is the first accept rule (policies in account
//! order, rules in policy order) that some query passes; a pair that does
//! not connect is decided by the first drop rule that matches it, or by no
//! rule at all. Peers on the same rule sides (groups, direct references
//! and posture results alike) connect alike, so both answers work on
//! classes of peers rather than on pairs: a preview at thousands of peers
//! evaluates each pair of classes once.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::index::{side_id, AccountIndex, IndexedRule, SideId, SideOf};
use crate::model::{Account, Action, PeerId, Policy};
use crate::netmap::reach::Reach;
use crate::policy::{
    first_allowing, peer_rank, unreachable_reason, DecidingRule, Decision, Endpoint, PolicyError,
};
use crate::time::Timestamp;

/// Whether a pair of peers connects, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub connected: bool,
    pub decided_by: Option<DecidingRule>,
    pub reason: String,
}

/// One other peer as a peer sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerVerdict {
    pub peer_id: PeerId,
    pub peer_name: String,
    #[serde(flatten)]
    pub verdict: Verdict,
}

/// A pair whose connection a policy change turns on or off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairChange {
    pub a: PeerId,
    pub a_name: String,
    pub b: PeerId,
    pub b_name: String,
    /// The verdict after the change (`connected`: the pair gains access).
    #[serde(flatten)]
    pub verdict: Verdict,
}

/// What a policy change does to the account's connections.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preview {
    /// Pairs that connect after the change and did not before.
    pub gained: u64,
    /// Pairs that connected before the change and do not after.
    pub lost: u64,
    /// The changed pairs, at most the limit asked for.
    pub pairs: Vec<PairChange>,
    /// More pairs changed than `pairs` lists.
    pub truncated: bool,
}

/// How every other peer of the account stands with `peer_id` at `now`,
/// in the account's peer order.
pub fn explain_peer(
    index: &AccountIndex<'_>,
    peer_id: &str,
    now: Timestamp,
) -> Result<Vec<PeerVerdict>, PolicyError> {
    let me = peer_rank(index, peer_id)?;
    let reach = Reach::new(index, now);
    reach.evaluate_posture();
    let my_sides = reach.member_sides(me);
    let routers = Routers::new(index);
    let mine = unreachable_reason(index, Endpoint::Peer(me), now);
    let mut by_sides: HashMap<Vec<SideId>, Verdict> = HashMap::new();
    let mut out = Vec::with_capacity(index.peer_count().saturating_sub(1));
    for rank in (0..index.peer_count() as u32).filter(|&r| r != me) {
        let peer = index.peer(rank);
        let unreachable = mine
            .clone()
            .or_else(|| unreachable_reason(index, Endpoint::Peer(rank), now));
        let verdict = match unreachable {
            Some(reason) => Verdict {
                connected: false,
                decided_by: None,
                reason,
            },
            None => {
                let by_rules = by_sides
                    .entry(reach.member_sides(rank))
                    .or_insert_with_key(|theirs| pair_verdict(index, &my_sides, theirs))
                    .clone();
                routers.with_routes(&reach, me, rank, || by_rules)
            }
        };
        out.push(PeerVerdict {
            peer_id: peer.id.clone(),
            peer_name: peer.name.clone(),
            verdict,
        });
    }
    Ok(out)
}

/// The pairs of peers that gain or lose a connection when `policy` replaces
/// the account's policy of the same id (or is added, when there is none),
/// listing at most `limit` of them.
pub fn preview_policy(account: &Account, policy: &Policy, now: Timestamp, limit: usize) -> Preview {
    let mut changed = account.clone();
    match changed.policies.iter_mut().find(|p| p.id == policy.id) {
        Some(p) => *p = policy.clone(),
        None => changed.policies.push(policy.clone()),
    }
    let before = AccountIndex::new(account);
    let after = AccountIndex::new(&changed);
    let (reach_before, reach_after) = (Reach::new(&before, now), Reach::new(&after, now));
    reach_before.evaluate_posture();
    reach_after.evaluate_posture();
    // Only peers on a side of the policy (before or after) can change: a
    // rule matches a pair only when both peers are on its sides.
    let of_policy = |index: &AccountIndex<'_>| -> Vec<SideId> {
        index
            .rules()
            .iter()
            .enumerate()
            .filter(|(_, r)| index.policy_at(r.policy).id == policy.id)
            .flat_map(|(i, _)| {
                [SideOf::Sources, SideOf::Destinations].map(|w| side_id(i as u32, w))
            })
            .collect()
    };
    let (touch_before, touch_after) = (of_policy(&before), of_policy(&after));
    // Member ranks per class of peers with the same sides before and after.
    let mut classes: Vec<Vec<u32>> = Vec::new();
    // Routing peers of network resources connect with the resource's
    // clients whatever their sides, so each is a class of its own.
    let (routers_before, routers_after) = (Routers::new(&before), Routers::new(&after));
    let mut class_of: HashMap<ClassKey, usize> = HashMap::new();
    for rank in reach_before.active.iter() {
        let sides = (
            reach_before.member_sides(rank),
            reach_after.member_sides(rank),
        );
        let router = routers_before.routes(rank) || routers_after.routes(rank);
        let touched = router
            || touch_before
                .iter()
                .any(|s| sides.0.binary_search(s).is_ok())
            || touch_after.iter().any(|s| sides.1.binary_search(s).is_ok());
        if !touched {
            continue;
        }
        let next = classes.len();
        let key = (sides.0, sides.1, router.then_some(rank));
        let at = *class_of.entry(key).or_insert(next);
        if at == next {
            classes.push(Vec::new());
        }
        classes[at].push(rank);
    }
    let keys: Vec<&ClassKey> = {
        let mut keys = vec![None; classes.len()];
        for (key, &at) in &class_of {
            keys[at] = Some(key);
        }
        keys.into_iter().flatten().collect()
    };
    let mut preview = Preview {
        gained: 0,
        lost: 0,
        pairs: Vec::new(),
        truncated: false,
    };
    for i in 0..classes.len() {
        for j in i..classes.len() {
            let (a, b) = (classes[i][0], classes[j][0]);
            let was = routers_before.with_routes(&reach_before, a, b, || {
                pair_verdict(&before, &keys[i].0, &keys[j].0)
            });
            let will = routers_after.with_routes(&reach_after, a, b, || {
                pair_verdict(&after, &keys[i].1, &keys[j].1)
            });
            if was.connected == will.connected {
                continue;
            }
            let (ci, cj) = (&classes[i], &classes[j]);
            let count = if i == j {
                (ci.len() as u64) * (ci.len() as u64).saturating_sub(1) / 2
            } else {
                ci.len() as u64 * cj.len() as u64
            };
            if will.connected {
                preview.gained += count;
            } else {
                preview.lost += count;
            }
            let pairs = ci.iter().enumerate().flat_map(|(x, &a)| {
                let others = if i == j { &ci[x + 1..] } else { &cj[..] };
                others.iter().map(move |&b| (a, b))
            });
            for (a, b) in pairs {
                if preview.pairs.len() == limit {
                    preview.truncated = true;
                    break;
                }
                let (pa, pb) = (before.peer(a), before.peer(b));
                preview.pairs.push(PairChange {
                    a: pa.id.clone(),
                    a_name: pa.name.clone(),
                    b: pb.id.clone(),
                    b_name: pb.name.clone(),
                    verdict: will.clone(),
                });
            }
        }
    }
    preview
}

/// The rules that match a connection from a peer on the sides `from` to
/// one on the sides `to`.
fn matching<'r>(
    rules: &'r [IndexedRule],
    from: &'r [SideId],
    to: &'r [SideId],
) -> impl Iterator<Item = &'r IndexedRule> + Clone + 'r {
    let on = |sides: &[SideId], rule: usize, which: SideOf| {
        sides.binary_search(&side_id(rule as u32, which)).is_ok()
    };
    rules.iter().enumerate().filter_map(move |(i, r)| {
        let forward = on(from, i, SideOf::Sources) && on(to, i, SideOf::Destinations);
        let backward =
            r.bidirectional && on(to, i, SideOf::Sources) && on(from, i, SideOf::Destinations);
        (forward || backward).then_some(r)
    })
}

/// A class of peers in a preview: the sides before and after the change,
/// and the peer's rank when it routes a network resource.
type ClassKey = (Vec<SideId>, Vec<SideId>, Option<u32>);

/// The network resources each routing peer serves: a peer sees the routing
/// peers of every resource it may reach, as its map lists them.
struct Routers {
    /// Resource positions per routing peer rank.
    serves: HashMap<u32, Vec<u32>>,
}

impl Routers {
    fn new(index: &AccountIndex<'_>) -> Self {
        let mut serves: HashMap<u32, Vec<u32>> = HashMap::new();
        for (pos, res) in index.account.network_resources.iter().enumerate() {
            if !res.enabled {
                continue;
            }
            for &router in index.network_routers(res.network_id.as_str()) {
                if !index.account.network_routers[router as usize].enabled {
                    continue;
                }
                let mut peers = index.router_peers(router).clone();
                peers.intersect_with(index.approved());
                for rank in peers.iter() {
                    serves.entry(rank).or_default().push(pos as u32);
                }
            }
        }
        Routers { serves }
    }

    fn routes(&self, rank: u32) -> bool {
        self.serves.contains_key(&rank)
    }

    /// Whether one of `a` and `b` routes a resource the other may reach,
    /// as a verdict naming the resource.
    fn routed(&self, reach: &Reach<'_>, a: u32, b: u32) -> Option<Verdict> {
        let index = reach.index;
        [(a, b), (b, a)].into_iter().find_map(|(router, client)| {
            let res = self
                .serves
                .get(&router)?
                .iter()
                .find(|&&res| reach.clients(res).contains(client))?;
            Some(Verdict {
                connected: true,
                decided_by: None,
                reason: format!(
                    "peer {} routes network resource \"{}\" that peer {} may reach",
                    index.peer(router).id,
                    index.resource_at(*res).name,
                    index.peer(client).id
                ),
            })
        })
    }

    /// The rules' verdict on `a` and `b`, unless it is a denial and one of
    /// them routes a resource the other may reach.
    fn with_routes(
        &self,
        reach: &Reach<'_>,
        a: u32,
        b: u32,
        by_rules: impl FnOnce() -> Verdict,
    ) -> Verdict {
        let verdict = by_rules();
        if verdict.connected {
            return verdict;
        }
        self.routed(reach, a, b).unwrap_or(verdict)
    }
}

/// The verdict between two active peers on the rule sides `a` and `b`
/// (sorted side ids, source sides already filtered by posture).
fn pair_verdict(index: &AccountIndex<'_>, a: &[SideId], b: &[SideId]) -> Verdict {
    let rules = index.rules();
    let direction = |from, to| matching(rules, from, to);
    let allowing = first_allowing(direction(a, b)).or_else(|| first_allowing(direction(b, a)));
    let dropping = || {
        direction(a, b)
            .chain(direction(b, a))
            .filter(|r| r.action == Action::Drop)
            .min_by_key(|r| (r.policy, r.rule))
    };
    match allowing.or_else(dropping) {
        Some(rule) => {
            let decision = Decision::by(index, rule);
            Verdict {
                connected: decision.allowed,
                decided_by: decision.decided_by,
                reason: decision.reason,
            }
        }
        None => Verdict {
            connected: false,
            decided_by: None,
            reason: "no enabled policy connects them".to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::generate::bench_account;
    use crate::model::{GroupId, PolicyId, PolicyRule, Protocol, RuleId};
    use crate::policy::accessible_peers;

    const NOW: Timestamp = Timestamp::from_secs(1_750_000_000);

    /// Every connected pair (ids, smaller first), from the peers' maps.
    fn connected_pairs(account: &Account) -> BTreeSet<(PeerId, PeerId)> {
        let index = AccountIndex::new(account);
        let mut pairs = BTreeSet::new();
        for peer in &account.peers {
            for other in accessible_peers(&index, peer.id.as_str(), NOW).unwrap() {
                let pair = if peer.id < other {
                    (peer.id.clone(), other)
                } else {
                    (other, peer.id.clone())
                };
                pairs.insert(pair);
            }
        }
        pairs
    }

    fn group_policy(id: &str, action: Action, from: &str, to: &str) -> Policy {
        Policy {
            id: PolicyId::new(id),
            name: id.to_string(),
            description: String::new(),
            enabled: true,
            source_posture_checks: Vec::new(),
            rules: vec![PolicyRule {
                id: RuleId::new(format!("{id}-rule")),
                name: format!("{id} rule"),
                description: String::new(),
                enabled: true,
                action,
                bidirectional: false,
                protocol: Protocol::Tcp,
                ports: vec!["22".to_string()],
                port_ranges: Vec::new(),
                sources: vec![GroupId::new(from)],
                destinations: vec![GroupId::new(to)],
                source_resource: None,
                destination_resource: None,
            }],
        }
    }

    /// A bench account whose default (all to all) policy is off.
    fn account() -> Account {
        let mut account = bench_account(60, 6, NOW);
        for p in &mut account.policies {
            if p.id.as_str() == "policy-default" {
                p.enabled = false;
            }
        }
        account
    }

    /// The preview's counts and pairs are the difference of the maps.
    fn check_preview(account: &Account, policy: &Policy) -> Preview {
        let preview = preview_policy(account, policy, NOW, usize::MAX);
        let mut changed = account.clone();
        match changed.policies.iter_mut().find(|p| p.id == policy.id) {
            Some(p) => *p = policy.clone(),
            None => changed.policies.push(policy.clone()),
        }
        let (before, after) = (connected_pairs(account), connected_pairs(&changed));
        let gained: BTreeSet<_> = after.difference(&before).cloned().collect();
        let lost: BTreeSet<_> = before.difference(&after).cloned().collect();
        assert_eq!(preview.gained, gained.len() as u64);
        assert_eq!(preview.lost, lost.len() as u64);
        assert!(!preview.truncated);
        let listed: BTreeSet<_> = preview
            .pairs
            .iter()
            .map(|p| {
                let pair = if p.a < p.b {
                    (p.a.clone(), p.b.clone())
                } else {
                    (p.b.clone(), p.a.clone())
                };
                assert_eq!(p.verdict.connected, gained.contains(&pair));
                pair
            })
            .collect();
        assert_eq!(listed, gained.union(&lost).cloned().collect());
        preview
    }

    #[test]
    fn a_new_policy_gains_the_pairs_the_maps_gain() {
        let account = account();
        let policy = group_policy("new", Action::Accept, "group-0", "group-3");
        let preview = check_preview(&account, &policy);
        assert_eq!((preview.gained, preview.lost), (100, 0));
        let decided = preview.pairs[0].verdict.decided_by.as_ref().unwrap();
        assert_eq!(decided.policy_name, "new");
        // Already connected pairs gain nothing.
        let again = group_policy("again", Action::Accept, "group-0", "group-1");
        assert_eq!(check_preview(&account, &again).gained, 0);
    }

    #[test]
    fn disabling_and_dropping_lose_pairs() {
        let mut account = account();
        let mut default = account.policies[0].clone();
        default.enabled = true;
        let preview = check_preview(&account, &default);
        assert!(preview.gained > 0);
        account.policies[0].enabled = true;
        let drop = group_policy("drop", Action::Drop, "group-2", "group-3");
        let mut drop_all = drop.clone();
        drop_all.rules[0].protocol = Protocol::All;
        drop_all.rules[0].ports.clear();
        drop_all.rules[0].bidirectional = true;
        // A drop of one port leaves the pairs connected on others.
        assert_eq!(check_preview(&account, &drop).lost, 0);
        let preview = check_preview(&account, &drop_all);
        assert_eq!(preview.lost, 100);
        // The limit caps the list, not the counts.
        let capped = preview_policy(&account, &drop_all, NOW, 3);
        assert_eq!(
            (capped.lost, capped.pairs.len(), capped.truncated),
            (100, 3, true)
        );
    }

    #[test]
    fn a_resource_policy_changes_the_routing_peers_pairs() {
        let account = account();
        let mut off = account
            .policies
            .iter()
            .find(|p| p.id.as_str() == "policy-res-0")
            .unwrap()
            .clone();
        off.enabled = false;
        let preview = check_preview(&account, &off);
        assert!(preview.lost > 0);
    }

    #[test]
    fn a_peer_is_explained_as_its_map_lists_it() {
        let mut account = account();
        account
            .policies
            .push(group_policy("ssh", Action::Accept, "group-0", "group-3"));
        account
            .policies
            .push(group_policy("no", Action::Drop, "group-0", "group-4"));
        let index = AccountIndex::new(&account);
        for peer in ["peer-3", "peer-4", "peer-45"] {
            let listed = accessible_peers(&index, peer, NOW).unwrap();
            let explained = explain_peer(&index, peer, NOW).unwrap();
            assert_eq!(explained.len(), 59);
            for v in &explained {
                assert_eq!(
                    v.verdict.connected,
                    listed.contains(&v.peer_id),
                    "{peer}: {v:?}"
                );
            }
        }
        let reason = |me: &str, id: &str| {
            let explained = explain_peer(&index, me, NOW).unwrap();
            let v = explained.iter().find(|v| v.peer_id.as_str() == id).unwrap();
            v.verdict.reason.clone()
        };
        assert_eq!(
            reason("peer-3", "peer-32"),
            "allowed by policy \"ssh\" rule \"ssh rule\""
        );
        assert_eq!(
            reason("peer-3", "peer-42"),
            "denied by drop rule \"no rule\" of policy \"no\""
        );
        assert_eq!(
            reason("peer-3", "peer-22"),
            "no enabled policy connects them"
        );
        assert_eq!(
            reason("peer-3", "peer-59"),
            "peer peer-59 is waiting for approval"
        );
        assert_eq!(
            reason("peer-4", "peer-45"),
            "peer peer-45 routes network resource \"res-0\" that peer peer-4 may reach"
        );
        assert_eq!(
            explain_peer(&index, "nobody", NOW),
            Err(PolicyError::PeerNotFound("nobody".to_string()))
        );
    }
}

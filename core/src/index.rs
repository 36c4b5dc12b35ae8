//! A read-only index over one [`Account`], built once per account version.
//!
//! The account is stored as plain lists (its JSON form). Deciding access and
//! building network maps needs lookups by id, group membership in both
//! directions and the enabled rules with their sides resolved to positions;
//! doing those scans per peer would make the fan-out quadratic. The index
//! does them once, in time linear in the size of the account, and everything
//! after it works on positions and bit sets.
//!
//! Peers are numbered by *rank*: their position when sorted by IP address
//! (then id). Sets of peers are [`PeerSet`] bit sets over ranks, so iterating
//! a set yields peers in IP order, which is the order maps list them in.
//! Ids that reference nothing (a group listing a deleted peer, a rule naming a
//! deleted group) are ignored.

use std::collections::HashMap;

use crate::model::{
    Account, Action, Group, NetworkResource, Peer, Policy, PolicyRule, PortRange, Protocol,
    ResourceKind, ResourceRef,
};
use crate::validate::rule_port;

/// A set of peers as a bit set over peer ranks.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PeerSet {
    words: Vec<u64>,
}

impl PeerSet {
    /// An empty set able to hold ranks `0..len`.
    pub fn empty(len: usize) -> Self {
        PeerSet {
            words: vec![0; len.div_ceil(64)],
        }
    }

    pub fn insert(&mut self, rank: u32) {
        let (w, b) = (rank as usize / 64, rank % 64);
        if let Some(word) = self.words.get_mut(w) {
            *word |= 1 << b;
        }
    }

    pub fn remove(&mut self, rank: u32) {
        let (w, b) = (rank as usize / 64, rank % 64);
        if let Some(word) = self.words.get_mut(w) {
            *word &= !(1 << b);
        }
    }

    pub fn contains(&self, rank: u32) -> bool {
        let (w, b) = (rank as usize / 64, rank % 64);
        self.words.get(w).is_some_and(|word| word & (1 << b) != 0)
    }

    /// `self |= other`.
    pub fn union_with(&mut self, other: &PeerSet) {
        self.words
            .iter_mut()
            .zip(&other.words)
            .for_each(|(a, b)| *a |= b);
    }

    /// `self &= other`.
    pub fn intersect_with(&mut self, other: &PeerSet) {
        self.words
            .iter_mut()
            .zip(&other.words)
            .for_each(|(a, b)| *a &= b);
    }

    /// `self -= other`.
    pub fn subtract(&mut self, other: &PeerSet) {
        self.words
            .iter_mut()
            .zip(&other.words)
            .for_each(|(a, b)| *a &= !b);
    }

    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|w| *w == 0)
    }

    pub fn len(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Whether every member of `self` is in `other`.
    pub fn is_subset(&self, other: &PeerSet) -> bool {
        self.words
            .iter()
            .zip(other.words.iter().chain(std::iter::repeat(&0)))
            .all(|(a, b)| a & !b == 0)
    }

    pub fn words(&self) -> &[u64] {
        &self.words
    }

    /// Members in rank (IP) order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        iter_words(self.words.iter().copied())
    }
}

/// The set bits of a stream of words, as ranks in ascending order. Lets
/// callers iterate a combination of sets (`a | b & !c`) without building it.
pub fn iter_words(words: impl Iterator<Item = u64>) -> impl Iterator<Item = u32> {
    words.enumerate().flat_map(|(i, mut word)| {
        std::iter::from_fn(move || {
            if word == 0 {
                return None;
            }
            let bit = word.trailing_zeros();
            word &= word - 1;
            Some(i as u32 * 64 + bit)
        })
    })
}

/// The ports of a rule, parsed and sorted. Empty means every port.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PortSpec {
    pub ports: Vec<u16>,
    pub ranges: Vec<PortRange>,
}

impl PortSpec {
    fn of(rule: &PolicyRule) -> Self {
        let mut ports: Vec<u16> = rule
            .ports
            .iter()
            .filter_map(|p| rule_port(p).ok())
            .collect();
        ports.sort_unstable();
        ports.dedup();
        let mut ranges = rule.port_ranges.clone();
        ranges.sort_unstable();
        ranges.dedup();
        PortSpec { ports, ranges }
    }

    /// Whether the rule names no port, i.e. covers every port.
    pub fn is_any(&self) -> bool {
        self.ports.is_empty() && self.ranges.is_empty()
    }

    /// Whether a query for `port` falls under this spec. A rule with ports
    /// matches only a query port inside them; a rule without matches any.
    pub fn matches(&self, port: Option<u16>) -> bool {
        if self.is_any() {
            return true;
        }
        port.is_some_and(|p| self.ports.contains(&p) || self.ranges.iter().any(|r| r.contains(p)))
    }
}

/// One side of a rule with its references resolved.
#[derive(Debug, Clone, Default)]
pub struct Side {
    /// Group positions named by the side.
    pub groups: Vec<u32>,
    /// Network resources on the side: a direct resource reference and the
    /// resources of its groups (resource positions, sorted).
    pub resources: Vec<u32>,
    /// The peers of the side before posture checks and approval: the peers
    /// of its groups plus a directly referenced peer.
    pub peers: PeerSet,
}

/// An enabled rule of an enabled policy, ready for evaluation.
#[derive(Debug, Clone)]
pub struct IndexedRule {
    /// Position of the policy in the account.
    pub policy: u32,
    /// Position of the rule in its policy.
    pub rule: u32,
    pub action: Action,
    /// The protocol as it travels (`netbird-ssh` is TCP).
    pub protocol: Protocol,
    pub bidirectional: bool,
    pub ports: PortSpec,
    pub sources: Side,
    pub destinations: Side,
    /// Posture check positions of the policy; they filter `sources` only.
    pub posture: Vec<u32>,
}

impl IndexedRule {
    /// One side of the rule.
    pub fn side(&self, which: SideOf) -> &Side {
        match which {
            SideOf::Sources => &self.sources,
            SideOf::Destinations => &self.destinations,
        }
    }
}

/// Which side of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SideOf {
    Sources,
    Destinations,
}

/// A rule side as one number: `rule * 2` for sources, `rule * 2 + 1` for
/// destinations.
pub type SideId = u32;

pub fn side_id(rule: u32, which: SideOf) -> SideId {
    rule * 2 + u32::from(which == SideOf::Destinations)
}

pub fn side_parts(side: SideId) -> (u32, SideOf) {
    let which = if side % 2 == 0 {
        SideOf::Sources
    } else {
        SideOf::Destinations
    };
    (side / 2, which)
}

/// Lookups over one account. Borrows the account; rebuild it when the
/// account changes.
#[derive(Debug)]
pub struct AccountIndex<'a> {
    pub account: &'a Account,
    /// Peers in rank order.
    peers: Vec<&'a Peer>,
    peer_rank: HashMap<&'a str, u32>,
    /// `<dns_label>.<dns_domain>` per rank.
    fqdns: Vec<String>,
    /// Peers not waiting for approval.
    approved: PeerSet,
    /// Group positions each peer belongs to, per rank (sorted).
    peer_groups: Vec<Vec<u32>>,
    group_pos: HashMap<&'a str, u32>,
    group_peers: Vec<PeerSet>,
    group_resources: Vec<Vec<u32>>,
    resource_pos: HashMap<&'a str, u32>,
    resource_groups: Vec<Vec<u32>>,
    policy_pos: HashMap<&'a str, u32>,
    posture_pos: HashMap<&'a str, u32>,
    route_pos: HashMap<&'a str, u32>,
    router_pos: HashMap<&'a str, u32>,
    rules: Vec<IndexedRule>,
    /// Rule sides naming each group (per group position, sorted).
    group_sides: Vec<Vec<SideId>>,
    /// Rule sides naming a peer directly (per rank, sorted).
    peer_sides: Vec<Vec<SideId>>,
    /// The routing peers of every route (`peer` plus `peer_groups`).
    route_peers: Vec<PeerSet>,
    /// The high-availability group of every route: routes with the same
    /// network id and the same prefix (or domains) share a number.
    route_ha: Vec<u32>,
    /// The router peers of every network router (`peer` plus `peer_groups`).
    router_peers: Vec<PeerSet>,
    /// Router positions per network id.
    network_routers: HashMap<&'a str, Vec<u32>>,
    /// Resource positions per network id.
    network_resources: HashMap<&'a str, Vec<u32>>,
    /// Prefix length of the account network.
    prefix_len: u8,
}

impl<'a> AccountIndex<'a> {
    pub fn new(account: &'a Account) -> Self {
        let mut order: Vec<&'a Peer> = account.peers.iter().collect();
        order.sort_by(|a, b| a.ip.cmp(&b.ip).then_with(|| a.id.cmp(&b.id)));
        let n = order.len();
        let peer_rank: HashMap<&str, u32> = order
            .iter()
            .enumerate()
            .map(|(i, p)| (p.id.as_str(), i as u32))
            .collect();
        let domain = &account.settings.dns_domain;
        let fqdns = order
            .iter()
            .map(|p| format!("{}.{}", p.dns_label, domain))
            .collect();
        let mut approved = PeerSet::empty(n);
        for (i, p) in order.iter().enumerate() {
            if !p.approval_required {
                approved.insert(i as u32);
            }
        }
        let group_pos = positions(account.groups.iter().map(|g| g.id.as_str()));
        let resource_pos = positions(account.network_resources.iter().map(|r| r.id.as_str()));
        let mut peer_groups = vec![Vec::new(); n];
        let mut group_peers = Vec::with_capacity(account.groups.len());
        let mut group_resources = Vec::with_capacity(account.groups.len());
        let mut resource_groups = vec![Vec::new(); account.network_resources.len()];
        for (g, group) in account.groups.iter().enumerate() {
            let mut set = PeerSet::empty(n);
            for id in &group.peers {
                if let Some(&r) = peer_rank.get(id.as_str()) {
                    if !set.contains(r) {
                        set.insert(r);
                        peer_groups[r as usize].push(g as u32);
                    }
                }
            }
            group_peers.push(set);
            let mut res = resolve_resources(&group.resources, &resource_pos);
            res.sort_unstable();
            res.dedup();
            for &r in &res {
                resource_groups[r as usize].push(g as u32);
            }
            group_resources.push(res);
        }
        let mut index = AccountIndex {
            account,
            peers: order,
            peer_rank,
            fqdns,
            approved,
            peer_groups,
            group_pos,
            group_peers,
            group_resources,
            resource_pos,
            resource_groups,
            policy_pos: positions(account.policies.iter().map(|p| p.id.as_str())),
            posture_pos: positions(account.posture_checks.iter().map(|c| c.id.as_str())),
            route_pos: positions(account.routes.iter().map(|r| r.id.as_str())),
            router_pos: positions(account.network_routers.iter().map(|r| r.id.as_str())),
            rules: Vec::new(),
            group_sides: vec![Vec::new(); account.groups.len()],
            peer_sides: vec![Vec::new(); n],
            route_peers: Vec::new(),
            route_ha: ha_groups(&account.routes),
            router_peers: Vec::new(),
            network_routers: HashMap::new(),
            network_resources: HashMap::new(),
            prefix_len: account
                .settings
                .network_range
                .parse::<ipnet::Ipv4Net>()
                .map(|net| net.prefix_len())
                .unwrap_or(16),
        };
        index.index_rules();
        index.route_peers = account
            .routes
            .iter()
            .map(|r| index.peers_of(r.peer.as_ref().map(|p| p.as_str()), &r.peer_groups))
            .collect();
        index.router_peers = account
            .network_routers
            .iter()
            .map(|r| index.peers_of(r.peer.as_ref().map(|p| p.as_str()), &r.peer_groups))
            .collect();
        for (i, r) in account.network_routers.iter().enumerate() {
            index
                .network_routers
                .entry(r.network_id.as_str())
                .or_default()
                .push(i as u32);
        }
        for (i, r) in account.network_resources.iter().enumerate() {
            index
                .network_resources
                .entry(r.network_id.as_str())
                .or_default()
                .push(i as u32);
        }
        index
    }

    /// Resolves the enabled rules of enabled policies, in account order.
    fn index_rules(&mut self) {
        let account = self.account;
        for (p, policy) in account.policies.iter().enumerate() {
            if !policy.enabled {
                continue;
            }
            let posture: Vec<u32> = policy
                .source_posture_checks
                .iter()
                .filter_map(|id| self.posture_pos.get(id.as_str()).copied())
                .collect();
            for (r, rule) in policy.rules.iter().enumerate() {
                if !rule.enabled {
                    continue;
                }
                let pos = self.rules.len() as u32;
                let sources = self.side(&rule.sources, rule.source_resource.as_ref());
                let destinations =
                    self.side(&rule.destinations, rule.destination_resource.as_ref());
                for (which, side) in [
                    (SideOf::Sources, &sources),
                    (SideOf::Destinations, &destinations),
                ] {
                    let id = side_id(pos, which);
                    for &g in &side.groups {
                        self.group_sides[g as usize].push(id);
                    }
                    let direct = match which {
                        SideOf::Sources => rule.source_resource.as_ref(),
                        SideOf::Destinations => rule.destination_resource.as_ref(),
                    };
                    if let Some(rank) = direct.and_then(|d| self.peer_ref(d)) {
                        self.peer_sides[rank as usize].push(id);
                    }
                }
                self.rules.push(IndexedRule {
                    policy: p as u32,
                    rule: r as u32,
                    action: rule.action,
                    protocol: rule.protocol.on_wire(),
                    bidirectional: rule.bidirectional,
                    ports: PortSpec::of(rule),
                    sources,
                    destinations,
                    posture: posture.clone(),
                });
            }
        }
        for sides in self
            .group_sides
            .iter_mut()
            .chain(self.peer_sides.iter_mut())
        {
            sides.sort_unstable();
            sides.dedup();
        }
    }

    /// The rank of the peer a `{"type": "peer"}` reference names.
    fn peer_ref(&self, r: &ResourceRef) -> Option<u32> {
        (r.kind == ResourceKind::Peer)
            .then(|| self.peer_rank.get(r.id.as_str()).copied())
            .flatten()
    }

    fn side(&self, groups: &[crate::model::GroupId], direct: Option<&ResourceRef>) -> Side {
        let mut out = Side {
            groups: groups
                .iter()
                .filter_map(|g| self.group_pos.get(g.as_str()).copied())
                .collect(),
            resources: Vec::new(),
            peers: PeerSet::empty(self.peers.len()),
        };
        out.groups.sort_unstable();
        out.groups.dedup();
        for &g in &out.groups {
            out.peers.union_with(&self.group_peers[g as usize]);
            out.resources
                .extend_from_slice(&self.group_resources[g as usize]);
        }
        if let Some(d) = direct {
            match self.peer_ref(d) {
                Some(rank) => out.peers.insert(rank),
                None => out.resources.extend(resolve_resources(
                    std::slice::from_ref(d),
                    &self.resource_pos,
                )),
            }
        }
        out.resources.sort_unstable();
        out.resources.dedup();
        out
    }

    /// The peers of an optional single peer plus some groups.
    fn peers_of(&self, peer: Option<&str>, groups: &[crate::model::GroupId]) -> PeerSet {
        let mut set = PeerSet::empty(self.peers.len());
        if let Some(rank) = peer.and_then(|p| self.peer_rank.get(p)) {
            set.insert(*rank);
        }
        for g in groups {
            if let Some(&pos) = self.group_pos.get(g.as_str()) {
                set.union_with(&self.group_peers[pos as usize]);
            }
        }
        set
    }

    /// Number of peers.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// The peer at `rank`.
    pub fn peer(&self, rank: u32) -> &'a Peer {
        self.peers[rank as usize]
    }

    /// The rank of a peer id.
    pub fn rank(&self, id: &str) -> Option<u32> {
        self.peer_rank.get(id).copied()
    }

    pub fn fqdn(&self, rank: u32) -> &str {
        &self.fqdns[rank as usize]
    }

    /// Peers not waiting for approval.
    pub fn approved(&self) -> &PeerSet {
        &self.approved
    }

    /// Group positions the peer at `rank` belongs to (sorted).
    pub fn groups_of(&self, rank: u32) -> &[u32] {
        &self.peer_groups[rank as usize]
    }

    pub fn group(&self, id: &str) -> Option<u32> {
        self.group_pos.get(id).copied()
    }

    pub fn group_at(&self, pos: u32) -> &'a Group {
        &self.account.groups[pos as usize]
    }

    /// Positions of the groups among `ids` that exist.
    pub fn group_positions(&self, ids: &[crate::model::GroupId]) -> Vec<u32> {
        let mut out: Vec<u32> = ids.iter().filter_map(|g| self.group(g.as_str())).collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    pub fn group_peers(&self, pos: u32) -> &PeerSet {
        &self.group_peers[pos as usize]
    }

    pub fn resource(&self, id: &str) -> Option<u32> {
        self.resource_pos.get(id).copied()
    }

    pub fn resource_at(&self, pos: u32) -> &'a NetworkResource {
        &self.account.network_resources[pos as usize]
    }

    /// Group positions a resource belongs to.
    pub fn resource_groups(&self, pos: u32) -> &[u32] {
        &self.resource_groups[pos as usize]
    }

    pub fn policy(&self, id: &str) -> Option<&'a Policy> {
        self.policy_pos
            .get(id)
            .map(|&p| &self.account.policies[p as usize])
    }

    pub fn policy_at(&self, pos: u32) -> &'a Policy {
        &self.account.policies[pos as usize]
    }

    pub fn posture_check(&self, id: &str) -> Option<u32> {
        self.posture_pos.get(id).copied()
    }

    pub fn posture_check_at(&self, pos: u32) -> &'a crate::model::PostureCheck {
        &self.account.posture_checks[pos as usize]
    }

    pub fn route(&self, id: &str) -> Option<u32> {
        self.route_pos.get(id).copied()
    }

    pub fn router(&self, id: &str) -> Option<u32> {
        self.router_pos.get(id).copied()
    }

    /// The enabled rules of enabled policies, in account order.
    pub fn rules(&self) -> &[IndexedRule] {
        &self.rules
    }

    /// The account's policy rule behind an indexed rule.
    pub fn policy_rule(&self, rule: &IndexedRule) -> (&'a Policy, &'a PolicyRule) {
        let policy = self.policy_at(rule.policy);
        (policy, &policy.rules[rule.rule as usize])
    }

    /// Rule sides that name group `pos`.
    pub fn group_sides(&self, pos: u32) -> &[SideId] {
        &self.group_sides[pos as usize]
    }

    /// Rule sides that name the peer at `rank` directly.
    pub fn peer_sides(&self, rank: u32) -> &[SideId] {
        &self.peer_sides[rank as usize]
    }

    /// Routing peers of the route at `pos`.
    pub fn route_peers(&self, pos: u32) -> &PeerSet {
        &self.route_peers[pos as usize]
    }

    /// High-availability group of the route at `pos`: routes with the same
    /// number are one network served by several routing peers.
    pub fn route_ha(&self, pos: u32) -> u32 {
        self.route_ha[pos as usize]
    }

    /// Router peers of the network router at `pos`.
    pub fn router_peers(&self, pos: u32) -> &PeerSet {
        &self.router_peers[pos as usize]
    }

    /// Router positions of a network.
    pub fn network_routers(&self, network: &str) -> &[u32] {
        self.network_routers
            .get(network)
            .map_or(&[], |v| v.as_slice())
    }

    /// Resource positions of a network.
    pub fn network_resources(&self, network: &str) -> &[u32] {
        self.network_resources
            .get(network)
            .map_or(&[], |v| v.as_slice())
    }

    /// Prefix length of the account network (16 when it does not parse).
    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }
}

/// Numbers the high-availability groups of `routes`, by position. The key is
/// the network id with what is routed (the prefix, or the domains), as the
/// reference keys its HA groups: two routes sharing a network id but routing
/// different prefixes are separate networks.
fn ha_groups(routes: &[crate::model::Route]) -> Vec<u32> {
    let mut seen: HashMap<(&str, Option<&str>, &[String]), u32> = HashMap::new();
    routes
        .iter()
        .map(|r| {
            let key = (
                r.network_id.as_str(),
                r.network.as_deref(),
                r.domains.as_slice(),
            );
            let next = seen.len() as u32;
            *seen.entry(key).or_insert(next)
        })
        .collect()
}

fn positions<'a>(ids: impl Iterator<Item = &'a str>) -> HashMap<&'a str, u32> {
    let mut map = HashMap::new();
    for (i, id) in ids.enumerate() {
        // The first of two entries with one id wins, as a lookup by id would.
        map.entry(id).or_insert(i as u32);
    }
    map
}

fn resolve_resources(refs: &[ResourceRef], pos: &HashMap<&str, u32>) -> Vec<u32> {
    refs.iter()
        .filter(|r| r.kind != ResourceKind::Peer)
        .filter_map(|r| pos.get(r.id.as_str()).copied())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_set_operations() {
        let mut a = PeerSet::empty(130);
        for r in [0, 5, 64, 129] {
            a.insert(r);
        }
        let mut b = PeerSet::empty(130);
        b.insert(5);
        b.insert(100);
        assert_eq!(a.iter().collect::<Vec<_>>(), vec![0, 5, 64, 129]);
        assert_eq!(a.len(), 4);
        let mut u = a.clone();
        u.union_with(&b);
        assert_eq!(u.iter().collect::<Vec<_>>(), vec![0, 5, 64, 100, 129]);
        let mut i = a.clone();
        i.intersect_with(&b);
        assert_eq!(i.iter().collect::<Vec<_>>(), vec![5]);
        let mut d = a.clone();
        d.subtract(&b);
        assert!(!d.contains(5) && d.contains(129));
        assert!(i.is_subset(&a) && !b.is_subset(&a));
        a.remove(64);
        assert!(!a.contains(64));
        assert!(PeerSet::empty(10).is_empty());
    }

    #[test]
    fn lookups_in_both_directions() {
        use crate::model::{GroupId, PeerId, ResourceId};
        use std::net::Ipv4Addr;
        let mut g = Group::new("g", "g", vec![PeerId::new("b"), PeerId::new("gone")]);
        g.resources = vec![ResourceRef {
            id: ResourceId::new("r"),
            kind: ResourceKind::Host,
        }];
        let account = Account {
            peers: vec![
                Peer::new("b", "b", Ipv4Addr::new(100, 64, 0, 2)),
                Peer::new("a", "a", Ipv4Addr::new(100, 64, 0, 1)),
            ],
            groups: vec![g, Group::new("h", "h", vec![PeerId::new("b")])],
            network_resources: vec![NetworkResource {
                id: ResourceId::new("r"),
                network_id: crate::model::NetworkId::new("n"),
                name: "r".into(),
                description: String::new(),
                address: "10.0.0.1".into(),
                kind: ResourceKind::Host,
                enabled: true,
            }],
            ..Account::default()
        };
        let index = AccountIndex::new(&account);
        // Ranks follow IP order, not list order.
        assert_eq!(index.rank("a"), Some(0));
        assert_eq!(index.peer(1).id.as_str(), "b");
        assert_eq!(index.groups_of(1), &[0, 1]);
        assert!(index.groups_of(0).is_empty());
        // The deleted peer "gone" is ignored.
        assert_eq!(index.group_peers(0).iter().collect::<Vec<_>>(), vec![1]);
        assert_eq!(index.resource_groups(0), &[0]);
        assert_eq!(
            index.group_positions(&[GroupId::new("h"), GroupId::new("x")]),
            vec![1]
        );
        assert_eq!(index.router("none"), None);
    }

    #[test]
    fn port_spec_matching() {
        let any = PortSpec::default();
        assert!(any.matches(None) && any.matches(Some(22)));
        let spec = PortSpec {
            ports: vec![22],
            ranges: vec![PortRange {
                start: 8000,
                end: 8080,
            }],
        };
        assert!(spec.matches(Some(22)) && spec.matches(Some(8080)));
        assert!(!spec.matches(Some(23)) && !spec.matches(None));
    }
}

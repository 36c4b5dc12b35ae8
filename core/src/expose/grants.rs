//! What the reverse proxy may reach: the access an expose session grants.
//!
//! The proxy is a peer of the account (the peers of the account group the
//! server names as its proxy group). It must reach the exposing peer on the
//! exposed port and nothing else, whatever the administrator's policies say.
//! [`grant`] therefore rewrites the account the network maps are computed
//! from:
//!
//! - **Proxy peers are taken out of every group**, so no administrator
//!   policy reaches them — not even the Default All <-> All. Rules that name
//!   a proxy peer as a resource, routes it serves and network routers it is
//!   are dropped as well. A proxy peer with no active session in its account
//!   therefore sees nobody and nobody sees it.
//! - **Each exposing peer gets one synthetic group** (holding only it) and
//!   one synthetic policy with one rule: from a synthetic group of the proxy
//!   peers to it, TCP, on exactly the ports its sessions expose, one-way
//!   (proxy -> target). The target's map gets an IN rule per port from each
//!   proxy; the proxy's map lists the target and an OUT rule per port.
//! - Targets that are not peers of the account, or are proxies themselves,
//!   grant nothing.
//!
//! The synthetic ids start with [`SYNTHETIC_PREFIX`], which the server's
//! generated ids (20 characters of base32hex) never do. The result depends
//! only on the inputs (sorted by peer id and port), so equal inputs give
//! byte-identical maps.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::{
    Account, Action, Group, GroupId, Peer, PeerId, Policy, PolicyId, PolicyRule, Protocol,
    ResourceKind, ResourceRef, RuleId,
};

/// The start of every id [`grant`] invents.
pub const SYNTHETIC_PREFIX: &str = "expose-";
/// The id of the synthetic group of the proxy peers.
pub const PROXY_GROUP_ID: &str = "expose-proxies";

/// One exposed service as the maps see it: the peer and the port the proxy
/// connects to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ExposeTarget {
    pub peer: PeerId,
    pub port: u16,
}

/// `account` as the maps must see it when `proxies` are the account's
/// reverse-proxy peers and `targets` its active sessions (see the module
/// docs for the rule).
pub fn grant(account: &Account, proxies: &[PeerId], targets: &[ExposeTarget]) -> Account {
    let proxies: BTreeSet<&PeerId> = proxies
        .iter()
        .filter(|p| account.peers.iter().any(|q| &q.id == *p))
        .collect();
    let mut out = account.clone();
    if proxies.is_empty() {
        return out;
    }
    isolate(&mut out, &proxies);
    let mut ports: BTreeMap<&PeerId, BTreeSet<u16>> = BTreeMap::new();
    for t in targets {
        let known = account.peers.iter().any(|p| p.id == t.peer);
        if known && !proxies.contains(&t.peer) {
            ports.entry(&t.peer).or_default().insert(t.port);
        }
    }
    if ports.is_empty() {
        return out;
    }
    out.groups.push(Group::new(
        PROXY_GROUP_ID,
        PROXY_GROUP_ID,
        proxies.iter().map(|p| (*p).clone()).collect(),
    ));
    for (peer, ports) in ports {
        let id = format!("{SYNTHETIC_PREFIX}{peer}");
        out.groups
            .push(Group::new(id.clone(), id.clone(), vec![peer.clone()]));
        out.policies.push(policy(&id, ports));
    }
    out
}

/// Takes `proxies` out of every group, rule resource, route and router.
fn isolate(account: &mut Account, proxies: &BTreeSet<&PeerId>) {
    for g in &mut account.groups {
        g.peers.retain(|p| !proxies.contains(p));
    }
    let names_proxy = |r: &Option<ResourceRef>| {
        r.as_ref().is_some_and(|r| {
            r.kind == ResourceKind::Peer && proxies.iter().any(|p| p.as_str() == r.id.as_str())
        })
    };
    for policy in &mut account.policies {
        policy
            .rules
            .retain(|r| !names_proxy(&r.source_resource) && !names_proxy(&r.destination_resource));
    }
    let serves = |p: &Option<PeerId>| p.as_ref().is_some_and(|p| proxies.contains(p));
    account.routes.retain(|r| !serves(&r.peer));
    account.network_routers.retain(|r| !serves(&r.peer));
}

/// The synthetic policy `id`: proxies -> the group `id`, TCP on `ports`.
fn policy(id: &str, ports: BTreeSet<u16>) -> Policy {
    Policy {
        id: PolicyId::new(id),
        name: id.to_string(),
        description: "reverse proxy access of active expose sessions".to_string(),
        enabled: true,
        source_posture_checks: Vec::new(),
        rules: vec![PolicyRule {
            id: RuleId::new(id),
            name: id.to_string(),
            description: String::new(),
            enabled: true,
            action: Action::Accept,
            bidirectional: false,
            protocol: Protocol::Tcp,
            ports: ports.iter().map(u16::to_string).collect(),
            port_ranges: Vec::new(),
            sources: vec![GroupId::new(PROXY_GROUP_ID)],
            destinations: vec![GroupId::new(id)],
            source_resource: None,
            destination_resource: None,
        }],
    }
}

/// The ids of the peers in the group named `name` (the proxy group).
pub fn proxy_peers(account: &Account, name: &str) -> Vec<PeerId> {
    account
        .groups
        .iter()
        .filter(|g| g.name == name)
        .flat_map(|g| g.peers.iter().cloned())
        .filter(|id| account.peers.iter().any(|p: &Peer| &p.id == id))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::AccountIndex;
    use crate::netmap::firewall::Direction;
    use crate::netmap::MapBuilder;
    use crate::time::Timestamp;
    use std::net::Ipv4Addr;

    /// Peers a (exposes), b (bystander) and x (proxy, also in `proxies`);
    /// everyone in All with the Default All <-> All policy.
    fn account() -> Account {
        let peers = vec![
            Peer::new("a", "a", Ipv4Addr::new(100, 64, 0, 1)),
            Peer::new("b", "b", Ipv4Addr::new(100, 64, 0, 2)),
            Peer::new("x", "x", Ipv4Addr::new(100, 64, 0, 3)),
        ];
        let ids: Vec<PeerId> = peers.iter().map(|p| p.id.clone()).collect();
        let all = Group::new("all", "All", ids);
        let proxies = Group::new("gp", "proxies", vec![PeerId::new("x")]);
        let mut default = policy("default", BTreeSet::new());
        default.rules[0].protocol = Protocol::All;
        default.rules[0].bidirectional = true;
        default.rules[0].sources = vec![GroupId::new("all")];
        default.rules[0].destinations = vec![GroupId::new("all")];
        Account {
            peers,
            groups: vec![all, proxies],
            policies: vec![default],
            ..Account::default()
        }
    }

    /// A firewall rule as (direction, protocol, peer ip, port).
    type Rule = (Direction, Protocol, String, Option<u16>);

    /// The peer ids a map lists and its firewall rules.
    fn view(account: &Account, peer: &str) -> (Vec<String>, Vec<Rule>) {
        let index = AccountIndex::new(account);
        let mut maps = MapBuilder::new(&index, Timestamp::from_secs(1));
        let map = maps.map(index.rank(peer).unwrap());
        let peers = map.peers().map(|p| p.id.to_string()).collect();
        let rules = map
            .firewall_rules()
            .map(|r| (r.direction, r.protocol, r.peer_ip.to_string(), r.port))
            .collect();
        (peers, rules)
    }

    #[test]
    fn proxy_reaches_only_the_exposed_port() {
        let acc = account();
        let proxies = proxy_peers(&acc, "proxies");
        assert_eq!(proxies, vec![PeerId::new("x")]);
        let target = ExposeTarget {
            peer: PeerId::new("a"),
            port: 8080,
        };
        let granted = grant(&acc, &proxies, &[target.clone(), target]);

        let (peers, rules) = view(&granted, "a");
        assert_eq!(peers, ["b", "x"]);
        assert!(rules.contains(&(
            Direction::In,
            Protocol::Tcp,
            "100.64.0.3".into(),
            Some(8080)
        )));
        // No OUT rule towards the proxy: the grant is one-way.
        assert!(!rules
            .iter()
            .any(|r| r.0 == Direction::Out && r.2 == "100.64.0.3"));

        let (peers, rules) = view(&granted, "x");
        assert_eq!(peers, ["a"]);
        assert_eq!(
            rules,
            [(
                Direction::Out,
                Protocol::Tcp,
                "100.64.0.1".into(),
                Some(8080)
            )]
        );

        let (peers, rules) = view(&granted, "b");
        assert_eq!(peers, ["a"]);
        assert!(rules.iter().all(|r| r.2 != "100.64.0.3"));
    }

    #[test]
    fn without_sessions_the_proxy_is_alone() {
        let acc = account();
        let granted = grant(&acc, &[PeerId::new("x")], &[]);
        assert_eq!(view(&granted, "x"), (vec![], vec![]));
        assert_eq!(view(&granted, "a").0, ["b"]);
        // Without proxies nothing changes.
        assert_eq!(grant(&acc, &[], &[]), acc);
        // Unknown and proxy targets grant nothing.
        let odd = [
            ExposeTarget {
                peer: PeerId::new("nobody"),
                port: 1,
            },
            ExposeTarget {
                peer: PeerId::new("x"),
                port: 2,
            },
        ];
        assert_eq!(grant(&acc, &[PeerId::new("x")], &odd), granted);
    }

    #[test]
    fn ports_accumulate_and_order_is_deterministic() {
        let acc = account();
        let t = |peer: &str, port| ExposeTarget {
            peer: PeerId::new(peer),
            port,
        };
        let one = grant(
            &acc,
            &[PeerId::new("x")],
            &[t("b", 9000), t("a", 443), t("a", 80)],
        );
        let two = grant(
            &acc,
            &[PeerId::new("x")],
            &[t("a", 80), t("b", 9000), t("a", 443)],
        );
        assert_eq!(one, two);
        let (peers, rules) = view(&one, "x");
        assert_eq!(peers, ["a", "b"]);
        let ports: Vec<Option<u16>> = rules.iter().map(|r| r.3).collect();
        assert_eq!(ports, [Some(80), Some(443), Some(9000)]);
    }
}

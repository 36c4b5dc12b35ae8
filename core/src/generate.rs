//! The benchmark account of `BENCH-ACCOUNT.md`: `N` peers, `G` groups.
//!
//! The same shape the reference uses for its network-map benchmarks, so
//! figures compare side by side. Ids are predictable (`peer-<i>`,
//! `group-<g>`, `policy-default`, `res-<r>`, `posture-check-ver`, ...) so
//! tests and other languages can name things in it. With `G = 0` there are
//! no numbered groups and hence no group rules, routes or resource policies.
//!
//! Where the shape leaves a detail open: route `r` has both a single routing
//! peer and a routing peer group (the map serves it through all of them),
//! network id `route-net-<r>`, metric 9999 and masquerade on; peer keys are
//! the base64 of 32 bytes holding `i` (little endian) and zeros.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::model::{
    Account, AccountId, Action, Checks, Group, GroupId, MinVersionCheck, Nameserver,
    NameserverGroup, NameserverGroupId, Network, NetworkId, NetworkResource, NetworkRouter, Peer,
    PeerId, Policy, PolicyId, PolicyRule, PostureCheck, PostureCheckId, Protocol, ResourceId,
    ResourceKind, ResourceRef, Role, Route, RouteId, RouterId, RuleId, User, UserId, UserStatus,
};
use crate::time::{Duration, Timestamp};

/// Id of the posture check of the resource policies.
pub const POSTURE_CHECK_ID: &str = "posture-check-ver";
/// Id of the `All` group.
pub const ALL_GROUP_ID: &str = "group-all";
/// Id of the user that added every peer.
pub const ADMIN_USER_ID: &str = "user-admin";

/// The benchmark account with `peers` peers and `groups` groups at `now`.
pub fn bench_account(peers: usize, groups: usize, now: Timestamp) -> Account {
    let n = peers;
    let g = groups;
    let mut account = Account {
        id: AccountId::new("account-bench"),
        domain: "bench.example".to_string(),
        serial: 1,
        ..Account::default()
    };
    account.settings.peer_login_expiration_enabled = true;
    account.settings.peer_login_expiration = 3600;
    account.settings.extra.peer_approval_enabled = true;
    account.settings.network_range = if n <= 1 << 16 {
        "100.64.0.0/16".to_string()
    } else {
        "100.64.0.0/10".to_string()
    };
    account.users.push(User {
        id: UserId::new(ADMIN_USER_ID),
        email: "admin@bench.example".to_string(),
        name: "Admin".to_string(),
        role: Role::Admin,
        status: UserStatus::Active,
        auto_groups: Vec::new(),
        is_service_user: false,
        is_blocked: false,
        pending_approval: false,
        last_login: Some(now),
        issued: "api".to_string(),
    });
    account.peers = (0..n).map(|i| bench_peer(i, n, now)).collect();
    let peer_id = |i: usize| PeerId::new(format!("peer-{i}"));
    account.groups.push(Group::new(
        ALL_GROUP_ID,
        crate::model::ALL_GROUP_NAME,
        (0..n).map(peer_id).collect(),
    ));
    let per_group = n.checked_div(g).unwrap_or(0);
    for k in 0..g {
        let members = (k * per_group..(k + 1) * per_group).map(peer_id).collect();
        account
            .groups
            .push(Group::new(group_id(k), group_id(k), members));
    }
    account.posture_checks.push(PostureCheck {
        id: PostureCheckId::new(POSTURE_CHECK_ID),
        name: "Client version".to_string(),
        description: "NetBird version >= 0.26.0".to_string(),
        checks: Checks {
            nb_version_check: Some(MinVersionCheck {
                min_version: "0.26.0".to_string(),
            }),
            ..Checks::default()
        },
    });
    account.policies.push(policy(
        "policy-default",
        "Default-Allow",
        rule("rule-default", Action::Accept, Protocol::All, &[]),
        vec![GroupId::new(ALL_GROUP_ID)],
        vec![GroupId::new(ALL_GROUP_ID)],
    ));
    for k in 0..g {
        let next = (k + 1) % g;
        account.policies.push(policy(
            &format!("policy-group-{k}"),
            &format!("group-{k} to group-{next}"),
            rule(
                &format!("rule-group-{k}"),
                Action::Accept,
                Protocol::Tcp,
                &["8080"],
            ),
            vec![GroupId::new(group_id(k))],
            vec![GroupId::new(group_id(next))],
        ));
    }
    if g >= 2 {
        account.policies.push(policy(
            "policy-drop",
            "Drop postgres",
            rule("rule-drop", Action::Drop, Protocol::Tcp, &["5432"]),
            vec![GroupId::new(group_id(0))],
            vec![GroupId::new(group_id(1))],
        ));
    }
    add_routes(&mut account, n, g);
    add_networks(&mut account, n, g);
    account.nameserver_groups.push(NameserverGroup {
        id: NameserverGroupId::new("ns-main"),
        name: "Main NS".to_string(),
        description: String::new(),
        nameservers: vec![Nameserver {
            ip: "8.8.8.8".to_string(),
            ns_type: "udp".to_string(),
            port: 53,
        }],
        enabled: true,
        groups: vec![GroupId::new(ALL_GROUP_ID)],
        primary: true,
        domains: Vec::new(),
        search_domains_enabled: false,
    });
    account
}

fn group_id(k: usize) -> String {
    format!("group-{k}")
}

/// Peer `i` of `n`: see the module docs and `BENCH-ACCOUNT.md`.
fn bench_peer(i: usize, n: usize, now: Timestamp) -> Peer {
    let ip = std::net::Ipv4Addr::new(
        100,
        (64 + i / 65536) as u8,
        ((i / 256) % 256) as u8,
        (i % 256) as u8,
    );
    let mut peer = Peer::new(format!("peer-{i}"), format!("peer{i}"), ip);
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&(i as u64).to_le_bytes());
    peer.key = STANDARD.encode(key);
    peer.dns_label = format!("peer{i}");
    peer.hostname = format!("peer{i}");
    peer.user_id = Some(UserId::new(ADMIN_USER_ID));
    peer.meta.os = "linux".to_string();
    peer.meta.version = if i % 2 == 0 { "0.40.0" } else { "0.25.0" }.to_string();
    peer.connected = true;
    peer.last_seen = now;
    peer.last_login = now;
    peer.created_at = now;
    if n >= 2 && i == n - 2 {
        peer.login_expiration_enabled = true;
        peer.last_login = now - Duration::from_secs(2 * 3600);
    }
    if i + 1 == n {
        peer.approval_required = true;
    }
    peer
}

fn rule(id: &str, action: Action, protocol: Protocol, ports: &[&str]) -> PolicyRule {
    PolicyRule {
        id: RuleId::new(id),
        name: id.to_string(),
        description: String::new(),
        enabled: true,
        action,
        bidirectional: true,
        protocol,
        ports: ports.iter().map(|p| p.to_string()).collect(),
        port_ranges: Vec::new(),
        sources: Vec::new(),
        destinations: Vec::new(),
        source_resource: None,
        destination_resource: None,
    }
}

fn policy(
    id: &str,
    name: &str,
    mut rule: PolicyRule,
    sources: Vec<GroupId>,
    destinations: Vec<GroupId>,
) -> Policy {
    rule.sources = sources;
    rule.destinations = destinations;
    Policy {
        id: PolicyId::new(id),
        name: name.to_string(),
        description: String::new(),
        enabled: true,
        source_posture_checks: Vec::new(),
        rules: vec![rule],
    }
}

/// `min(G, 20)` routes `10.r.0.0/16` served by peer `N/2 + r` and group
/// `r mod G`, for `All`, access control by group `r mod G`.
fn add_routes(account: &mut Account, n: usize, g: usize) {
    if n == 0 {
        return;
    }
    for r in 0..g.min(20) {
        let group = GroupId::new(group_id(r % g));
        account.routes.push(Route {
            id: RouteId::new(format!("route-{r}")),
            description: String::new(),
            network_id: format!("route-net-{r}"),
            enabled: true,
            peer: Some(PeerId::new(format!("peer-{}", (n / 2 + r).min(n - 1)))),
            peer_groups: vec![group.clone()],
            network: Some(format!("10.{r}.0.0/16")),
            domains: Vec::new(),
            metric: 9999,
            masquerade: true,
            groups: vec![GroupId::new(ALL_GROUP_ID)],
            keep_route: false,
            access_control_groups: vec![group],
        });
    }
}

/// `clamp(G/2, 1, 50)` networks, each with one domain resource, one router
/// peer and (when there are groups) a policy from group `r mod G` to the
/// resource with the version posture check.
fn add_networks(account: &mut Account, n: usize, g: usize) {
    if n == 0 {
        return;
    }
    for r in 0..(g / 2).clamp(1, 50) {
        let network = NetworkId::new(format!("net-{r}"));
        account.networks.push(Network {
            id: network.clone(),
            name: format!("net-{r}"),
            description: String::new(),
        });
        account.network_resources.push(NetworkResource {
            id: ResourceId::new(format!("res-{r}")),
            network_id: network.clone(),
            name: format!("res-{r}"),
            description: String::new(),
            address: format!("svc-{r}.netbird.cloud"),
            kind: ResourceKind::Domain,
            enabled: true,
        });
        account.network_routers.push(NetworkRouter {
            id: RouterId::new(format!("router-{r}")),
            network_id: network,
            peer: Some(PeerId::new(format!("peer-{}", (3 * n / 4 + r).min(n - 1)))),
            peer_groups: Vec::new(),
            metric: 9999,
            masquerade: true,
            enabled: true,
        });
        if g > 0 {
            let mut p = policy(
                &format!("policy-res-{r}"),
                &format!("group-{} to res-{r}", r % g),
                rule(&format!("rule-res-{r}"), Action::Accept, Protocol::All, &[]),
                vec![GroupId::new(group_id(r % g))],
                Vec::new(),
            );
            p.rules[0].destination_resource = Some(ResourceRef {
                id: ResourceId::new(format!("res-{r}")),
                kind: ResourceKind::Domain,
            });
            p.source_posture_checks = vec![PostureCheckId::new(POSTURE_CHECK_ID)];
            account.policies.push(p);
        }
    }
}

/// Attaches the version posture check to `Default-Allow` as well (the third
/// benchmark case).
pub fn with_posture_on_default(mut account: Account) -> Account {
    if let Some(p) = account
        .policies
        .iter_mut()
        .find(|p| p.id.as_str() == "policy-default")
    {
        p.source_posture_checks = vec![PostureCheckId::new(POSTURE_CHECK_ID)];
    }
    account
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_follows_the_spec() {
        let now = Timestamp::from_secs(1_750_000_000);
        let a = bench_account(1000, 50, now);
        assert_eq!(a.peers.len(), 1000);
        assert_eq!(a.peers[300].ip, std::net::Ipv4Addr::new(100, 64, 1, 44));
        assert_eq!(a.peers[3].meta.version, "0.25.0");
        assert!(a.peers[998].login_expired(&a.settings, now));
        assert!(!a.peers[997].login_expired(&a.settings, now));
        assert!(a.peers[999].approval_required);
        assert_eq!(a.groups.len(), 51);
        assert_eq!(a.groups[1].peers.len(), 20);
        assert_eq!(a.groups[2].peers[0].as_str(), "peer-20");
        // Default-Allow, 50 group policies, the drop, 25 resource policies.
        assert_eq!(a.policies.len(), 1 + 50 + 1 + 25);
        assert_eq!(a.routes.len(), 20);
        assert_eq!(
            a.routes[19].peer.as_ref().map(|p| p.as_str()),
            Some("peer-519")
        );
        assert_eq!(a.network_resources.len(), 25);
        assert_eq!(
            a.network_routers[24].peer.as_ref().map(|p| p.as_str()),
            Some("peer-774")
        );
        let big = bench_account(70_000, 100, now);
        assert_eq!(big.peers[65_537].ip, std::net::Ipv4Addr::new(100, 65, 0, 1));
        assert_eq!(big.settings.network_range, "100.64.0.0/10");
    }

    #[test]
    fn posture_on_default() {
        let a = with_posture_on_default(bench_account(10, 2, Timestamp::EPOCH));
        assert_eq!(a.policies[0].source_posture_checks.len(), 1);
        assert!(a.policies[1].source_posture_checks.is_empty());
    }
}

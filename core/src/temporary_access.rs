//! Temporary access peers (`POST /api/peers/{id}/temporary-access`): a peer
//! created by an administrator for a client that is not a daemon (a browser
//! session, say), which may reach one target peer and nothing else.
//!
//! As in the reference, the peer is ephemeral (the server deletes it once it
//! has been offline for the ephemeral period, also when it never connects),
//! needs no approval (an administrator asked for it), joins no group (not
//! even `All`, so no group policy applies to it), and gets one policy per
//! access rule whose source is the new peer and whose destination is the
//! target peer, both named as peer resources. When either peer is deleted
//! the rules naming it go too ([`forget_peer`]), and so do policies left
//! with no rule.

use rand_core::RngCore;
use thiserror::Error;

use crate::error::{ErrorCode, Kind};
use crate::model::{
    Account, Action, Peer, PeerId, Policy, PolicyId, PolicyRule, PortRange, Protocol, ResourceKind,
    ResourceRef, RuleId,
};
use crate::registration::{self, RegistrationError};
use crate::time::Timestamp;

/// Why a temporary access peer cannot be created.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TemporaryAccessError {
    #[error("peer name shouldn't be empty")]
    EmptyName,
    #[error("at least one access rule is required")]
    NoRules,
    #[error(
        "invalid rule \"{0}\": expected all, icmp, or tcp/udp followed by /port or /start-end"
    )]
    RuleFormat(String),
    #[error("invalid rule \"{0}\": protocol must be all, icmp, tcp or udp")]
    RuleProtocol(String),
    #[error("invalid rule \"{0}\": ports must be between 1 and 65535, start not above end")]
    RulePorts(String),
    #[error(transparent)]
    Registration(#[from] RegistrationError),
}

impl ErrorCode for TemporaryAccessError {
    fn code(&self) -> &'static str {
        match self {
            TemporaryAccessError::EmptyName => "empty_peer_name",
            TemporaryAccessError::NoRules => "no_access_rules",
            TemporaryAccessError::RuleFormat(_)
            | TemporaryAccessError::RuleProtocol(_)
            | TemporaryAccessError::RulePorts(_) => "invalid_access_rule",
            TemporaryAccessError::Registration(e) => e.code(),
        }
    }

    fn kind(&self) -> Kind {
        match self {
            TemporaryAccessError::Registration(e) => e.kind(),
            _ => Kind::InvalidArgument,
        }
    }
}

/// One access rule: a protocol and, for tcp/udp, the ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccessRule {
    pub protocol: Protocol,
    pub ports: Option<PortRange>,
}

/// Parses `all`, `icmp`, `tcp/80`, `udp/1000-2000` (case and surrounding
/// spaces ignored).
pub fn parse_rule(text: &str) -> Result<AccessRule, TemporaryAccessError> {
    let rule = text.trim().to_ascii_lowercase();
    let format = || TemporaryAccessError::RuleFormat(text.to_string());
    let bad_ports = || TemporaryAccessError::RulePorts(text.to_string());
    match rule.as_str() {
        "all" => {
            return Ok(AccessRule {
                protocol: Protocol::All,
                ports: None,
            })
        }
        "icmp" => {
            return Ok(AccessRule {
                protocol: Protocol::Icmp,
                ports: None,
            })
        }
        _ => {}
    }
    let (protocol, ports) = rule.split_once('/').ok_or_else(format)?;
    let protocol = match protocol.trim() {
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        "all" | "icmp" => return Err(format()),
        _ => return Err(TemporaryAccessError::RuleProtocol(text.to_string())),
    };
    let port = |s: &str| {
        s.trim()
            .parse::<u32>()
            .ok()
            .filter(|p| (1..=65535).contains(p))
            .ok_or_else(bad_ports)
    };
    let range = match ports.split_once('-') {
        Some((start, end)) => PortRange {
            start: port(start)?,
            end: port(end)?,
        },
        None => {
            let p = port(ports)?;
            PortRange { start: p, end: p }
        }
    };
    if range.start > range.end {
        return Err(bad_ports());
    }
    Ok(AccessRule {
        protocol,
        ports: Some(range),
    })
}

/// What the shell persists: the peer and its policies.
#[derive(Debug, Clone, PartialEq)]
pub struct TemporaryAccess {
    pub peer: Peer,
    pub policies: Vec<Policy>,
}

/// The request, as the REST API sends it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub name: &'a str,
    pub wg_pub_key: &'a str,
    pub rules: &'a [String],
}

fn peer_ref(id: &PeerId) -> ResourceRef {
    ResourceRef {
        id: crate::model::ResourceId::new(id.as_str()),
        kind: ResourceKind::Peer,
    }
}

/// A temporary access peer of `account` for `target`, with id `peer_id`
/// and policy ids drawn from `new_id`.
pub fn create(
    account: &Account,
    target: &Peer,
    request: Request<'_>,
    peer_id: PeerId,
    mut new_id: impl FnMut() -> String,
    now: Timestamp,
    rng: &mut impl RngCore,
) -> Result<TemporaryAccess, TemporaryAccessError> {
    let name = request.name.trim();
    if name.is_empty() {
        return Err(TemporaryAccessError::EmptyName);
    }
    if request.rules.is_empty() {
        return Err(TemporaryAccessError::NoRules);
    }
    let rules = request
        .rules
        .iter()
        .map(|r| parse_rule(r))
        .collect::<Result<Vec<_>, _>>()?;
    registration::check_new_key(account, request.wg_pub_key)?;
    let peer = registration::new_peer(account, peer_id, name, request.wg_pub_key, true, now, rng)?;
    let title = format!("Temporary access policy for peer {name}");
    let policies = rules
        .iter()
        .map(|rule| Policy {
            id: PolicyId::new(new_id()),
            name: title.clone(),
            description: title.clone(),
            enabled: true,
            source_posture_checks: Vec::new(),
            rules: vec![PolicyRule {
                id: RuleId::new(new_id()),
                name: "Temporary access rule".to_string(),
                description: "Temporary access rule".to_string(),
                enabled: true,
                action: Action::Accept,
                bidirectional: false,
                protocol: rule.protocol,
                ports: Vec::new(),
                port_ranges: rule.ports.into_iter().collect(),
                sources: Vec::new(),
                destinations: Vec::new(),
                source_resource: Some(peer_ref(&peer.id)),
                destination_resource: Some(peer_ref(&target.id)),
            }],
        })
        .collect();
    Ok(TemporaryAccess { peer, policies })
}

/// What deleting a peer does to the policies: the rules naming it as a
/// resource go; `changed` policies keep other rules, `removed` ones had
/// none left.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Forgotten {
    pub changed: Vec<Policy>,
    pub removed: Vec<Policy>,
}

/// The policies of `policies` that name `peer` as a rule's resource, without
/// those rules.
pub fn forget_peer(policies: &[Policy], peer: &PeerId) -> Forgotten {
    let names = |r: &Option<ResourceRef>| {
        r.as_ref()
            .is_some_and(|r| r.kind == ResourceKind::Peer && r.id.as_str() == peer.as_str())
    };
    let mut out = Forgotten::default();
    for policy in policies {
        let mut kept = policy.clone();
        kept.rules
            .retain(|r| !names(&r.source_resource) && !names(&r.destination_resource));
        if kept.rules.len() == policy.rules.len() {
            continue;
        }
        if kept.rules.is_empty() {
            out.removed.push(policy.clone());
        } else {
            out.changed.push(kept);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::bench_account;
    use crate::validate;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    const KEY: &str = "jGYxw1lJ8Y9qv9Xn2QH1eFv6yBZ2b3n0S5bWv8m3Jx4=";

    #[test]
    fn rules_parse_as_the_reference_writes_them() {
        let tcp80 = AccessRule {
            protocol: Protocol::Tcp,
            ports: Some(PortRange { start: 80, end: 80 }),
        };
        assert_eq!(parse_rule("tcp/80"), Ok(tcp80));
        assert_eq!(parse_rule(" TCP/80 "), Ok(tcp80));
        assert_eq!(
            parse_rule("udp/1000-2000").map(|r| r.ports),
            Ok(Some(PortRange {
                start: 1000,
                end: 2000
            }))
        );
        assert_eq!(parse_rule("all").map(|r| r.protocol), Ok(Protocol::All));
        assert_eq!(parse_rule("icmp").map(|r| r.ports), Ok(None));
        for bad in ["tcp", "80", "", "icmp/8"] {
            assert!(
                matches!(parse_rule(bad), Err(TemporaryAccessError::RuleFormat(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            parse_rule("sctp/80"),
            Err(TemporaryAccessError::RuleProtocol(_))
        ));
        for bad in [
            "tcp/0",
            "tcp/65536",
            "tcp/x",
            "udp/20-10",
            "tcp/1-",
            "tcp/-5",
        ] {
            assert!(
                matches!(parse_rule(bad), Err(TemporaryAccessError::RulePorts(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_peer_reaches_the_target_only_through_valid_policies() {
        let account = bench_account(20, 4, Timestamp::EPOCH);
        let target = &account.peers[3];
        let rules = ["tcp/22".to_string(), "udp/5000-5010".to_string()];
        let mut n = 0;
        let access = create(
            &account,
            target,
            Request {
                name: " temp-host ",
                wg_pub_key: KEY,
                rules: &rules,
            },
            PeerId::new("tmp"),
            || {
                n += 1;
                format!("id{n}")
            },
            Timestamp::from_millis(5),
            &mut ChaCha8Rng::seed_from_u64(7),
        )
        .unwrap();
        assert!(access.peer.ephemeral);
        assert_eq!(access.peer.name, "temp-host");
        assert_eq!(access.peer.last_seen, Timestamp::from_millis(5));
        assert!(account.peers.iter().all(|p| p.ip != access.peer.ip));
        assert_eq!(access.policies.len(), 2);
        for p in &access.policies {
            validate::policy(p).unwrap();
            let rule = &p.rules[0];
            assert!(!rule.bidirectional);
            assert_eq!(rule.source_resource, Some(peer_ref(&access.peer.id)));
            assert_eq!(rule.destination_resource, Some(peer_ref(&target.id)));
        }
    }

    #[test]
    fn bad_requests_are_refused() {
        let account = bench_account(5, 2, Timestamp::EPOCH);
        let target = &account.peers[0];
        let one = ["tcp/80".to_string()];
        let attempt = |name: &str, key: &str, rules: &[String]| {
            create(
                &account,
                target,
                Request {
                    name,
                    wg_pub_key: key,
                    rules,
                },
                PeerId::new("tmp"),
                || "x".to_string(),
                Timestamp::EPOCH,
                &mut ChaCha8Rng::seed_from_u64(7),
            )
            .map(|_| ())
        };
        assert_eq!(
            attempt(" ", KEY, &one),
            Err(TemporaryAccessError::EmptyName)
        );
        assert_eq!(attempt("t", KEY, &[]), Err(TemporaryAccessError::NoRules));
        assert_eq!(
            attempt("t", "short", &one),
            Err(TemporaryAccessError::Registration(
                RegistrationError::BadWireGuardKey
            ))
        );
        assert_eq!(
            attempt("t", &target.key, &one),
            Err(TemporaryAccessError::Registration(
                RegistrationError::AlreadyRegistered
            ))
        );
    }

    #[test]
    fn deleting_a_peer_drops_the_rules_naming_it() {
        let rule = |src: &str| PolicyRule {
            id: RuleId::new(src),
            name: src.to_string(),
            description: String::new(),
            enabled: true,
            action: Action::Accept,
            bidirectional: false,
            protocol: Protocol::All,
            ports: Vec::new(),
            port_ranges: Vec::new(),
            sources: Vec::new(),
            destinations: Vec::new(),
            source_resource: Some(peer_ref(&PeerId::new(src))),
            destination_resource: Some(peer_ref(&PeerId::new("target"))),
        };
        let policy = |id: &str, rules: Vec<PolicyRule>| Policy {
            id: PolicyId::new(id),
            name: id.to_string(),
            description: String::new(),
            enabled: true,
            source_posture_checks: Vec::new(),
            rules,
        };
        let policies = vec![
            policy("only", vec![rule("tmp")]),
            policy("mixed", vec![rule("tmp"), rule("other")]),
            policy("unrelated", vec![rule("other")]),
        ];
        let gone = forget_peer(&policies, &PeerId::new("tmp"));
        assert_eq!(gone.removed, vec![policies[0].clone()]);
        assert_eq!(gone.changed, vec![policy("mixed", vec![rule("other")])]);
        let target_gone = forget_peer(&policies, &PeerId::new("target"));
        assert_eq!(target_gone.removed.len(), 3);
        assert_eq!(
            forget_peer(&policies, &PeerId::new("nobody")),
            Forgotten::default()
        );
    }
}

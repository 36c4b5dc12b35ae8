//! Validation of user input, with the exact messages of `SEMANTICS.md`.
//!
//! Validated values are newtypes ([`NamePrefix`], [`Port`], [`Pin`],
//! [`Password`], [`ExposeProtocol`], [`Domain`], [`Cidr`]): once one exists it
//! is valid, so code further in never re-checks.

use std::fmt;
use std::str::FromStr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::error::{ErrorCode, Kind};
use crate::limits;
use crate::model::account::{MAX_LOGIN_EXPIRATION_SECS, MIN_LOGIN_EXPIRATION_SECS};
use crate::model::{AccountSettings, Policy, PolicyRule};

/// A validation failure.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ValidationError {
    #[error("invalid name prefix \"{0}\": must be lowercase alphanumeric with optional hyphens, 1-32 characters")]
    InvalidNamePrefix(String),
    #[error("invalid pin: must be exactly 6 digits")]
    InvalidPin,
    #[error("password cannot be empty")]
    EmptyPassword,
    #[error("invalid port number: must be between 1 and 65535")]
    InvalidPort,
    #[error("unsupported protocol")]
    UnsupportedProtocol(String),
    #[error("user groups cannot be empty")]
    EmptyUserGroups,
    #[error("invalid domain \"{0}\": must be a DNS name of labels a-z, 0-9 and hyphens, at most 253 characters")]
    InvalidDomain(String),
    #[error("invalid CIDR \"{0}\": must be an IPv4 prefix such as 10.0.0.0/24")]
    InvalidCidr(String),
    #[error("invalid DNS label \"{0}\": must be 1-63 characters of a-z, 0-9 and hyphens, not starting or ending with a hyphen")]
    InvalidDnsLabel(String),
    #[error("specify either sources or source resources, not both")]
    SourcesAndSourceResource,
    #[error("specify either destinations or destination resources, not both")]
    DestinationsAndDestinationResource,
    #[error("for ALL or ICMP protocol ports is not allowed")]
    PortsNotAllowed,
    #[error("specify either individual ports or port ranges, not both")]
    PortsAndPortRanges,
    #[error("valid port value is in 1..65535 range")]
    InvalidRulePort,
    #[error("invalid port range {0}-{1}: start must not be greater than end")]
    InvalidPortRange(u32, u32),
    #[error("policy must have at least one rule")]
    NoRules,
    #[error("rule \"{0}\" must have a source")]
    NoSource(String),
    #[error("rule \"{0}\" must have a destination")]
    NoDestination(String),
    #[error("{field} is too long: at most {max} characters")]
    TooLong { field: &'static str, max: usize },
    #[error("too many {field}: at most {max}")]
    TooMany { field: &'static str, max: usize },
    #[error("network range {0} must be inside 100.64.0.0/10, 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16")]
    NetworkRangeNotPrivate(String),
    #[error("network range {range} is too small: it has room for {room} peers and the account has {peers}")]
    NetworkRangeTooSmall {
        range: String,
        room: u64,
        peers: u64,
    },
    #[error("peer login expiration can't be smaller than one hour")]
    LoginExpirationTooShort,
    #[error("peer login expiration can't be larger than 180 days")]
    LoginExpirationTooLong,
    #[error("peer inactivity expiration must be between 0 and 180 days")]
    InactivityExpirationOutOfRange,
}

impl ErrorCode for ValidationError {
    fn code(&self) -> &'static str {
        match self {
            ValidationError::InvalidNamePrefix(_) => "invalid_name_prefix",
            ValidationError::InvalidPin => "invalid_pin",
            ValidationError::EmptyPassword => "empty_password",
            ValidationError::InvalidPort => "invalid_port",
            ValidationError::UnsupportedProtocol(_) => "unsupported_protocol",
            ValidationError::EmptyUserGroups => "empty_user_groups",
            ValidationError::InvalidDomain(_) => "invalid_domain",
            ValidationError::InvalidCidr(_) => "invalid_cidr",
            ValidationError::InvalidDnsLabel(_) => "invalid_dns_label",
            ValidationError::SourcesAndSourceResource => "sources_and_source_resource",
            ValidationError::DestinationsAndDestinationResource => {
                "destinations_and_destination_resource"
            }
            ValidationError::PortsNotAllowed => "ports_not_allowed",
            ValidationError::PortsAndPortRanges => "ports_and_port_ranges",
            ValidationError::InvalidRulePort => "invalid_rule_port",
            ValidationError::InvalidPortRange(..) => "invalid_port_range",
            ValidationError::NoRules => "no_rules",
            ValidationError::NoSource(_) => "no_source",
            ValidationError::NoDestination(_) => "no_destination",
            ValidationError::TooLong { .. } => "too_long",
            ValidationError::TooMany { .. } => "too_many",
            ValidationError::NetworkRangeNotPrivate(_) => "network_range_not_private",
            ValidationError::NetworkRangeTooSmall { .. } => "network_range_too_small",
            ValidationError::LoginExpirationTooShort => "login_expiration_too_short",
            ValidationError::LoginExpirationTooLong => "login_expiration_too_long",
            ValidationError::InactivityExpirationOutOfRange => "inactivity_expiration_out_of_range",
        }
    }

    fn kind(&self) -> Kind {
        Kind::InvalidArgument
    }
}

/// Implements `Display`, `FromStr`, `TryFrom<String>` and the serde traits
/// (as a string) for a validated string newtype whose checker is `$check`.
macro_rules! validated_string {
    ($name:ident, $check:path) => {
        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = ValidationError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $check(s).map(|()| $name(s.to_string()))
            }
        }

        impl TryFrom<String> for $name {
            type Error = ValidationError;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                $check(&s).map(|()| $name(s))
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                $name::try_from(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

/// A service-name prefix: `^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NamePrefix(String);
validated_string!(NamePrefix, check_name_prefix);

fn check_name_prefix(p: &str) -> Result<(), ValidationError> {
    let b = p.as_bytes();
    let inner_ok = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-';
    let edge_ok = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let ok = (1..=32).contains(&b.len())
        && b.iter().all(inner_ok)
        && b.first().is_some_and(edge_ok)
        && b.last().is_some_and(edge_ok);
    if ok {
        Ok(())
    } else {
        Err(ValidationError::InvalidNamePrefix(p.to_string()))
    }
}

/// A PIN: exactly six ASCII digits.
#[derive(Clone, PartialEq, Eq)]
pub struct Pin(String);
validated_string!(Pin, check_pin);

impl fmt::Debug for Pin {
    // A PIN is a secret: never print it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin(******)")
    }
}

fn check_pin(p: &str) -> Result<(), ValidationError> {
    if p.len() == 6 && p.bytes().all(|c| c.is_ascii_digit()) {
        Ok(())
    } else {
        Err(ValidationError::InvalidPin)
    }
}

/// A password: any non-empty string.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);
validated_string!(Password, check_password);

impl fmt::Debug for Password {
    // A password is a secret: never print it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(******)")
    }
}

fn check_password(p: &str) -> Result<(), ValidationError> {
    if p.is_empty() {
        Err(ValidationError::EmptyPassword)
    } else {
        Ok(())
    }
}

/// A DNS domain name (lower case, no trailing dot; `*.` allowed in front).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Domain(String);
validated_string!(Domain, check_domain);

fn check_domain(d: &str) -> Result<(), ValidationError> {
    let err = || ValidationError::InvalidDomain(d.to_string());
    let body = d.strip_prefix("*.").unwrap_or(d);
    if body.is_empty() || d.len() > 253 {
        return Err(err());
    }
    let labels: Vec<&str> = body.split('.').collect();
    if labels.len() < 2 || !labels.iter().all(|l| is_dns_label(l)) {
        return Err(err());
    }
    // The top-level label is never all digits (that would be an IP address).
    if labels
        .last()
        .is_some_and(|l| l.bytes().all(|c| c.is_ascii_digit()))
    {
        return Err(err());
    }
    Ok(())
}

/// Whether `l` is one DNS label: 1–63 of `a-z0-9-`, no hyphen at either end.
pub fn is_dns_label(l: &str) -> bool {
    let b = l.as_bytes();
    (1..=63).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// Checks one DNS label.
pub fn dns_label(l: &str) -> Result<(), ValidationError> {
    if is_dns_label(l) {
        Ok(())
    } else {
        Err(ValidationError::InvalidDnsLabel(l.to_string()))
    }
}

/// An IPv4 prefix in CIDR form. A bare address is not accepted here; see
/// [`Cidr::parse_host_or_cidr`] for inputs where `1.1.1.1` means `/32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr(pub Ipv4Net);

impl Cidr {
    /// `1.1.1.1` as `1.1.1.1/32`, or any CIDR.
    pub fn parse_host_or_cidr(s: &str) -> Result<Cidr, ValidationError> {
        if let Ok(ip) = s.parse::<std::net::Ipv4Addr>() {
            return Ok(Cidr(Ipv4Net::from(ip)));
        }
        s.parse()
    }

    pub fn contains(&self, ip: std::net::Ipv4Addr) -> bool {
        self.0.contains(&ip)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for Cidr {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // ipnet accepts only canonical dotted quads with a /len suffix.
        if !s.contains('/') {
            return Err(ValidationError::InvalidCidr(s.to_string()));
        }
        s.parse::<Ipv4Net>()
            .map(Cidr)
            .map_err(|_| ValidationError::InvalidCidr(s.to_string()))
    }
}

impl Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// A TCP/UDP port, 1–65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Port(u16);

impl Port {
    pub fn get(self) -> u16 {
        self.0
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl TryFrom<i64> for Port {
    type Error = ValidationError;
    fn try_from(n: i64) -> Result<Self, Self::Error> {
        match u16::try_from(n) {
            Ok(p) if p >= 1 => Ok(Port(p)),
            _ => Err(ValidationError::InvalidPort),
        }
    }
}

impl FromStr for Port {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || s.len() > 5 || !s.bytes().all(|c| c.is_ascii_digit()) {
            return Err(ValidationError::InvalidPort);
        }
        s.parse::<i64>()
            .map_err(|_| ValidationError::InvalidPort)
            .and_then(Port::try_from)
    }
}

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = i64::deserialize(d)?;
        Port::try_from(n).map_err(serde::de::Error::custom)
    }
}

/// The protocols a peer may expose: the seeds allow HTTP and HTTPS only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExposeProtocol {
    #[default]
    Http,
    Https,
}

impl ExposeProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            ExposeProtocol::Http => "http",
            ExposeProtocol::Https => "https",
        }
    }
}

impl FromStr for ExposeProtocol {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "http" => Ok(ExposeProtocol::Http),
            "https" => Ok(ExposeProtocol::Https),
            other => Err(ValidationError::UnsupportedProtocol(other.to_string())),
        }
    }
}

/// Checks a rule port given as text (`"80"`).
pub fn rule_port(s: &str) -> Result<u16, ValidationError> {
    match s.parse::<u32>() {
        Ok(p) if (1..=65535).contains(&p) => Ok(p as u16),
        _ => Err(ValidationError::InvalidRulePort),
    }
}

/// Checks one rule: sizes, sides, protocol/port combinations, port values.
pub fn policy_rule(rule: &PolicyRule) -> Result<(), ValidationError> {
    limits::name("rule name", &rule.name)?;
    limits::description("rule description", &rule.description)?;
    limits::items("sources", &rule.sources)?;
    limits::items("destinations", &rule.destinations)?;
    limits::count(
        "ports and port ranges",
        rule.ports.len() + rule.port_ranges.len(),
        limits::MAX_PORTS,
    )?;
    if !rule.sources.is_empty() && rule.source_resource.is_some() {
        return Err(ValidationError::SourcesAndSourceResource);
    }
    if !rule.destinations.is_empty() && rule.destination_resource.is_some() {
        return Err(ValidationError::DestinationsAndDestinationResource);
    }
    if rule.sources.is_empty() && rule.source_resource.is_none() {
        return Err(ValidationError::NoSource(rule.name.clone()));
    }
    if rule.destinations.is_empty() && rule.destination_resource.is_none() {
        return Err(ValidationError::NoDestination(rule.name.clone()));
    }
    let has_ports = !rule.ports.is_empty() || !rule.port_ranges.is_empty();
    if has_ports && !rule.protocol.has_ports() {
        return Err(ValidationError::PortsNotAllowed);
    }
    if !rule.ports.is_empty() && !rule.port_ranges.is_empty() {
        return Err(ValidationError::PortsAndPortRanges);
    }
    for p in &rule.ports {
        rule_port(p)?;
    }
    for r in &rule.port_ranges {
        if !(1..=65535).contains(&r.start) || !(1..=65535).contains(&r.end) {
            return Err(ValidationError::InvalidRulePort);
        }
        if r.start > r.end {
            return Err(ValidationError::InvalidPortRange(r.start, r.end));
        }
    }
    Ok(())
}

/// Checks a whole policy: sizes, at least one rule, and every rule.
pub fn policy(p: &Policy) -> Result<(), ValidationError> {
    limits::name("policy name", &p.name)?;
    limits::description("policy description", &p.description)?;
    limits::items("source posture checks", &p.source_posture_checks)?;
    if p.rules.is_empty() {
        return Err(ValidationError::NoRules);
    }
    limits::count("rules", p.rules.len(), limits::MAX_RULES)?;
    p.rules.iter().try_for_each(policy_rule)
}

/// The user groups of an expose request (`--with-user-groups`): a non-empty
/// list of names, none blank; answers the names trimmed. The one rule for
/// the CLI, the daemon, the management server and the JSON API.
pub fn user_groups(groups: &[String]) -> Result<Vec<String>, ValidationError> {
    let trimmed: Vec<String> = groups.iter().map(|g| g.trim().to_string()).collect();
    if trimmed.is_empty() || trimmed.iter().any(String::is_empty) {
        return Err(ValidationError::EmptyUserGroups);
    }
    Ok(trimmed)
}

/// The address blocks an account network may come from: the shared address
/// space peers get by default, and the RFC 1918 private ranges. Anything
/// else (the whole internet, loopback, multicast, public blocks) would make
/// peers route traffic that is not the mesh's into it.
pub const PRIVATE_RANGES: [&str; 4] = [
    "100.64.0.0/10",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
];

/// An account network for an account with `peers` peers: an IPv4 prefix
/// inside one of [`PRIVATE_RANGES`] with a host address for every peer (and
/// at least one), besides its network and broadcast addresses. Host bits
/// are cleared (`10.1.2.3/16` is `10.1.0.0/16`).
pub fn network_range(s: &str, peers: u64) -> Result<Cidr, ValidationError> {
    let net = s.parse::<Cidr>()?.0.trunc();
    let inside = PRIVATE_RANGES
        .iter()
        .any(|r| r.parse::<Ipv4Net>().is_ok_and(|block| block.contains(&net)));
    if !inside {
        return Err(ValidationError::NetworkRangeNotPrivate(net.to_string()));
    }
    let room = (1u64 << (32 - u32::from(net.prefix_len()))).saturating_sub(2);
    if room < peers.max(1) {
        return Err(ValidationError::NetworkRangeTooSmall {
            range: net.to_string(),
            room,
            peers,
        });
    }
    Ok(Cidr(net))
}

/// Checks account settings: expiration bounds, the DNS domain and the sizes
/// of free-text values and lists. The network range is checked with
/// [`network_range`] when it changes (it needs the peer count); group ids
/// are the shell's to resolve.
pub fn account_settings(s: &AccountSettings) -> Result<(), ValidationError> {
    if s.peer_login_expiration < MIN_LOGIN_EXPIRATION_SECS {
        return Err(ValidationError::LoginExpirationTooShort);
    }
    if s.peer_login_expiration > MAX_LOGIN_EXPIRATION_SECS {
        return Err(ValidationError::LoginExpirationTooLong);
    }
    if !(0..=MAX_LOGIN_EXPIRATION_SECS).contains(&s.peer_inactivity_expiration) {
        return Err(ValidationError::InactivityExpirationOutOfRange);
    }
    if !s.dns_domain.is_empty() {
        s.dns_domain.parse::<Domain>()?;
    }
    limits::name("jwt groups claim name", &s.jwt_groups_claim_name)?;
    limits::items("jwt allow groups", &s.jwt_allow_groups)?;
    for g in &s.jwt_allow_groups {
        limits::name("jwt allow group", g)?;
    }
    limits::items("peer expose groups", &s.peer_expose_groups)?;
    limits::items(
        "network traffic logs groups",
        &s.extra.network_traffic_logs_groups,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_prefix_edges() {
        for ok in ["a", "demo", "a-b", &"a".repeat(32), "0x9"] {
            assert!(ok.parse::<NamePrefix>().is_ok(), "{ok}");
        }
        for bad in ["", "-a", "a-", "A", "ä", &"a".repeat(33), "a_b", "a.b"] {
            let e = bad.parse::<NamePrefix>().unwrap_err();
            assert_eq!(e.code(), "invalid_name_prefix", "{bad}");
        }
    }

    #[test]
    fn ports_and_pins() {
        assert!("0".parse::<Port>().is_err());
        assert_eq!("65535".parse::<Port>().unwrap().get(), 65535);
        assert!("65536".parse::<Port>().is_err());
        assert!("+80".parse::<Port>().is_err());
        assert!("123456".parse::<Pin>().is_ok());
        assert!("12345".parse::<Pin>().is_err());
        assert!("12345a".parse::<Pin>().is_err());
        assert!("١٢٣٤٥٦".parse::<Pin>().is_err());
        assert_eq!(
            format!("{:?}", "123456".parse::<Pin>().unwrap()),
            "Pin(******)"
        );
    }

    #[test]
    fn user_groups_one_rule() {
        let names = |v: &[&str]| v.iter().map(ToString::to_string).collect::<Vec<_>>();
        assert_eq!(
            user_groups(&names(&[" devops", "Backend "])).unwrap(),
            names(&["devops", "Backend"])
        );
        for bad in [&[][..], &[""], &["devops", " "]] {
            let e = user_groups(&names(bad)).unwrap_err();
            assert_eq!(e, ValidationError::EmptyUserGroups, "{bad:?}");
        }
    }

    #[test]
    fn network_ranges() {
        assert_eq!(
            network_range("10.1.2.3/16", 0).unwrap().to_string(),
            "10.1.0.0/16"
        );
        assert!(network_range("100.127.0.0/16", 65_534).is_ok());
        assert!(network_range("100.127.0.0/16", 65_535).is_err());
        for bad in [
            "0.0.0.0/0",
            "127.0.0.0/8",
            "224.0.0.0/4",
            "100.0.0.0/8",
            "11.0.0.0/8",
        ] {
            let e = network_range(bad, 0).unwrap_err();
            assert_eq!(e.code(), "network_range_not_private", "{bad}");
        }
        for bad in ["10.0.0.1/32", "10.0.0.0/31"] {
            let e = network_range(bad, 0).unwrap_err();
            assert_eq!(e.code(), "network_range_too_small", "{bad}");
        }
        assert_eq!(
            network_range("192.168.0.0/30", 3).unwrap_err().to_string(),
            "network range 192.168.0.0/30 is too small: it has room for 2 peers and the account has 3"
        );
    }

    #[test]
    fn domains_and_cidrs() {
        assert!("proxy.example.com".parse::<Domain>().is_ok());
        assert!("*.example.com".parse::<Domain>().is_ok());
        assert!("localhost".parse::<Domain>().is_err());
        assert!("Example.com".parse::<Domain>().is_err());
        assert!("1.2.3.4".parse::<Domain>().is_err());
        assert!("10.0.0.0/8".parse::<Cidr>().is_ok());
        assert!("10.0.0.0".parse::<Cidr>().is_err());
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!(Cidr::parse_host_or_cidr("1.1.1.1").is_ok());
    }
}

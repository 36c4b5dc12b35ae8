//! Access policies and their rules.
//!
//! Ports stay in the wire form (strings, as the REST API sends them) so that
//! a stored policy round-trips exactly; [`crate::validate::policy`] checks
//! them before a policy is accepted, and the evaluator only ever sees
//! validated policies.

use serde::{Deserialize, Serialize};

use super::group::ResourceRef;
use super::ids::{GroupId, PolicyId, PostureCheckId, RuleId};

/// Traffic protocol of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    All,
    Tcp,
    Udp,
    Icmp,
    /// SSH through the mesh; carried as TCP in firewall rules.
    #[serde(rename = "netbird-ssh")]
    NetbirdSsh,
}

impl Protocol {
    /// The protocol as it appears in firewall rules (`netbird-ssh` is TCP).
    pub fn on_wire(self) -> Protocol {
        match self {
            Protocol::NetbirdSsh => Protocol::Tcp,
            p => p,
        }
    }

    /// Whether ports and port ranges are meaningful for this protocol.
    pub fn has_ports(self) -> bool {
        matches!(self, Protocol::Tcp | Protocol::Udp | Protocol::NetbirdSsh)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::All => "all",
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Icmp => "icmp",
            Protocol::NetbirdSsh => "netbird-ssh",
        }
    }
}

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Accept,
    Drop,
}

/// An inclusive port range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PortRange {
    pub start: u32,
    pub end: u32,
}

impl PortRange {
    pub fn contains(&self, port: u16) -> bool {
        (self.start..=self.end).contains(&u32::from(port))
    }
}

/// One rule of a policy. A side is either a list of groups or one resource.
/// Scalars and lists left out take their zero values, as the reference
/// decodes a rule; the action and the protocol have none and are required.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRule {
    #[serde(default)]
    pub id: RuleId,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub enabled: bool,
    pub action: Action,
    #[serde(default)]
    pub bidirectional: bool,
    pub protocol: Protocol,
    #[serde(default)]
    pub ports: Vec<String>,
    #[serde(default)]
    pub port_ranges: Vec<PortRange>,
    #[serde(default)]
    pub sources: Vec<GroupId>,
    #[serde(default)]
    pub destinations: Vec<GroupId>,
    #[serde(
        default,
        rename = "sourceResource",
        skip_serializing_if = "Option::is_none"
    )]
    pub source_resource: Option<ResourceRef>,
    #[serde(
        default,
        rename = "destinationResource",
        skip_serializing_if = "Option::is_none"
    )]
    pub destination_resource: Option<ResourceRef>,
}

/// An access policy: a named set of rules with optional source posture checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub id: PolicyId,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub enabled: bool,
    #[serde(default)]
    pub source_posture_checks: Vec<PostureCheckId>,
    pub rules: Vec<PolicyRule>,
}

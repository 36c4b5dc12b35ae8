//! DNS: nameserver groups and account DNS settings.

use serde::{Deserialize, Serialize};

use super::ids::{GroupId, NameserverGroupId};

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Nameserver {
    pub ip: String,
    pub ns_type: String,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameserverGroup {
    pub id: NameserverGroupId,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub nameservers: Vec<Nameserver>,
    pub enabled: bool,
    /// Peers in these groups use this nameserver group.
    pub groups: Vec<GroupId>,
    pub primary: bool,
    #[serde(default)]
    pub domains: Vec<String>,
    #[serde(default)]
    pub search_domains_enabled: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct DnsSettings {
    /// Peers in any of these groups get DNS management switched off.
    pub disabled_management_groups: Vec<GroupId>,
}

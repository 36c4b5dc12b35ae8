//! Networks: named containers of resources reachable through routers.

use serde::{Deserialize, Serialize};

use super::group::ResourceKind;
use super::ids::{GroupId, NetworkId, PeerId, ResourceId, RouterId};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    pub id: NetworkId,
    pub name: String,
    #[serde(default)]
    pub description: String,
}

/// A host, subnet or domain inside a network. Group membership is kept on the
/// groups (`Group::resources`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkResource {
    pub id: ResourceId,
    pub network_id: NetworkId,
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// `1.1.1.1`, `1.1.1.1/32`, `192.168.0.0/24`, `example.com` or `*.example.com`.
    pub address: String,
    #[serde(rename = "type")]
    pub kind: ResourceKind,
    pub enabled: bool,
}

/// A router of a network: one peer or the peers of some groups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkRouter {
    pub id: RouterId,
    pub network_id: NetworkId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<PeerId>,
    #[serde(default)]
    pub peer_groups: Vec<GroupId>,
    pub metric: u32,
    pub masquerade: bool,
    pub enabled: bool,
}

//! Network routes served by routing peers.

use serde::{Deserialize, Serialize};

use super::ids::{GroupId, PeerId, RouteId};

/// A route, as in the REST `Route` (request fields plus id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub id: RouteId,
    #[serde(default)]
    pub description: String,
    /// Routes sharing a `network_id` are one highly available route.
    pub network_id: String,
    pub enabled: bool,
    /// A single routing peer; conflicts with `peer_groups`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<PeerId>,
    /// Groups whose peers route; conflicts with `peer`.
    #[serde(default)]
    pub peer_groups: Vec<GroupId>,
    /// The routed prefix (CIDR); conflicts with `domains`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    #[serde(default)]
    pub domains: Vec<String>,
    pub metric: u32,
    pub masquerade: bool,
    /// Distribution groups: peers in them receive the route.
    pub groups: Vec<GroupId>,
    #[serde(default)]
    pub keep_route: bool,
    /// When set, only traffic that policies towards these groups allow may use
    /// the route; when empty the route permits all from 0.0.0.0/0.
    #[serde(default)]
    pub access_control_groups: Vec<GroupId>,
}

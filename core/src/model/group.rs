//! Groups of peers and network resources.

use serde::{Deserialize, Serialize};

use super::ids::{GroupId, PeerId, ResourceId};

/// The name of the group that holds every peer.
pub const ALL_GROUP_NAME: &str = "All";

/// Who created the group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupIssued {
    #[default]
    Api,
    Integration,
    Jwt,
}

/// A group. Membership of peers and resources is stored here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub id: GroupId,
    pub name: String,
    #[serde(default)]
    pub peers: Vec<PeerId>,
    #[serde(default)]
    pub resources: Vec<ResourceRef>,
    #[serde(default)]
    pub issued: GroupIssued,
}

impl Group {
    pub fn new(id: impl Into<String>, name: impl Into<String>, peers: Vec<PeerId>) -> Self {
        Group {
            id: GroupId::new(id),
            name: name.into(),
            peers,
            resources: Vec::new(),
            issued: GroupIssued::Api,
        }
    }

    pub fn is_all(&self) -> bool {
        self.name == ALL_GROUP_NAME
    }
}

/// The kind of a resource referenced from a group or a policy rule side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResourceKind {
    Host,
    Subnet,
    Domain,
    Peer,
}

/// A reference to a network resource (or a single peer) by id and type, as in
/// the REST `Resource` object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ResourceRef {
    pub id: ResourceId,
    #[serde(rename = "type")]
    pub kind: ResourceKind,
}

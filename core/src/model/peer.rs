//! Peers: the machines of the mesh, and what they report about themselves.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use super::ids::{PeerId, UserId};
use crate::time::Timestamp;

/// A peer as the store keeps it. Group membership lives on the groups
/// (`Group::peers`), as in the reference; the REST shell derives a peer's
/// `groups` list from them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Peer {
    pub id: PeerId,
    pub name: String,
    /// The peer's WireGuard public key (base64).
    #[serde(default)]
    pub key: String,
    /// Mesh address inside the account network.
    pub ip: Ipv4Addr,
    #[serde(default)]
    pub dns_label: String,
    #[serde(default)]
    pub extra_dns_labels: Vec<String>,
    /// The user that added the peer (SSO login); empty for setup-key peers.
    #[serde(default)]
    pub user_id: Option<UserId>,
    #[serde(default)]
    pub hostname: String,
    #[serde(default)]
    pub meta: PeerMeta,
    #[serde(default)]
    pub connected: bool,
    #[serde(default)]
    pub last_seen: Timestamp,
    #[serde(default)]
    pub last_login: Timestamp,
    #[serde(default)]
    pub created_at: Timestamp,
    #[serde(default)]
    pub ssh_enabled: bool,
    #[serde(default)]
    pub login_expiration_enabled: bool,
    #[serde(default)]
    pub inactivity_expiration_enabled: bool,
    /// True while the peer waits for an administrator's approval; such a peer
    /// receives an empty map and appears in nobody's.
    #[serde(default)]
    pub approval_required: bool,
    #[serde(default)]
    pub ephemeral: bool,
    /// Where the peer's connection comes from, as the server saw it.
    #[serde(default)]
    pub connection_ip: Option<String>,
    #[serde(default)]
    pub location: PeerLocation,
}

/// What the daemon reports at login; posture checks read it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PeerMeta {
    /// `linux`, `darwin`, `windows`, `android`, `ios`, ... (lower case).
    pub os: String,
    /// The OS release (`14.5` on darwin, `10.0.19045` on windows).
    pub os_version: String,
    pub kernel_version: String,
    /// The meshplane / NetBird client version (`0.40.0`).
    pub version: String,
    pub ui_version: String,
    pub serial_number: String,
    /// The peer's local interface addresses in CIDR form (`192.168.1.10/24`).
    pub network_addresses: Vec<String>,
    /// Full paths of processes the daemon found running (for process checks).
    pub processes: Vec<String>,
}

/// The peer's geo location, resolved by the server from its connection IP.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PeerLocation {
    pub country_code: String,
    pub city_name: String,
    pub geoname_id: u32,
}

impl Peer {
    /// A peer with only the required fields set; the rest take their defaults.
    pub fn new(id: impl Into<String>, name: impl Into<String>, ip: Ipv4Addr) -> Self {
        Peer {
            id: PeerId::new(id),
            name: name.into(),
            key: String::new(),
            ip,
            dns_label: String::new(),
            extra_dns_labels: Vec::new(),
            user_id: None,
            hostname: String::new(),
            meta: PeerMeta::default(),
            connected: false,
            last_seen: Timestamp::EPOCH,
            last_login: Timestamp::EPOCH,
            created_at: Timestamp::EPOCH,
            ssh_enabled: false,
            login_expiration_enabled: false,
            inactivity_expiration_enabled: false,
            approval_required: false,
            ephemeral: false,
            connection_ip: None,
            location: PeerLocation::default(),
        }
    }

    /// Whether the peer's login has expired at `now` under the account's
    /// settings. Only peers added by a user (SSO) expire, as in the reference.
    pub fn login_expired(
        &self,
        settings: &super::account::AccountSettings,
        now: Timestamp,
    ) -> bool {
        if !self.login_expiration_enabled
            || !settings.peer_login_expiration_enabled
            || self.user_id.is_none()
        {
            return false;
        }
        let limit = crate::time::Duration::from_secs(settings.peer_login_expiration);
        now - self.last_login >= limit
    }
}

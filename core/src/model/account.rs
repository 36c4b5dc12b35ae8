//! The account: one tenant's network and everything in it.

use serde::{Deserialize, Serialize};

use super::dns::{DnsSettings, NameserverGroup};
use super::group::Group;
use super::ids::{AccountId, GroupId};
use super::network::{Network, NetworkResource, NetworkRouter};
use super::peer::Peer;
use super::policy::Policy;
use super::posture::PostureCheck;
use super::route::Route;
use super::user::User;

/// Default DNS domain of a new account.
pub const DEFAULT_DNS_DOMAIN: &str = "netbird.selfhosted";
/// Default peer login expiration: 24 h.
pub const DEFAULT_LOGIN_EXPIRATION_SECS: i64 = 24 * 3600;
/// Shortest allowed login expiration: 1 h.
pub const MIN_LOGIN_EXPIRATION_SECS: i64 = 3600;
/// Longest allowed login expiration: 180 days.
pub const MAX_LOGIN_EXPIRATION_SECS: i64 = 180 * 24 * 3600;

/// Account-wide settings, named as in the REST `settings` object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AccountSettings {
    pub peer_login_expiration_enabled: bool,
    /// Seconds.
    pub peer_login_expiration: i64,
    pub peer_inactivity_expiration_enabled: bool,
    /// Seconds.
    pub peer_inactivity_expiration: i64,
    pub regular_users_view_blocked: bool,
    pub groups_propagation_enabled: bool,
    pub jwt_groups_enabled: bool,
    pub jwt_groups_claim_name: String,
    pub jwt_allow_groups: Vec<String>,
    pub routing_peer_dns_resolution_enabled: bool,
    pub dns_domain: String,
    /// The account network in CIDR form (a /16 inside 100.64.0.0/10).
    pub network_range: String,
    pub lazy_connection_enabled: bool,
    /// Whether peers may expose local services through the reverse proxy.
    pub peer_expose_enabled: bool,
    /// Groups whose peers may expose services (see `expose` for the rule).
    pub peer_expose_groups: Vec<GroupId>,
    pub extra: AccountExtraSettings,
}

impl Default for AccountSettings {
    fn default() -> Self {
        AccountSettings {
            peer_login_expiration_enabled: true,
            peer_login_expiration: DEFAULT_LOGIN_EXPIRATION_SECS,
            peer_inactivity_expiration_enabled: false,
            peer_inactivity_expiration: 600,
            regular_users_view_blocked: true,
            groups_propagation_enabled: true,
            jwt_groups_enabled: false,
            jwt_groups_claim_name: String::new(),
            jwt_allow_groups: Vec::new(),
            routing_peer_dns_resolution_enabled: true,
            dns_domain: DEFAULT_DNS_DOMAIN.to_string(),
            network_range: "100.64.0.0/16".to_string(),
            lazy_connection_enabled: false,
            peer_expose_enabled: false,
            peer_expose_groups: Vec::new(),
            extra: AccountExtraSettings::default(),
        }
    }
}

/// The REST `AccountSettings` as a client sends it on `PUT`, decoded as the
/// reference decodes it: a field the schema requires takes its zero value
/// when left out (`false`, `0`, an empty list), and an optional one left out
/// (or `null`) keeps the stored value. [`apply`](Self::apply) makes the new
/// settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AccountSettingsUpdate {
    pub peer_login_expiration_enabled: bool,
    pub peer_login_expiration: i64,
    pub peer_inactivity_expiration_enabled: bool,
    pub peer_inactivity_expiration: i64,
    pub regular_users_view_blocked: bool,
    pub peer_expose_enabled: bool,
    pub peer_expose_groups: Vec<GroupId>,
    pub groups_propagation_enabled: Option<bool>,
    pub jwt_groups_enabled: Option<bool>,
    pub jwt_groups_claim_name: Option<String>,
    pub jwt_allow_groups: Option<Vec<String>>,
    pub routing_peer_dns_resolution_enabled: Option<bool>,
    pub dns_domain: Option<String>,
    pub network_range: Option<String>,
    pub lazy_connection_enabled: Option<bool>,
    pub extra: Option<AccountExtraSettings>,
}

impl AccountSettingsUpdate {
    /// The settings after this update of `old`.
    pub fn apply(self, old: &AccountSettings) -> AccountSettings {
        AccountSettings {
            peer_login_expiration_enabled: self.peer_login_expiration_enabled,
            peer_login_expiration: self.peer_login_expiration,
            peer_inactivity_expiration_enabled: self.peer_inactivity_expiration_enabled,
            peer_inactivity_expiration: self.peer_inactivity_expiration,
            regular_users_view_blocked: self.regular_users_view_blocked,
            groups_propagation_enabled: self
                .groups_propagation_enabled
                .unwrap_or(old.groups_propagation_enabled),
            jwt_groups_enabled: self.jwt_groups_enabled.unwrap_or(old.jwt_groups_enabled),
            jwt_groups_claim_name: self
                .jwt_groups_claim_name
                .unwrap_or_else(|| old.jwt_groups_claim_name.clone()),
            jwt_allow_groups: self
                .jwt_allow_groups
                .unwrap_or_else(|| old.jwt_allow_groups.clone()),
            routing_peer_dns_resolution_enabled: self
                .routing_peer_dns_resolution_enabled
                .unwrap_or(old.routing_peer_dns_resolution_enabled),
            dns_domain: self.dns_domain.unwrap_or_else(|| old.dns_domain.clone()),
            // An empty range, as the reference reads it, is not a change.
            network_range: self
                .network_range
                .filter(|r| !r.is_empty())
                .unwrap_or_else(|| old.network_range.clone()),
            lazy_connection_enabled: self
                .lazy_connection_enabled
                .unwrap_or(old.lazy_connection_enabled),
            peer_expose_enabled: self.peer_expose_enabled,
            peer_expose_groups: self.peer_expose_groups,
            extra: self.extra.unwrap_or_else(|| old.extra.clone()),
        }
    }
}

/// The `settings.extra` object.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct AccountExtraSettings {
    pub peer_approval_enabled: bool,
    pub user_approval_required: bool,
    pub network_traffic_logs_enabled: bool,
    pub network_traffic_logs_groups: Vec<GroupId>,
    pub network_traffic_packet_counter_enabled: bool,
}

/// Everything the core needs to decide about one account. The store loads it;
/// the core reads it. Collections are plain lists (the JSON form); lookups go
/// through [`crate::index::AccountIndex`].
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Account {
    pub id: AccountId,
    pub domain: String,
    pub settings: AccountSettings,
    /// Bumped on every change that can alter a network map.
    pub serial: u64,
    pub users: Vec<User>,
    pub peers: Vec<Peer>,
    pub groups: Vec<Group>,
    pub policies: Vec<Policy>,
    pub posture_checks: Vec<PostureCheck>,
    pub routes: Vec<Route>,
    pub networks: Vec<Network>,
    pub network_resources: Vec<NetworkResource>,
    pub network_routers: Vec<NetworkRouter>,
    pub nameserver_groups: Vec<NameserverGroup>,
    pub dns_settings: DnsSettings,
}

impl Account {
    /// The `All` group, which holds every peer.
    pub fn all_group(&self) -> Option<&Group> {
        self.groups.iter().find(|g| g.is_all())
    }
}

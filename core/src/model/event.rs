//! Audit events.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

/// An activity recorded in the audit log: a numeric code, the REST
/// `activity_code` string and the human `activity` text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Activity {
    pub id: u32,
    pub code: &'static str,
    pub message: &'static str,
}

macro_rules! activities {
    ($($name:ident = $id:expr, $code:expr, $msg:expr;)*) => {
        impl Activity {
            $(pub const $name: Activity = Activity { id: $id, code: $code, message: $msg };)*

            /// Every known activity, in code order.
            pub const ALL: &'static [Activity] = &[$(Activity::$name),*];
        }
    };
}

activities! {
    PEER_ADDED_BY_USER = 0, "peer.user.add", "Peer added";
    PEER_ADDED_WITH_SETUP_KEY = 1, "peer.setupkey.add", "Peer added";
    USER_JOINED = 2, "user.join", "User joined";
    USER_INVITED = 3, "user.invite", "User invited";
    ACCOUNT_CREATED = 4, "account.create", "Account created";
    PEER_REMOVED_BY_USER = 5, "user.peer.delete", "Peer deleted";
    RULE_ADDED = 6, "rule.add", "Rule added";
    RULE_UPDATED = 7, "rule.update", "Rule updated";
    RULE_REMOVED = 8, "rule.delete", "Rule deleted";
    POLICY_ADDED = 9, "policy.add", "Policy added";
    POLICY_UPDATED = 10, "policy.update", "Policy updated";
    POLICY_REMOVED = 11, "policy.delete", "Policy deleted";
    SETUP_KEY_CREATED = 12, "setupkey.add", "Setup key created";
    SETUP_KEY_UPDATED = 13, "setupkey.update", "Setup key updated";
    SETUP_KEY_REVOKED = 14, "setupkey.revoke", "Setup key revoked";
    SETUP_KEY_OVERUSED = 15, "setupkey.overuse", "Setup key overused";
    SETUP_KEY_DELETED = 75, "setupkey.delete", "Setup key deleted";
    GROUP_CREATED = 16, "group.add", "Group created";
    GROUP_UPDATED = 17, "group.update", "Group updated";
    GROUP_ADDED_TO_PEER = 18, "peer.group.add", "Group added to peer";
    GROUP_REMOVED_FROM_PEER = 19, "peer.group.delete", "Group removed from peer";
    GROUP_ADDED_TO_USER = 20, "user.group.add", "Group added to user";
    GROUP_REMOVED_FROM_USER = 21, "user.group.delete", "Group removed from user";
    USER_ROLE_UPDATED = 22, "user.role.update", "User role updated";
    GROUP_ADDED_TO_SETUP_KEY = 23, "setupkey.group.add", "Group added to setup key";
    GROUP_REMOVED_FROM_SETUP_KEY = 24, "setupkey.group.delete", "Group removed from setup key";
    GROUP_ADDED_TO_DISABLED_MANAGEMENT_GROUPS = 25, "dns.setting.disabled.management.group.add", "Group added to disabled management DNS setting";
    GROUP_REMOVED_FROM_DISABLED_MANAGEMENT_GROUPS = 26, "dns.setting.disabled.management.group.delete", "Group removed from disabled management DNS setting";
    ROUTE_CREATED = 27, "route.add", "Route created";
    ROUTE_REMOVED = 28, "route.delete", "Route deleted";
    ROUTE_UPDATED = 29, "route.update", "Route updated";
    PEER_SSH_ENABLED = 30, "peer.ssh.enable", "Peer SSH server enabled";
    PEER_SSH_DISABLED = 31, "peer.ssh.disable", "Peer SSH server disabled";
    PEER_RENAMED = 32, "peer.rename", "Peer renamed";
    PEER_LOGIN_EXPIRATION_ENABLED = 33, "peer.login.expiration.enable", "Peer login expiration enabled";
    PEER_LOGIN_EXPIRATION_DISABLED = 34, "peer.login.expiration.disable", "Peer login expiration disabled";
    NAMESERVER_GROUP_CREATED = 35, "nameserver.group.add", "Nameserver group created";
    NAMESERVER_GROUP_DELETED = 36, "nameserver.group.delete", "Nameserver group deleted";
    NAMESERVER_GROUP_UPDATED = 37, "nameserver.group.update", "Nameserver group updated";
    ACCOUNT_PEER_LOGIN_EXPIRATION_DURATION_UPDATED = 38, "account.setting.peer.login.expiration.update", "Account peer login expiration duration updated";
    ACCOUNT_PEER_LOGIN_EXPIRATION_ENABLED = 39, "account.setting.peer.login.expiration.enable", "Account peer login expiration enabled";
    ACCOUNT_PEER_LOGIN_EXPIRATION_DISABLED = 40, "account.setting.peer.login.expiration.disable", "Account peer login expiration disabled";
    PERSONAL_ACCESS_TOKEN_CREATED = 41, "personal.access.token.create", "Personal access token created";
    PERSONAL_ACCESS_TOKEN_DELETED = 42, "personal.access.token.delete", "Personal access token deleted";
    SERVICE_USER_CREATED = 43, "service.user.create", "Service user created";
    SERVICE_USER_DELETED = 44, "service.user.delete", "Service user deleted";
    USER_BLOCKED = 45, "user.block", "User blocked";
    USER_UNBLOCKED = 46, "user.unblock", "User unblocked";
    USER_DELETED = 47, "user.delete", "User deleted";
    GROUP_DELETED = 48, "group.delete", "Group deleted";
    USER_LOGGED_IN_PEER = 49, "user.peer.login", "User logged in peer";
    PEER_LOGIN_EXPIRED = 50, "peer.login.expire", "Peer login expired";
    POSTURE_CHECK_CREATED = 60, "posture.check.create", "Posture check created";
    POSTURE_CHECK_UPDATED = 61, "posture.check.update", "Posture check updated";
    POSTURE_CHECK_DELETED = 62, "posture.check.delete", "Posture check deleted";
    PEER_APPROVED = 57, "peer.approve", "Peer approved";
    PEER_APPROVAL_REVOKED = 58, "peer.approval.revoke", "Peer approval revoked";
    ACCOUNT_PEER_APPROVAL_ENABLED = 55, "account.setting.peer.approval.enable", "Account peer approval enabled";
    ACCOUNT_PEER_APPROVAL_DISABLED = 56, "account.setting.peer.approval.disable", "Account peer approval disabled";
    ACCOUNT_DELETED = 99, "account.delete", "Account deleted";
    NETWORK_CREATED = 80, "network.create", "Network created";
    NETWORK_UPDATED = 81, "network.update", "Network updated";
    NETWORK_DELETED = 82, "network.delete", "Network deleted";
    NETWORK_RESOURCE_CREATED = 83, "network.resource.create", "Network resource created";
    NETWORK_RESOURCE_UPDATED = 84, "network.resource.update", "Network resource updated";
    NETWORK_RESOURCE_DELETED = 85, "network.resource.delete", "Network resource deleted";
    NETWORK_ROUTER_CREATED = 86, "network.router.create", "Network router created";
    NETWORK_ROUTER_UPDATED = 87, "network.router.update", "Network router updated";
    NETWORK_ROUTER_DELETED = 88, "network.router.delete", "Network router deleted";
    RESOURCE_ADDED_TO_GROUP = 89, "resource.group.add", "Resource added to group";
    RESOURCE_REMOVED_FROM_GROUP = 90, "resource.group.delete", "Resource removed from group";
    ACCOUNT_DNS_DOMAIN_UPDATED = 91, "account.dns.domain.update", "Account DNS domain updated";
    ACCOUNT_NETWORK_RANGE_UPDATED = 94, "account.network.range.update", "Account network range updated";
    PEER_IP_UPDATED = 95, "peer.ip.update", "Peer IP updated";
    USER_APPROVED = 96, "user.approve", "User approved";
    USER_REJECTED = 97, "user.reject", "User rejected";
    USER_CREATED = 98, "user.create", "User created";
    PEER_SERVICE_EXPOSED = 111, "service.peer.expose", "Peer exposed service";
    PEER_SERVICE_UNEXPOSED = 112, "service.peer.unexpose", "Peer unexposed service";
    PEER_SERVICE_EXPOSE_EXPIRED = 113, "service.peer.expose.expire", "Peer expose expired";
    ACCOUNT_PEER_EXPOSE_ENABLED = 114, "account.setting.peer.expose.enable", "Account peer expose enabled";
    ACCOUNT_PEER_EXPOSE_DISABLED = 115, "account.setting.peer.expose.disable", "Account peer expose disabled";
    // Ingress ports have no codes in the reference; these are meshplane's
    // own, numbered apart from the reference's range.
    INGRESS_PEER_CREATED = 1001, "ingress.peer.create", "Ingress peer created";
    INGRESS_PEER_UPDATED = 1002, "ingress.peer.update", "Ingress peer updated";
    INGRESS_PEER_DELETED = 1003, "ingress.peer.delete", "Ingress peer deleted";
    INGRESS_PORTS_ALLOCATED = 1004, "ingress.ports.create", "Ingress port allocation created";
    INGRESS_PORTS_UPDATED = 1005, "ingress.ports.update", "Ingress port allocation updated";
    INGRESS_PORTS_RELEASED = 1006, "ingress.ports.delete", "Ingress port allocation deleted";
}

impl Activity {
    /// Looks an activity up by its numeric code.
    pub fn by_id(id: u32) -> Option<Activity> {
        Activity::ALL.iter().copied().find(|a| a.id == id)
    }
}

/// One audit-log entry, in the REST `Event` shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub id: String,
    pub timestamp: Timestamp,
    pub activity: String,
    pub activity_code: String,
    pub initiator_id: String,
    #[serde(default)]
    pub initiator_name: String,
    #[serde(default)]
    pub initiator_email: String,
    pub target_id: String,
    #[serde(default)]
    pub meta: BTreeMap<String, String>,
}

impl AuditEvent {
    /// An event for `activity`, with the REST strings filled in.
    pub fn new(
        id: impl Into<String>,
        timestamp: Timestamp,
        activity: Activity,
        initiator_id: impl Into<String>,
        target_id: impl Into<String>,
        meta: BTreeMap<String, String>,
    ) -> Self {
        AuditEvent {
            id: id.into(),
            timestamp,
            activity: activity.message.to_string(),
            activity_code: activity.code.to_string(),
            initiator_id: initiator_id.into(),
            initiator_name: String::new(),
            initiator_email: String::new(),
            target_id: target_id.into(),
            meta,
        }
    }
}

//! What the store keeps: the core model types, plus the account record that
//! holds the account-level fields the REST API shows.

use meshplane_core::model::{
    AccountSettings, DnsSettings, Group, IngressPeer, IngressPortAllocation, NameserverGroup,
    Network, NetworkResource, NetworkRouter, Peer, PersonalAccessToken, Policy, PostureCheck,
    Route, SetupKey, User,
};
use meshplane_core::Timestamp;
use serde::{Deserialize, Serialize};

use crate::store::Stored;

/// The REST `onboarding` object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Onboarding {
    pub signup_form_pending: bool,
    pub onboarding_flow_pending: bool,
}

/// The account itself (its resources are rows of their own).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountRecord {
    pub id: String,
    pub domain: String,
    pub domain_category: String,
    pub created_at: Timestamp,
    pub created_by: String,
    pub settings: AccountSettings,
    #[serde(default)]
    pub dns_settings: DnsSettings,
    #[serde(default)]
    pub onboarding: Onboarding,
}

macro_rules! stored {
    ($($ty:ty => $kind:literal, |$v:ident| $key:expr, $field:literal, $label:expr $(, in_account: $in:literal)?;)*) => {
        $(impl Stored for $ty {
            const KIND: &'static str = $kind;
            const LABEL: &'static str = $field;
            $(const IN_ACCOUNT: bool = $in;)?
            fn key(&self) -> &str {
                let $v = self;
                $key
            }
            fn label(&self) -> &str {
                let $v = self;
                $label
            }
        })*
    };
}

stored! {
    AccountRecord => "account", |v| &v.id, "id", &v.id;
    User => "user", |v| v.id.as_str(), "name", &v.name;
    PersonalAccessToken => "token", |v| v.id.as_str(), "name", &v.name, in_account: false;
    Group => "group", |v| v.id.as_str(), "name", &v.name;
    SetupKey => "setup_key", |v| v.id.as_str(), "name", &v.name, in_account: false;
    Policy => "policy", |v| v.id.as_str(), "name", &v.name;
    PostureCheck => "posture_check", |v| v.id.as_str(), "name", &v.name;
    Route => "route", |v| v.id.as_str(), "network_id", &v.network_id;
    Network => "network", |v| v.id.as_str(), "name", &v.name;
    NetworkResource => "network_resource", |v| v.id.as_str(), "name", &v.name;
    NetworkRouter => "network_router", |v| v.id.as_str(), "network_id", v.network_id.as_str();
    NameserverGroup => "nameserver_group", |v| v.id.as_str(), "name", &v.name;
    Peer => "peer", |v| v.id.as_str(), "name", &v.name;
    IngressPeer => "ingress_peer", |v| v.id.as_str(), "peer_id", v.peer_id.as_str();
    IngressPortAllocation => "ingress_allocation", |v| v.id.as_str(), "name", &v.name;
}

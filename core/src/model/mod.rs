//! Typed resources of an account. Serde names match the REST JSON of the
//! seeds (`reference/netbird-openapi.yml`) wherever the store shape and the
//! REST shape coincide; where the REST shape nests objects (a rule's
//! `sources` as group objects), the model keeps ids and the server expands.

pub mod account;
pub mod dns;
pub mod event;
pub mod group;
pub mod ids;
pub mod ingress;
pub mod network;
pub mod peer;
pub mod policy;
pub mod posture;
pub mod route;
pub mod setup_key;
pub mod user;

pub use account::{Account, AccountExtraSettings, AccountSettings, AccountSettingsUpdate};
pub use dns::{DnsSettings, Nameserver, NameserverGroup};
pub use event::{Activity, AuditEvent};
pub use group::{Group, GroupIssued, ResourceKind, ResourceRef, ALL_GROUP_NAME};
pub use ids::*;
pub use ingress::{IngressPeer, IngressPortAllocation, PortMapping, PortProtocol};
pub use network::{Network, NetworkResource, NetworkRouter};
pub use peer::{Peer, PeerLocation, PeerMeta};
pub use policy::{Action, Policy, PolicyRule, PortRange, Protocol};
pub use posture::{
    CheckAction, Checks, GeoLocationCheck, Location, MinKernelVersionCheck, MinVersionCheck,
    OsVersionCheck, PeerNetworkRangeCheck, PostureCheck, Process, ProcessCheck,
};
pub use route::Route;
pub use setup_key::{SetupKey, SetupKeyState, SetupKeyType};
pub use user::{PersonalAccessToken, Role, User, UserStatus};

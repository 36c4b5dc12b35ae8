//! Posture checks: conditions a source peer must meet for a policy to apply.

use serde::{Deserialize, Serialize};

use super::ids::PostureCheckId;

/// A named set of checks, as in the REST `PostureCheck`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostureCheck {
    pub id: PostureCheckId,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub checks: Checks,
}

/// The checks of a posture check; every one that is present must pass.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Checks {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nb_version_check: Option<MinVersionCheck>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub os_version_check: Option<OsVersionCheck>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub geo_location_check: Option<GeoLocationCheck>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_network_range_check: Option<PeerNetworkRangeCheck>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process_check: Option<ProcessCheck>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MinVersionCheck {
    #[serde(default)]
    pub min_version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MinKernelVersionCheck {
    #[serde(default)]
    pub min_kernel_version: String,
}

/// Per-OS minimum versions. An OS without an entry is not allowed.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct OsVersionCheck {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub android: Option<MinVersionCheck>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub darwin: Option<MinVersionCheck>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ios: Option<MinVersionCheck>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub linux: Option<MinKernelVersionCheck>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub windows: Option<MinKernelVersionCheck>,
}

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckAction {
    Allow,
    Deny,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GeoLocationCheck {
    #[serde(default)]
    pub locations: Vec<Location>,
    pub action: CheckAction,
}

/// A country (ISO 3166-1 alpha-2) and optionally a city in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    #[serde(default)]
    pub country_code: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub city_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerNetworkRangeCheck {
    /// CIDRs.
    #[serde(default)]
    pub ranges: Vec<String>,
    pub action: CheckAction,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessCheck {
    #[serde(default)]
    pub processes: Vec<Process>,
}

/// A process that must be running, by its path on each OS.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Process {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub linux_path: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub mac_path: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub windows_path: String,
}

//! Setup keys: how peers join without a user login.

use serde::{Deserialize, Serialize};

use super::ids::{GroupId, SetupKeyId};
use crate::time::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SetupKeyType {
    Reusable,
    OneOff,
}

/// A setup key as stored: the secret only as its hash, plus the masked form
/// shown after creation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetupKey {
    pub id: SetupKeyId,
    pub name: String,
    /// base64(SHA-256(key)).
    pub hashed_key: String,
    /// First 5 characters of the key followed by `****`.
    pub masked_key: String,
    #[serde(rename = "type")]
    pub kind: SetupKeyType,
    /// `None` for a key that never expires.
    #[serde(default)]
    pub expires_at: Option<Timestamp>,
    #[serde(default)]
    pub revoked: bool,
    #[serde(default)]
    pub used_times: u32,
    #[serde(default)]
    pub last_used: Option<Timestamp>,
    #[serde(default)]
    pub auto_groups: Vec<GroupId>,
    /// 0 = unlimited; forced to 1 for one-off keys.
    #[serde(default)]
    pub usage_limit: u32,
    #[serde(default)]
    pub ephemeral: bool,
    #[serde(default)]
    pub allow_extra_dns_labels: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Whether a setup key can register a peer now; the REST `state` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SetupKeyState {
    Valid,
    Revoked,
    Expired,
    Overused,
}

impl SetupKeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            SetupKeyState::Valid => "valid",
            SetupKeyState::Revoked => "revoked",
            SetupKeyState::Expired => "expired",
            SetupKeyState::Overused => "overused",
        }
    }
}

impl SetupKey {
    /// The key's state at `now`. Revocation is reported first, then expiry,
    /// then exhaustion, so an administrator sees the most deliberate cause.
    pub fn state(&self, now: Timestamp) -> SetupKeyState {
        if self.revoked {
            SetupKeyState::Revoked
        } else if self.expires_at.is_some_and(|t| t <= now) {
            SetupKeyState::Expired
        } else if self.usage_limit > 0 && self.used_times >= self.usage_limit {
            SetupKeyState::Overused
        } else {
            SetupKeyState::Valid
        }
    }
}

//! Users and their personal access tokens.

use serde::{Deserialize, Serialize};

use super::ids::{GroupId, TokenId, UserId};
use crate::time::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Owner,
    Admin,
    User,
    BillingAdmin,
    Auditor,
    NetworkAdmin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UserStatus {
    #[default]
    Active,
    Invited,
    Blocked,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: UserId,
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub name: String,
    pub role: Role,
    #[serde(default)]
    pub status: UserStatus,
    #[serde(default)]
    pub auto_groups: Vec<GroupId>,
    #[serde(default)]
    pub is_service_user: bool,
    #[serde(default)]
    pub is_blocked: bool,
    #[serde(default)]
    pub pending_approval: bool,
    #[serde(default)]
    pub last_login: Option<Timestamp>,
    #[serde(default)]
    pub issued: String,
}

/// A personal access token as stored: only the hash of the secret is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonalAccessToken {
    pub id: TokenId,
    pub user_id: UserId,
    pub name: String,
    /// base64(SHA-256(token)); see [`crate::keys::hash_secret`].
    pub hashed_token: String,
    pub expiration_date: Timestamp,
    pub created_by: UserId,
    pub created_at: Timestamp,
    #[serde(default)]
    pub last_used: Option<Timestamp>,
}

//! `admin-token`: the first way in. Creates the account and its owner when
//! the store has none, then a personal access token for the owner.

use meshplane_core::ipam;
use meshplane_core::model::AccountSettings;
use meshplane_core::model::{
    Action, Activity, Group, Policy, PolicyId, PolicyRule, Protocol, Role, RuleId, User, UserId,
    UserStatus, ALL_GROUP_NAME,
};
use rand_core::OsRng;

use crate::domain::audit::{meta, record};
use crate::http::failure::Failure;
use crate::http::tokens;
use crate::ids;
use crate::records::{AccountRecord, Onboarding};
use crate::store::Store;

/// Lifetime of a token made by `admin-token`, in days.
const ADMIN_TOKEN_DAYS: i64 = 365;
const DEFAULT_POLICY_DESCRIPTION: &str =
    "This is a default policy that allows connections between all the resources";

/// Creates what is missing and returns the plain token.
pub async fn admin_token(store: &Store, name: &str) -> Result<String, Failure> {
    let mut tx = store.write().await?;
    let existing = tx.accounts_with::<AccountRecord>().await?;
    let (account, owner) = match existing.first() {
        Some(account) => {
            let users = tx.list::<User>(account).await?;
            let owner = users
                .into_iter()
                .find(|u| u.role == Role::Owner)
                .ok_or_else(|| Failure::bad_request("the account has no owner"))?;
            (account.clone(), owner)
        }
        None => {
            let (account, owner) = new_account();
            tx.put(&account.id, &account).await?;
            tx.put(&account.id, &owner).await?;
            let all = Group::new(ids::new_id(), ALL_GROUP_NAME, Vec::new());
            tx.put(&account.id, &default_policy(&all)).await?;
            tx.put(&account.id, &all).await?;
            record(
                &mut tx,
                &account.id,
                &owner,
                Activity::ACCOUNT_CREATED,
                &account.id,
                meta([]),
            )
            .await?;
            tracing::info!(account = %account.id, "account created");
            (account.id, owner)
        }
    };
    let (token, plain) =
        tokens::issue(&mut tx, &account, &owner, &owner, name, ADMIN_TOKEN_DAYS).await?;
    tx.commit().await?;
    tracing::info!(token = %token.id, user = %owner.id, "personal access token created");
    Ok(plain)
}

fn new_account() -> (AccountRecord, User) {
    let owner = User {
        id: UserId::new(ids::new_id()),
        email: String::new(),
        name: "admin".to_string(),
        role: Role::Owner,
        status: UserStatus::Active,
        auto_groups: Vec::new(),
        is_service_user: false,
        is_blocked: false,
        pending_approval: false,
        last_login: None,
        issued: "api".to_string(),
    };
    let account = AccountRecord {
        id: ids::new_id(),
        domain: String::new(),
        domain_category: "private".to_string(),
        created_at: ids::now(),
        created_by: owner.id.to_string(),
        settings: AccountSettings {
            network_range: ipam::new_account_network(&mut OsRng).0.to_string(),
            ..AccountSettings::default()
        },
        dns_settings: Default::default(),
        onboarding: Onboarding::default(),
    };
    (account, owner)
}

/// `Default`: All <-> All, every protocol, both ways.
fn default_policy(all: &Group) -> Policy {
    Policy {
        id: PolicyId::new(ids::new_id()),
        name: "Default".to_string(),
        description: DEFAULT_POLICY_DESCRIPTION.to_string(),
        enabled: true,
        source_posture_checks: Vec::new(),
        rules: vec![PolicyRule {
            id: RuleId::new(ids::new_id()),
            name: "Default".to_string(),
            description: DEFAULT_POLICY_DESCRIPTION.to_string(),
            enabled: true,
            action: Action::Accept,
            bidirectional: true,
            protocol: Protocol::All,
            ports: Vec::new(),
            port_ranges: Vec::new(),
            sources: vec![all.id.clone()],
            destinations: vec![all.id.clone()],
            source_resource: None,
            destination_resource: None,
        }],
    }
}

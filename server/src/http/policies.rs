//! `/api/policies`. Rules are checked by the core (`validate::policy`);
//! here every referenced group, resource and posture check must exist, and
//! responses expand rule group ids to `GroupMinimum` objects.

use axum::Router;
use meshplane_core::model::{
    Activity, Group, GroupId, NetworkResource, Peer, Policy, PolicyId, PolicyRule, PostureCheck,
    PostureCheckId, ResourceKind, ResourceRef, RuleId,
};
use meshplane_core::validate;
use serde::Deserialize;
use serde_json::Value;

use super::auth::Caller;
use super::crud::{self, Context, Crud};
use super::failure::Failure;
use super::groups::minimum;
use super::{require_all, App};
use crate::ids;
use crate::store::{StoreError, Tx};

pub fn routes() -> Router<App> {
    crud::routes::<Policy>("/api/policies", "policy_id")
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct PolicyRequest {
    name: String,
    description: Option<String>,
    enabled: bool,
    source_posture_checks: Option<Vec<PostureCheckId>>,
    rules: Vec<PolicyRule>,
}

/// 422 unless the resource (or peer) a reference names exists.
pub async fn require_resource(tx: &mut Tx, account: &str, r: &ResourceRef) -> Result<(), Failure> {
    let found = if r.kind == ResourceKind::Peer {
        tx.get::<Peer>(account, r.id.as_str()).await?.is_some()
    } else {
        tx.get::<NetworkResource>(account, r.id.as_str())
            .await?
            .is_some_and(|n| n.kind == r.kind)
    };
    if found {
        Ok(())
    } else {
        Err(Failure::invalid(format!("resource {} not found", r.id)))
    }
}

/// The groups the viewed policies' rules name, for their `GroupMinimum`s.
impl Context<Policy> for Vec<Group> {
    async fn load(tx: &mut Tx, account: &str, policies: &[&Policy]) -> Result<Vec<Group>, Failure> {
        let named: Vec<&GroupId> = policies
            .iter()
            .flat_map(|p| &p.rules)
            .flat_map(|r| r.sources.iter().chain(&r.destinations))
            .collect();
        Ok(tx.get_many::<Group>(account, &named).await?)
    }
}

impl Crud for Policy {
    type Request = PolicyRequest;
    type Scope = ();
    type Context = Vec<Group>;

    const CREATED: Activity = Activity::POLICY_ADDED;
    const UPDATED: Activity = Activity::POLICY_UPDATED;
    const DELETED: Activity = Activity::POLICY_REMOVED;

    /// Keeps the ids of rules that already belong to `old`.
    async fn build(
        tx: &mut Tx,
        caller: &Caller,
        _scope: &(),
        id: String,
        old: Option<&Policy>,
        req: PolicyRequest,
    ) -> Result<Policy, Failure> {
        let account = caller.account_id();
        let name = req.name.trim();
        if name.is_empty() {
            return Err(Failure::invalid("policy name shouldn't be empty"));
        }
        let mut rules = req.rules;
        for rule in &mut rules {
            let known = old.is_some_and(|o| o.rules.iter().any(|r| r.id == rule.id));
            if !known {
                rule.id = RuleId::new(ids::new_id());
            }
        }
        let policy = Policy {
            id: PolicyId::new(id),
            name: name.to_string(),
            description: req.description.unwrap_or_default(),
            enabled: req.enabled,
            source_posture_checks: req.source_posture_checks.unwrap_or_default(),
            rules,
        };
        validate::policy(&policy)?;
        let named: Vec<&GroupId> = policy
            .rules
            .iter()
            .flat_map(|r| r.sources.iter().chain(&r.destinations))
            .collect();
        let groups = tx.get_many::<Group>(account, &named).await?;
        for rule in &policy.rules {
            require_all(&groups, &rule.sources)?;
            require_all(&groups, &rule.destinations)?;
            for r in rule
                .source_resource
                .iter()
                .chain(&rule.destination_resource)
            {
                require_resource(tx, account, r).await?;
            }
        }
        require_all(
            &tx.get_many::<PostureCheck>(account, &policy.source_posture_checks)
                .await?,
            &policy.source_posture_checks,
        )?;
        Ok(policy)
    }

    /// The REST `Policy`: rule sides as `GroupMinimum` objects.
    fn view(&self, groups: &Vec<Group>) -> Result<Value, Failure> {
        let expand = |ids: &[GroupId]| -> Value {
            ids.iter()
                .filter_map(|id| groups.iter().find(|g| &g.id == id))
                .map(minimum)
                .collect()
        };
        let mut v = serde_json::to_value(self).map_err(StoreError::from)?;
        for (i, rule) in self.rules.iter().enumerate() {
            v["rules"][i]["sources"] = expand(&rule.sources);
            v["rules"][i]["destinations"] = expand(&rule.destinations);
        }
        Ok(v)
    }
}

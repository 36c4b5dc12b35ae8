//! `/api/groups`. The `All` group holds every peer and can be neither
//! changed nor deleted; a group that something still uses cannot be deleted.

use std::collections::BTreeMap;

use axum::Router;
use meshplane_core::limits;
use meshplane_core::model::{
    Activity, Group, GroupId, GroupIssued, NameserverGroup, NetworkRouter, Peer, PeerId, Policy,
    ResourceRef, Route, SetupKey, User,
};
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::Caller;
use super::crud::{self, unique_label, Context, Crud};
use super::failure::Failure;
use super::policies::require_resource;
use super::{require_all, App};
use crate::records::AccountRecord;
use crate::store::Tx;

pub fn routes() -> Router<App> {
    crud::routes::<Group>("/api/groups", "group_id")
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct GroupRequest {
    name: String,
    peers: Option<Vec<PeerId>>,
    resources: Option<Vec<ResourceRef>>,
}

/// The REST `GroupMinimum`.
pub fn minimum(g: &Group) -> Value {
    json!({
        "id": g.id,
        "name": g.name,
        "peers_count": g.peers.len(),
        "resources_count": g.resources.len(),
        "issued": g.issued,
    })
}

/// Sorted, without duplicates.
pub fn dedup<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v.dedup();
    v
}

/// Names of the peers of the groups viewed, by id.
#[derive(Debug)]
pub struct PeerNames(BTreeMap<String, String>);

impl Context<Group> for PeerNames {
    async fn load(tx: &mut Tx, account: &str, groups: &[&Group]) -> Result<PeerNames, Failure> {
        let ids: Vec<&PeerId> = groups.iter().flat_map(|g| &g.peers).collect();
        let peers = tx.get_many::<Peer>(account, &ids).await?;
        Ok(PeerNames(
            peers.into_iter().map(|p| (p.id.0, p.name)).collect(),
        ))
    }
}

impl Crud for Group {
    type Request = GroupRequest;
    type Scope = ();
    type Context = PeerNames;

    const CREATED: Activity = Activity::GROUP_CREATED;
    const UPDATED: Activity = Activity::GROUP_UPDATED;
    const DELETED: Activity = Activity::GROUP_DELETED;

    async fn build(
        tx: &mut Tx,
        caller: &Caller,
        _scope: &(),
        id: String,
        old: Option<&Group>,
        req: GroupRequest,
    ) -> Result<Group, Failure> {
        if old.is_some_and(Group::is_all) {
            return Err(Failure::invalid("updating group ALL is not allowed"));
        }
        let account = caller.account_id();
        let name = req.name.trim();
        if name.is_empty() {
            return Err(Failure::invalid("group name shouldn't be empty"));
        }
        limits::name("group name", name)?;
        let members =
            req.peers.as_ref().map_or(0, Vec::len) + req.resources.as_ref().map_or(0, Vec::len);
        limits::count("group members", members, limits::MAX_GROUP_MEMBERS)?;
        let peers = dedup(req.peers.unwrap_or_default());
        require_all(&tx.get_many::<Peer>(account, &peers).await?, &peers)?;
        let resources = dedup(req.resources.unwrap_or_default());
        for r in &resources {
            require_resource(tx, account, r).await?;
        }
        let group = Group {
            id: GroupId::new(id),
            name: name.to_string(),
            peers,
            resources,
            issued: old.map_or(GroupIssued::Api, |o| o.issued),
        };
        unique_label(tx, account, &group).await?;
        Ok(group)
    }

    /// The REST `Group`: the minimum plus peer names and resources.
    fn view(&self, names: &PeerNames) -> Result<Value, Failure> {
        let mut v = minimum(self);
        v["peers"] = self
            .peers
            .iter()
            .map(|p| json!({"id": p, "name": names.0.get(p.as_str()).cloned().unwrap_or_default()}))
            .collect();
        v["resources"] = json!(self.resources);
        Ok(v)
    }

    fn matches(&self, query: &BTreeMap<String, String>) -> bool {
        query.get("name").is_none_or(|n| &self.name == n)
    }

    async fn before_delete(&self, tx: &mut Tx, caller: &Caller) -> Result<(), Failure> {
        if self.is_all() {
            return Err(Failure::invalid("deleting group ALL is not allowed"));
        }
        match link(tx, caller.account_id(), &self.id).await? {
            Some((kind, name)) => Err(Failure::bad_request(format!(
                "group has been linked to {kind}: {name}"
            ))),
            None => Ok(()),
        }
    }
}

/// What still uses `id`, as (kind, name) for the error message.
async fn link(
    tx: &mut Tx,
    account: &str,
    id: &GroupId,
) -> Result<Option<(&'static str, String)>, Failure> {
    let has = |v: &[GroupId]| v.contains(id);
    for p in tx.list::<Policy>(account).await? {
        if p.rules
            .iter()
            .any(|r| has(&r.sources) || has(&r.destinations))
        {
            return Ok(Some(("policy", p.name)));
        }
    }
    for r in tx.list::<Route>(account).await? {
        if has(&r.groups) || has(&r.peer_groups) || has(&r.access_control_groups) {
            return Ok(Some(("route", r.network_id)));
        }
    }
    for n in tx.list::<NameserverGroup>(account).await? {
        if has(&n.groups) {
            return Ok(Some(("name server groups", n.name)));
        }
    }
    for k in tx.list::<SetupKey>(account).await? {
        if has(&k.auto_groups) {
            return Ok(Some(("setup key", k.name)));
        }
    }
    for u in tx.list::<User>(account).await? {
        if has(&u.auto_groups) {
            let name = if u.name.is_empty() {
                u.id.to_string()
            } else {
                u.name
            };
            return Ok(Some(("user", name)));
        }
    }
    for r in tx.list::<NetworkRouter>(account).await? {
        if has(&r.peer_groups) {
            return Ok(Some(("network router", r.id.to_string())));
        }
    }
    if let Some(a) = tx.get::<AccountRecord>(account, account).await? {
        if has(&a.dns_settings.disabled_management_groups) {
            return Ok(Some((
                "dns settings",
                "disabled management groups".to_string(),
            )));
        }
        if has(&a.settings.peer_expose_groups) {
            return Ok(Some(("account settings", "peer expose groups".to_string())));
        }
    }
    Ok(None)
}

//! `/api/networks`: networks, their resources (hosts, subnets, domains) and
//! their routers, plus `/api/networks/routers` across every network. A
//! resource's groups are kept on the groups themselves.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use meshplane_core::limits;
use meshplane_core::model::{
    Activity, Group, GroupId, Network, NetworkId, NetworkResource, NetworkRouter, PeerId, Policy,
    ResourceId, ResourceKind, ResourceRef, RouterId,
};
use meshplane_core::validate::{Cidr, Domain};
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::Caller;
use super::crud::{self, Context, Crud, Scope};
use super::failure::Failure;
use super::groups::{dedup, minimum};
use super::routing::{given, metric, routing_peers};
use super::{discard, load, require_all, App};
use crate::domain::audit::meta;
use crate::store::Tx;

pub fn routes() -> Router<App> {
    crud::routes::<Network>("/api/networks", "network_id")
        .merge(crud::routes::<NetworkResource>(
            "/api/networks/{network_id}/resources",
            "resource_id",
        ))
        .merge(crud::routes::<NetworkRouter>(
            "/api/networks/{network_id}/routers",
            "router_id",
        ))
        .route("/api/networks/routers", get(all_routers))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct NetworkRequest {
    name: String,
    description: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ResourceRequest {
    name: String,
    description: Option<String>,
    address: String,
    enabled: bool,
    groups: Vec<GroupId>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RouterRequest {
    peer: Option<String>,
    peer_groups: Option<Vec<GroupId>>,
    metric: i64,
    masquerade: bool,
    enabled: bool,
}

/// Everything a network's view draws on.
#[derive(Debug)]
pub struct NetworkContext {
    routers: Vec<NetworkRouter>,
    resources: Vec<NetworkResource>,
    groups: Vec<Group>,
    policies: Vec<Policy>,
}

impl Context<Network> for NetworkContext {
    async fn load(
        tx: &mut Tx,
        account: &str,
        _networks: &[&Network],
    ) -> Result<NetworkContext, Failure> {
        Ok(NetworkContext {
            routers: tx.list(account).await?,
            resources: tx.list(account).await?,
            groups: tx.list(account).await?,
            policies: tx.list(account).await?,
        })
    }
}

/// Whether a rule side grants `resource`: names it, or names a group that
/// holds it.
fn grants(
    side: Option<&ResourceRef>,
    groups: &[GroupId],
    resource: &NetworkResource,
    all: &[Group],
) -> bool {
    side.is_some_and(|r| r.id == resource.id)
        || all
            .iter()
            .filter(|g| groups.contains(&g.id))
            .any(|g| g.resources.iter().any(|r| r.id == resource.id))
}

impl Crud for Network {
    type Request = NetworkRequest;
    type Scope = ();
    type Context = NetworkContext;

    const CREATED: Activity = Activity::NETWORK_CREATED;
    const UPDATED: Activity = Activity::NETWORK_UPDATED;
    const DELETED: Activity = Activity::NETWORK_DELETED;

    async fn build(
        _tx: &mut Tx,
        _caller: &Caller,
        _scope: &(),
        id: String,
        _old: Option<&Network>,
        req: NetworkRequest,
    ) -> Result<Network, Failure> {
        let name = req.name.trim();
        if name.is_empty() {
            return Err(Failure::invalid("network name shouldn't be empty"));
        }
        limits::name("network name", name)?;
        limits::description(
            "network description",
            req.description.as_deref().unwrap_or_default(),
        )?;
        Ok(Network {
            id: NetworkId::new(id),
            name: name.to_string(),
            description: req.description.unwrap_or_default(),
        })
    }

    /// The REST `Network`: ids of its routers and resources, the policies
    /// that grant its resources, and how many peers route for it.
    fn view(&self, ctx: &NetworkContext) -> Result<Value, Failure> {
        let routers: Vec<&NetworkRouter> = ctx
            .routers
            .iter()
            .filter(|r| r.network_id == self.id)
            .collect();
        let resources: Vec<&NetworkResource> = ctx
            .resources
            .iter()
            .filter(|r| r.network_id == self.id)
            .collect();
        let policies: Vec<&str> = ctx
            .policies
            .iter()
            .filter(|p| {
                p.rules.iter().any(|rule| {
                    resources.iter().any(|res| {
                        grants(
                            rule.destination_resource.as_ref(),
                            &rule.destinations,
                            res,
                            &ctx.groups,
                        )
                    })
                })
            })
            .map(|p| p.id.as_str())
            .collect();
        let routing_peers: usize = routers
            .iter()
            .map(|r| match r.peer {
                Some(_) => 1,
                None => ctx
                    .groups
                    .iter()
                    .filter(|g| r.peer_groups.contains(&g.id))
                    .map(|g| g.peers.len())
                    .sum(),
            })
            .sum();
        Ok(json!({
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "routers": routers.iter().map(|r| &r.id).collect::<Vec<_>>(),
            "routing_peers_count": routing_peers,
            "resources": resources.iter().map(|r| &r.id).collect::<Vec<_>>(),
            "policies": policies,
        }))
    }

    /// Takes the network's resources and routers with it.
    async fn before_delete(&self, tx: &mut Tx, caller: &Caller) -> Result<(), Failure> {
        let account = caller.account_id();
        for resource in tx.list::<NetworkResource>(account).await? {
            if resource.network_id == self.id {
                resource.before_delete(tx, caller).await?;
                discard(tx, caller, &resource, NetworkResource::DELETED).await?;
            }
        }
        for router in tx.list::<NetworkRouter>(account).await? {
            if router.network_id == self.id {
                discard(tx, caller, &router, NetworkRouter::DELETED).await?;
            }
        }
        Ok(())
    }
}

/// The kind of resource an address names.
fn kind_of(address: &str) -> Result<ResourceKind, Failure> {
    if let Ok(cidr) = Cidr::parse_host_or_cidr(address) {
        return Ok(if cidr.0.prefix_len() == 32 {
            ResourceKind::Host
        } else {
            ResourceKind::Subnet
        });
    }
    if address.parse::<Domain>().is_ok() {
        return Ok(ResourceKind::Domain);
    }
    Err(Failure::invalid(format!(
        "invalid address \"{address}\": must be an IP address, a CIDR or a domain"
    )))
}

/// Puts the resource in exactly `wanted` of the account's groups.
async fn set_membership(
    tx: &mut Tx,
    caller: &Caller,
    r: &NetworkResource,
    wanted: &[GroupId],
) -> Result<(), Failure> {
    let account = caller.account_id();
    let reference = ResourceRef {
        id: r.id.clone(),
        kind: r.kind,
    };
    for mut g in tx.list::<Group>(account).await? {
        let member = g.resources.iter().any(|x| x.id == r.id);
        let want = wanted.contains(&g.id);
        let stale_kind = member && !g.resources.contains(&reference);
        if member == want && !stale_kind {
            continue;
        }
        g.resources.retain(|x| x.id != r.id);
        if want {
            g.resources.push(reference.clone());
            g.resources.sort();
        }
        tx.put(account, &g).await?;
        if member != want {
            let activity = if want {
                Activity::RESOURCE_ADDED_TO_GROUP
            } else {
                Activity::RESOURCE_REMOVED_FROM_GROUP
            };
            caller
                .audit(
                    tx,
                    activity,
                    r.id.as_str(),
                    meta([("group", g.id.as_str()), ("name", &r.name)]),
                )
                .await?;
        }
    }
    Ok(())
}

impl Scope for Network {
    /// The network a nested path names.
    async fn resolve(tx: &mut Tx, account: &str, parent: Option<&str>) -> Result<Network, Failure> {
        load::<Network>(tx, account, parent.unwrap_or_default()).await
    }
}

/// Every group: a resource's groups are the ones that hold it.
impl Context<NetworkResource> for Vec<Group> {
    async fn load(
        tx: &mut Tx,
        account: &str,
        _resources: &[&NetworkResource],
    ) -> Result<Vec<Group>, Failure> {
        Ok(tx.list::<Group>(account).await?)
    }
}

impl Crud for NetworkResource {
    type Request = ResourceRequest;
    type Scope = Network;
    type Context = Vec<Group>;

    const CREATED: Activity = Activity::NETWORK_RESOURCE_CREATED;
    const UPDATED: Activity = Activity::NETWORK_RESOURCE_UPDATED;
    const DELETED: Activity = Activity::NETWORK_RESOURCE_DELETED;

    fn in_scope(&self, network: &Network) -> bool {
        self.network_id == network.id
    }

    /// Also moves the resource into exactly the requested groups.
    async fn build(
        tx: &mut Tx,
        caller: &Caller,
        network: &Network,
        id: String,
        _old: Option<&NetworkResource>,
        req: ResourceRequest,
    ) -> Result<NetworkResource, Failure> {
        let name = req.name.trim();
        if name.is_empty() {
            return Err(Failure::invalid("resource name shouldn't be empty"));
        }
        limits::name("resource name", name)?;
        limits::description(
            "resource description",
            req.description.as_deref().unwrap_or_default(),
        )?;
        limits::text("resource address", &req.address, limits::MAX_TEXT_CHARS)?;
        limits::items("groups", &req.groups)?;
        let address = req.address.trim().to_string();
        let kind = kind_of(&address)?;
        let groups = dedup(req.groups);
        require_all(
            &tx.get_many::<Group>(caller.account_id(), &groups).await?,
            &groups,
        )?;
        let resource = NetworkResource {
            id: ResourceId::new(id),
            network_id: network.id.clone(),
            name: name.to_string(),
            description: req.description.unwrap_or_default(),
            address,
            kind,
            enabled: req.enabled,
        };
        set_membership(tx, caller, &resource, &groups).await?;
        Ok(resource)
    }

    /// The REST `NetworkResource`: the groups holding it as `GroupMinimum`.
    fn view(&self, groups: &Vec<Group>) -> Result<Value, Failure> {
        let member: Vec<Value> = groups
            .iter()
            .filter(|g| g.resources.iter().any(|x| x.id == self.id))
            .map(minimum)
            .collect();
        Ok(json!({
            "id": self.id,
            "type": self.kind,
            "groups": member,
            "name": self.name,
            "description": self.description,
            "address": self.address,
            "enabled": self.enabled,
        }))
    }

    /// Refused while a policy names the resource; leaves its groups.
    async fn before_delete(&self, tx: &mut Tx, caller: &Caller) -> Result<(), Failure> {
        for p in tx.list::<Policy>(caller.account_id()).await? {
            let named = p.rules.iter().any(|rule| {
                rule.source_resource
                    .iter()
                    .chain(&rule.destination_resource)
                    .any(|x| x.id == self.id)
            });
            if named {
                return Err(Failure::bad_request(format!(
                    "resource has been linked to policy: {}",
                    p.name
                )));
            }
        }
        set_membership(tx, caller, self, &[]).await
    }
}

impl Crud for NetworkRouter {
    type Request = RouterRequest;
    type Scope = Network;
    type Context = ();

    const CREATED: Activity = Activity::NETWORK_ROUTER_CREATED;
    const UPDATED: Activity = Activity::NETWORK_ROUTER_UPDATED;
    const DELETED: Activity = Activity::NETWORK_ROUTER_DELETED;

    fn in_scope(&self, network: &Network) -> bool {
        self.network_id == network.id
    }

    async fn build(
        tx: &mut Tx,
        caller: &Caller,
        network: &Network,
        id: String,
        _old: Option<&NetworkRouter>,
        req: RouterRequest,
    ) -> Result<NetworkRouter, Failure> {
        let peer = given(req.peer).map(PeerId::new);
        limits::items(
            "peer groups",
            req.peer_groups.as_deref().unwrap_or_default(),
        )?;
        let peer_groups = dedup(req.peer_groups.unwrap_or_default());
        routing_peers(tx, caller.account_id(), peer.as_ref(), &peer_groups).await?;
        Ok(NetworkRouter {
            id: RouterId::new(id),
            network_id: network.id.clone(),
            peer,
            peer_groups,
            metric: metric(req.metric)?,
            masquerade: req.masquerade,
            enabled: req.enabled,
        })
    }
}

async fn all_routers(
    State(app): State<App>,
    caller: Caller,
) -> Result<Json<Vec<NetworkRouter>>, Failure> {
    let mut tx = app.store.read().await?;
    Ok(Json(tx.list::<NetworkRouter>(caller.account_id()).await?))
}

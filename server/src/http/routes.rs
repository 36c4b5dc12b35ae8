//! `/api/routes`: network routes served by routing peers.

use axum::Router;
use meshplane_core::limits;
use meshplane_core::model::{Activity, Group, GroupId, PeerId, Route, RouteId};
use meshplane_core::validate::{Cidr, Domain};
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::Caller;
use super::crud::{self, Crud};
use super::failure::Failure;
use super::groups::dedup;
use super::routing::{given, metric, routing_peers};
use super::{require_all, App};
use crate::store::{StoreError, Tx};

pub fn routes() -> Router<App> {
    crud::routes::<Route>("/api/routes", "route_id")
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RouteRequest {
    description: String,
    network_id: String,
    enabled: bool,
    peer: Option<String>,
    peer_groups: Option<Vec<GroupId>>,
    network: Option<String>,
    domains: Option<Vec<String>>,
    metric: i64,
    masquerade: bool,
    groups: Vec<GroupId>,
    keep_route: bool,
    access_control_groups: Option<Vec<GroupId>>,
}

impl Crud for Route {
    type Request = RouteRequest;
    type Scope = ();
    type Context = ();

    const CREATED: Activity = Activity::ROUTE_CREATED;
    const UPDATED: Activity = Activity::ROUTE_UPDATED;
    const DELETED: Activity = Activity::ROUTE_REMOVED;

    async fn build(
        tx: &mut Tx,
        caller: &Caller,
        _scope: &(),
        id: String,
        _old: Option<&Route>,
        req: RouteRequest,
    ) -> Result<Route, Failure> {
        let account = caller.account_id();
        let network_id = req.network_id.trim();
        if network_id.is_empty() || network_id.chars().count() > 40 {
            return Err(Failure::invalid("identifier should be between 1 and 40"));
        }
        limits::description("route description", &req.description)?;
        let network = given(req.network);
        let domains = req.domains.unwrap_or_default();
        limits::items("domains", &domains)?;
        limits::items("groups", &req.groups)?;
        limits::items(
            "peer groups",
            req.peer_groups.as_deref().unwrap_or_default(),
        )?;
        limits::items(
            "access control groups",
            req.access_control_groups.as_deref().unwrap_or_default(),
        )?;
        match (&network, domains.is_empty()) {
            (Some(_), false) => {
                return Err(Failure::invalid(
                    "only one of 'network' or 'domains' should be provided",
                ))
            }
            (None, true) => {
                return Err(Failure::invalid(
                    "either 'network' or 'domains' should be provided",
                ))
            }
            (Some(n), true) => {
                n.parse::<Cidr>()?;
            }
            (None, false) => {
                for d in &domains {
                    d.parse::<Domain>()?;
                }
            }
        }
        let peer = given(req.peer).map(PeerId::new);
        let peer_groups = dedup(req.peer_groups.unwrap_or_default());
        routing_peers(tx, account, peer.as_ref(), &peer_groups).await?;
        if req.groups.is_empty() {
            return Err(Failure::invalid(
                "route should have at least one distribution group",
            ));
        }
        let access_control_groups = dedup(req.access_control_groups.unwrap_or_default());
        let named: Vec<&GroupId> = req.groups.iter().chain(&access_control_groups).collect();
        let groups = tx.get_many::<Group>(account, &named).await?;
        require_all(&groups, &req.groups)?;
        require_all(&groups, &access_control_groups)?;
        Ok(Route {
            id: RouteId::new(id),
            description: req.description,
            network_id: network_id.to_string(),
            enabled: req.enabled,
            peer,
            peer_groups,
            network,
            domains,
            metric: metric(req.metric)?,
            masquerade: req.masquerade,
            groups: dedup(req.groups),
            keep_route: req.keep_route,
            access_control_groups,
        })
    }

    /// The REST `Route`: the stored route plus its `network_type`.
    fn view(&self, _ctx: &()) -> Result<Value, Failure> {
        let mut v = serde_json::to_value(self).map_err(StoreError::from)?;
        v["network_type"] = json!(if self.network.is_some() {
            "IPv4"
        } else {
            "Domain"
        });
        Ok(v)
    }
}

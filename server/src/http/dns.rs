//! `/api/dns`: nameserver groups and the account's DNS settings.

use std::net::IpAddr;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use meshplane_core::limits;
use meshplane_core::model::{
    Activity, DnsSettings, Group, GroupId, Nameserver, NameserverGroup, NameserverGroupId,
};
use meshplane_core::validate::Domain;
use serde::Deserialize;

use super::auth::Caller;
use super::crud::{self, unique_label, Crud};
use super::failure::{Body, Failure};
use super::groups::dedup;
use super::{load, require_all, App};
use crate::records::AccountRecord;
use crate::store::Tx;

/// How many nameservers a group holds.
const NAMESERVERS: std::ops::RangeInclusive<usize> = 1..=3;
/// Longest nameserver group name.
const MAX_NAME: usize = 40;

pub fn routes() -> Router<App> {
    crud::routes::<NameserverGroup>("/api/dns/nameservers", "nsgroup_id")
        .route("/api/dns/settings", get(settings).put(update_settings))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct NameserverRequest {
    ip: String,
    ns_type: String,
    port: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct NameserverGroupRequest {
    name: String,
    description: String,
    nameservers: Vec<NameserverRequest>,
    enabled: bool,
    groups: Vec<GroupId>,
    primary: bool,
    domains: Vec<String>,
    search_domains_enabled: bool,
}

fn nameserver(ns: NameserverRequest) -> Result<Nameserver, Failure> {
    if ns.ip.parse::<IpAddr>().is_err() {
        return Err(Failure::invalid(format!(
            "invalid nameserver IP \"{}\"",
            ns.ip
        )));
    }
    if ns.ns_type != "udp" {
        return Err(Failure::invalid(format!(
            "invalid nameserver type \"{}\": only udp is supported",
            ns.ns_type
        )));
    }
    let port = u16::try_from(ns.port)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| Failure::invalid("invalid port number: must be between 1 and 65535"))?;
    Ok(Nameserver {
        ip: ns.ip,
        ns_type: ns.ns_type,
        port,
    })
}

impl Crud for NameserverGroup {
    type Request = NameserverGroupRequest;
    type Scope = ();
    type Context = ();

    const CREATED: Activity = Activity::NAMESERVER_GROUP_CREATED;
    const UPDATED: Activity = Activity::NAMESERVER_GROUP_UPDATED;
    const DELETED: Activity = Activity::NAMESERVER_GROUP_DELETED;

    async fn build(
        tx: &mut Tx,
        caller: &Caller,
        _scope: &(),
        id: String,
        _old: Option<&NameserverGroup>,
        req: NameserverGroupRequest,
    ) -> Result<NameserverGroup, Failure> {
        let account = caller.account_id();
        let name = req.name.trim();
        if name.is_empty() || name.chars().count() > MAX_NAME {
            return Err(Failure::invalid(
                "nameserver group name should be between 1 and 40",
            ));
        }
        limits::description("nameserver group description", &req.description)?;
        limits::items("domains", &req.domains)?;
        limits::items("groups", &req.groups)?;
        if !NAMESERVERS.contains(&req.nameservers.len()) {
            return Err(Failure::invalid("the list of nameservers should be 1 to 3"));
        }
        match (req.primary, req.domains.is_empty()) {
            (true, false) => {
                return Err(Failure::invalid(
                    "a primary nameserver group can't have domains",
                ))
            }
            (false, true) => {
                return Err(Failure::invalid(
                    "a nameserver group should be primary or have at least one domain",
                ))
            }
            _ => {}
        }
        for d in &req.domains {
            d.parse::<Domain>()?;
        }
        if req.groups.is_empty() {
            return Err(Failure::invalid(
                "a nameserver group should have at least one distribution group",
            ));
        }
        require_all(
            &tx.get_many::<Group>(account, &req.groups).await?,
            &req.groups,
        )?;
        let ns = NameserverGroup {
            id: NameserverGroupId::new(id),
            name: name.to_string(),
            description: req.description,
            nameservers: req
                .nameservers
                .into_iter()
                .map(nameserver)
                .collect::<Result<_, _>>()?,
            enabled: req.enabled,
            groups: dedup(req.groups),
            primary: req.primary,
            domains: req.domains,
            search_domains_enabled: req.search_domains_enabled,
        };
        unique_label(tx, account, &ns).await?;
        Ok(ns)
    }
}

async fn settings(caller: Caller) -> Json<DnsSettings> {
    Json(caller.account.dns_settings)
}

async fn update_settings(
    State(app): State<App>,
    caller: Caller,
    Body(req): Body<DnsSettings>,
) -> Result<Json<DnsSettings>, Failure> {
    let account_id = caller.account_id();
    let mut tx = app.store.write().await?;
    let mut account = load::<AccountRecord>(&mut tx, account_id, account_id).await?;
    limits::items(
        "disabled management groups",
        &req.disabled_management_groups,
    )?;
    let wanted = dedup(req.disabled_management_groups);
    require_all(&tx.get_many::<Group>(account_id, &wanted).await?, &wanted)?;
    let old = &account.dns_settings.disabled_management_groups;
    caller
        .audit_group_changes(
            &mut tx,
            account_id,
            old,
            &wanted,
            (
                Activity::GROUP_ADDED_TO_DISABLED_MANAGEMENT_GROUPS,
                Activity::GROUP_REMOVED_FROM_DISABLED_MANAGEMENT_GROUPS,
            ),
        )
        .await?;
    account.dns_settings.disabled_management_groups = wanted;
    tx.put(account_id, &account).await?;
    tx.commit().await?;
    Ok(Json(account.dns_settings))
}

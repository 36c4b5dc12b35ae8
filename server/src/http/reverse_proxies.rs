//! `/api/reverse-proxies`: the services `meshplane expose` publishes and
//! the domains they may live under.
//!
//! Services are the account's active expose sessions in the reference's
//! `Service` shape. Every one is marked `"source": "ephemeral"` with the
//! exposing peer as `source_peer`: they come from `meshplane expose`, live
//! only as long as its session, and cannot be edited here. The service id
//! is its domain (the key renew and stop use too).
//!
//! The server's proxy domain is listed first as the account's one `free`
//! domain; the account's own domains are `custom` and stored
//! ([`CustomDomain`]).

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use meshplane_core::expose::Session;
use meshplane_core::limits;
use meshplane_core::model::Peer;
use meshplane_core::validate::Domain;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::Caller;
use super::failure::{Body, Failure, Ids};
use super::App;
use crate::expose::CustomDomain;
use crate::ids;

/// The id the free (proxy) domain is listed with.
const FREE_DOMAIN_ID: &str = "free";

pub fn routes() -> Router<App> {
    Router::new()
        .route("/api/reverse-proxies/services", get(list_services))
        .route(
            "/api/reverse-proxies/services/{service_id}",
            get(read_service),
        )
        .route(
            "/api/reverse-proxies/domains",
            get(list_domains).post(create_domain),
        )
        .route(
            "/api/reverse-proxies/domains/{domain_id}",
            delete(remove_domain),
        )
}

/// The REST `Service` of `s`; `host` is its peer's mesh address.
fn service_view(s: &Session, host: &str, proxy_cluster: &str) -> Value {
    let auth = &s.auth;
    json!({
        "id": s.id,
        "name": s.name,
        "domain": s.domain,
        // Not in the reference's schema: where visitors open it (the
        // scheme and port the account's proxy serves).
        "url": s.url,
        "mode": "http",
        "proxy_cluster": proxy_cluster,
        "targets": [{
            "target_id": s.peer_id,
            "target_type": "peer",
            "path": "/",
            "protocol": s.protocol.as_str(),
            "host": host,
            "port": s.port.get(),
            "enabled": true,
        }],
        "enabled": true,
        "terminated": false,
        "pass_host_header": false,
        "rewrite_redirects": false,
        "auth": {
            // Secrets are kept hashed and never shown.
            "password_auth": {"enabled": auth.password_hash.is_some(), "password": ""},
            "pin_auth": {"enabled": auth.pin_hash.is_some(), "pin": ""},
            "bearer_auth": {
                "enabled": !auth.user_group_ids.is_empty(),
                "distribution_groups": auth.user_group_ids,
            },
        },
        "meta": {"created_at": s.created_at, "status": "active"},
        "source": "ephemeral",
        "source_peer": s.peer_id,
    })
}

/// The account's sessions as REST services, sorted by domain.
async fn services(app: &App, account: &str) -> Result<Vec<(String, Value)>, Failure> {
    let (sessions, _) = app.expose.sessions(account).await;
    if sessions.is_empty() {
        return Ok(Vec::new());
    }
    let mut tx = app.store.read().await?;
    let peers: BTreeMap<String, Peer> = tx
        .list::<Peer>(account)
        .await?
        .into_iter()
        .map(|p| (p.id.to_string(), p))
        .collect();
    let cluster = app.expose.config().proxy_domain.as_str();
    Ok(sessions
        .iter()
        .filter_map(|s| {
            let peer = peers.get(s.peer_id.as_str())?;
            Some((s.id.clone(), service_view(s, &peer.ip.to_string(), cluster)))
        })
        .collect())
}

async fn list_services(State(app): State<App>, caller: Caller) -> Result<Json<Value>, Failure> {
    let all = services(&app, caller.account_id()).await?;
    Ok(Json(Value::Array(
        all.into_iter().map(|(_, v)| v).collect(),
    )))
}

async fn read_service(
    State(app): State<App>,
    caller: Caller,
    Ids(id): Ids<String>,
) -> Result<Json<Value>, Failure> {
    services(&app, caller.account_id())
        .await?
        .into_iter()
        .find(|(sid, _)| sid == &id)
        .map(|(_, v)| Json(v))
        .ok_or_else(|| Failure::not_found("service", &id))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct DomainRequest {
    domain: String,
    target_cluster: Option<String>,
}

/// The REST `ReverseProxyDomain`.
fn domain_view(id: &str, domain: &str, kind: &str, cluster: &str) -> Value {
    json!({
        "id": id,
        "domain": domain,
        "validated": true,
        "type": kind,
        "target_cluster": cluster,
        "supports_custom_ports": false,
        "require_subdomain": true,
        "supports_crowdsec": false,
        "supports_private": false,
    })
}

async fn list_domains(State(app): State<App>, caller: Caller) -> Result<Json<Value>, Failure> {
    let proxy = app.expose.config().proxy_domain.as_str();
    let mut tx = app.store.read().await?;
    let custom = tx.list::<CustomDomain>(caller.account_id()).await?;
    let out: Vec<Value> = std::iter::once(domain_view(FREE_DOMAIN_ID, proxy, "free", proxy))
        .chain(
            custom
                .iter()
                .map(|d| domain_view(&d.id, d.domain.as_str(), "custom", &d.target_cluster)),
        )
        .collect();
    Ok(Json(Value::Array(out)))
}

async fn create_domain(
    State(app): State<App>,
    caller: Caller,
    Body(req): Body<DomainRequest>,
) -> Result<Json<Value>, Failure> {
    let domain: Domain = req.domain.trim().parse()?;
    let cluster = req.target_cluster.as_deref().unwrap_or_default();
    limits::text("target cluster", cluster, limits::MAX_TEXT_CHARS)?;
    // Services get names under it: `<name>.*.example.com` is no name.
    if domain.as_str().starts_with("*.") {
        return Err(Failure::invalid(format!(
            "domain \"{domain}\" is a wildcard: register the domain services live under"
        )));
    }
    let proxy = &app.expose.config().proxy_domain;
    let account = caller.account_id();
    let mut tx = app.store.write().await?;
    let taken = &domain == proxy
        || tx
            .list::<CustomDomain>(account)
            .await?
            .iter()
            .any(|d| d.domain == domain);
    if taken {
        return Err(Failure::conflict(format!(
            "domain \"{domain}\" already exists"
        )));
    }
    let custom = CustomDomain {
        id: ids::new_id(),
        domain,
        target_cluster: req
            .target_cluster
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| proxy.to_string()),
    };
    tx.put(account, &custom).await?;
    tx.commit().await?;
    Ok(Json(domain_view(
        &custom.id,
        custom.domain.as_str(),
        "custom",
        &custom.target_cluster,
    )))
}

async fn remove_domain(
    State(app): State<App>,
    caller: Caller,
    Ids(id): Ids<String>,
) -> Result<StatusCode, Failure> {
    let mut tx = app.store.write().await?;
    if !tx.delete::<CustomDomain>(caller.account_id(), &id).await? {
        return Err(Failure::not_found("domain", &id));
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

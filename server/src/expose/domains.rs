//! `/api/reverse-proxies/domains`: the domains services may live under.
//!
//! The server's proxy domain is listed first as the account's one `free`
//! domain; the account's own domains are `custom` and stored. Only these
//! may follow `--with-custom-domain`. This server does not check DNS
//! ownership: a custom domain counts as validated once an administrator
//! registers it (the proxy's certificates are its own business).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use meshplane_core::limits;
use meshplane_core::validate::Domain;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::http::auth::Caller;
use crate::http::failure::{Body, Failure, Ids};
use crate::http::App;
use crate::ids;
use crate::store::{StoreError, Stored, Tx};

/// The id the free (proxy) domain is listed with.
const FREE_DOMAIN_ID: &str = "free";

pub fn routes() -> Router<App> {
    Router::new()
        .route("/api/reverse-proxies/domains", get(list).post(create))
        .route("/api/reverse-proxies/domains/{domain_id}", delete(remove))
}

/// A custom domain of an account, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomDomain {
    pub id: String,
    pub domain: Domain,
    /// The proxy cluster the administrator named for it.
    #[serde(default)]
    pub target_cluster: String,
}

impl Stored for CustomDomain {
    const KIND: &'static str = "proxy_domain";
    const LABEL: &'static str = "domain";
    fn key(&self) -> &str {
        &self.id
    }
    fn label(&self) -> &str {
        self.domain.as_str()
    }
}

/// The custom domains of `account`, for CreateExpose.
pub async fn custom_domains(tx: &mut Tx, account: &str) -> Result<Vec<Domain>, StoreError> {
    Ok(tx
        .list::<CustomDomain>(account)
        .await?
        .into_iter()
        .map(|d| d.domain)
        .collect())
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct DomainRequest {
    domain: String,
    target_cluster: Option<String>,
}

/// The REST `ReverseProxyDomain`.
fn view(id: &str, domain: &str, kind: &str, cluster: &str) -> Value {
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

async fn list(State(app): State<App>, caller: Caller) -> Result<Json<Value>, Failure> {
    let proxy = app.expose.config().proxy_domain.as_str();
    let mut tx = app.store.read().await?;
    let custom = tx.list::<CustomDomain>(caller.account_id()).await?;
    let out: Vec<Value> = std::iter::once(view(FREE_DOMAIN_ID, proxy, "free", proxy))
        .chain(
            custom
                .iter()
                .map(|d| view(&d.id, d.domain.as_str(), "custom", &d.target_cluster)),
        )
        .collect();
    Ok(Json(Value::Array(out)))
}

async fn create(
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
    Ok(Json(view(
        &custom.id,
        custom.domain.as_str(),
        "custom",
        &custom.target_cluster,
    )))
}

async fn remove(
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

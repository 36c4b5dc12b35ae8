//! The domains services may live under besides the server's proxy domain:
//! the account's custom domains, registered over REST
//! (`/api/reverse-proxies/domains`) and stored. Only these may follow
//! `--with-custom-domain`. This server does not check DNS ownership: a
//! custom domain counts as validated once an administrator registers it
//! (the proxy's certificates are its own business).

use meshplane_core::validate::Domain;
use serde::{Deserialize, Serialize};

use crate::store::{StoreError, Stored, Tx};

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

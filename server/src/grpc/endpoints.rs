//! ReportEndpoints: where the peer's WireGuard socket can be reached. The
//! addresses go into the peer's record and from there into the maps of
//! the peers that see it, which dial them.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use tonic::Status;

use super::internal;
use super::login::checked_peer;
use super::service::Shared;
use crate::ids;

/// Most endpoints one peer may report.
pub const MAX_ENDPOINTS: usize = 16;

/// Stores `endpoints` (`ip:port`, deduplicated and sorted) as the peer's.
pub async fn report(shared: &Shared, key: &str, endpoints: Vec<String>) -> Result<(), Status> {
    if endpoints.len() > MAX_ENDPOINTS {
        return Err(Status::invalid_argument(format!(
            "too many endpoints: at most {MAX_ENDPOINTS} may be reported"
        )));
    }
    let checked = endpoints
        .iter()
        .map(|e| endpoint(e))
        .collect::<Result<BTreeSet<String>, Status>>()?;
    let endpoints: Vec<String> = checked.into_iter().collect();
    let mut tx = shared.store.write().await.map_err(internal)?;
    let (account, mut peer) = checked_peer(&mut tx, key, ids::now()).await?;
    if peer.endpoints == endpoints {
        return Ok(());
    }
    peer.endpoints = endpoints;
    tx.put(account.id.as_str(), &peer).await.map_err(internal)?;
    tx.commit().await.map_err(internal)
}

/// `text` as a dialable `ip:port` (no unspecified address, no port 0).
fn endpoint(text: &str) -> Result<String, Status> {
    text.trim()
        .parse::<SocketAddr>()
        .ok()
        .filter(|a| a.port() != 0 && !a.ip().is_unspecified())
        .map(|a| a.to_string())
        .ok_or_else(|| {
            Status::invalid_argument(format!("invalid endpoint \"{text}\": must be ip:port"))
        })
}

#[cfg(test)]
mod tests {
    use super::endpoint;

    #[test]
    fn endpoints_must_be_dialable() {
        assert_eq!(endpoint(" 192.0.2.1:51820 ").unwrap(), "192.0.2.1:51820");
        assert_eq!(
            endpoint("[2001:db8::1]:51820").unwrap(),
            "[2001:db8::1]:51820"
        );
        for bad in [
            "192.0.2.1",
            "0.0.0.0:51820",
            "192.0.2.1:0",
            "host:51820",
            "",
        ] {
            let status = endpoint(bad).unwrap_err();
            assert_eq!(status.code(), tonic::Code::InvalidArgument, "{bad}");
            assert_eq!(
                status.message(),
                format!("invalid endpoint \"{bad}\": must be ip:port")
            );
        }
    }
}

//! Rules shared by routes and network routers: who routes, and the metric.

use meshplane_core::model::{Group, GroupId, Peer, PeerId};

use super::failure::Failure;
use super::require_all;
use crate::store::Tx;

/// Allowed route / router metrics.
const METRICS: std::ops::RangeInclusive<u32> = 1..=9999;

/// A metric in 1..=9999.
pub fn metric(m: i64) -> Result<u32, Failure> {
    u32::try_from(m)
        .ok()
        .filter(|m| METRICS.contains(m))
        .ok_or_else(|| Failure::invalid("metric should be between 1 and 9999"))
}

/// Exactly one of a routing peer and routing peer groups, and it exists.
pub async fn routing_peers(
    tx: &mut Tx,
    account: &str,
    peer: Option<&PeerId>,
    peer_groups: &[GroupId],
) -> Result<(), Failure> {
    match (peer, peer_groups.is_empty()) {
        (Some(_), false) => Err(Failure::invalid(
            "only one of peer or peer_groups should be provided",
        )),
        (None, true) => Err(Failure::invalid(
            "either peer or peer_groups should be provided",
        )),
        (Some(p), true) => require_all(&tx.get_many::<Peer>(account, &[p]).await?, &[p]),
        (None, false) => require_all(
            &tx.get_many::<Group>(account, peer_groups).await?,
            peer_groups,
        ),
    }
}

/// An empty string means "not given", as the dashboards send it.
pub fn given(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty())
}

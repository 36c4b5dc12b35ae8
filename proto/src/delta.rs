//! Map deltas on the wire: the core's [`MapDelta`] and its protobuf form
//! [`v1::MapDelta`], and the map digest as bytes.
//!
//! Entries convert exactly as in a whole map ([`crate::map`]), and decoding
//! reports the same [`MapError`]s. An unchanged list travels as an absent
//! message; a list's positions and entries travel as two parallel lists,
//! which must have the same length.

use std::sync::Arc;

use meshplane_core::netmap::delta::{DnsDelta, ListDelta, MapDelta, MapDigest, ZonesDelta};
use meshplane_core::netmap::owned;

use crate::map::{
    custom_zone, firewall_rule, from_custom_zone, from_firewall_rule, from_nameserver_group,
    from_prefix, from_record, from_remote_peer, from_route, from_route_firewall_rule, missing,
    nameserver_group, prefix, record, remote_peer, route, route_firewall_rule, MapError,
};
use crate::v1;

/// The digest as it travels (32 bytes).
pub fn digest_bytes(digest: &MapDigest) -> Vec<u8> {
    digest.0.to_vec()
}

/// A received digest; `field` names it in the error.
pub fn from_digest_bytes(field: &'static str, bytes: &[u8]) -> Result<MapDigest, MapError> {
    <[u8; 32]>::try_from(bytes)
        .map(MapDigest)
        .map_err(|_| MapError::BadDigest {
            field,
            len: bytes.len(),
        })
}

/// Generates the conversion of one list's delta both ways.
macro_rules! list_delta {
    ($to:ident, $from:ident, $message:ident, $entry:ty, $encode:expr, $decode:expr) => {
        fn $to(delta: ListDelta<$entry>) -> Option<v1::$message> {
            if delta.is_empty() {
                return None;
            }
            let (added_at, added) = delta
                .added
                .into_iter()
                .map(|(at, entry)| (at, $encode(entry)))
                .unzip();
            Some(v1::$message {
                removed: delta.removed,
                added_at,
                added,
            })
        }

        fn $from(
            field: &'static str,
            delta: Option<v1::$message>,
        ) -> Result<ListDelta<$entry>, MapError> {
            let Some(delta) = delta else {
                return Ok(ListDelta::default());
            };
            if delta.added_at.len() != delta.added.len() {
                return Err(MapError::Positions {
                    field,
                    positions: delta.added_at.len(),
                    entries: delta.added.len(),
                });
            }
            let added = delta
                .added_at
                .into_iter()
                .zip(delta.added)
                .map(|(at, entry)| Ok((at, $decode(field, entry)?)))
                .collect::<Result<_, MapError>>()?;
            Ok(ListDelta {
                removed: delta.removed,
                added,
            })
        }
    };
}

list_delta!(
    peers,
    from_peers,
    RemotePeerListDelta,
    Arc<owned::RemotePeer>,
    remote_peer,
    from_remote_peer
);
list_delta!(
    firewall_rules,
    from_firewall_rules,
    FirewallRuleListDelta,
    owned::FirewallRule,
    firewall_rule,
    |_, r| from_firewall_rule(r)
);
list_delta!(
    routes,
    from_routes,
    RouteListDelta,
    owned::Route,
    route,
    |_, r| from_route(r)
);
list_delta!(
    route_firewall_rules,
    from_route_firewall_rules,
    RouteFirewallRuleListDelta,
    owned::RouteFirewallRule,
    route_firewall_rule,
    |_, r| from_route_firewall_rule(r)
);
list_delta!(
    records,
    from_records,
    RecordListDelta,
    Arc<owned::Record>,
    record,
    |_, r| Ok::<_, MapError>(from_record(r))
);
list_delta!(
    nameserver_groups,
    from_nameserver_groups,
    NameserverGroupListDelta,
    owned::NameserverGroup,
    nameserver_group,
    |_, g| from_nameserver_group(g)
);

impl From<MapDelta> for v1::MapDelta {
    fn from(delta: MapDelta) -> Self {
        v1::MapDelta {
            serial: delta.serial,
            network: delta.network.map(|n| v1::Network {
                id: n.id.0,
                net: n.net,
                dns_domain: n.dns_domain,
            }),
            peer_config: delta.peer_config.map(|c| v1::PeerConfig {
                address: Some(prefix(c.address)),
                fqdn: c.fqdn,
                ssh_enabled: c.ssh_enabled,
            }),
            peers: peers(delta.peers),
            offline_peers: peers(delta.offline_peers),
            firewall_rules: firewall_rules(delta.firewall_rules),
            routes: routes(delta.routes),
            route_firewall_rules: route_firewall_rules(delta.route_firewall_rules),
            dns: delta.dns.map(dns),
        }
    }
}

fn dns(delta: DnsDelta) -> v1::DnsDelta {
    let (zones_replaced, zones, zone_records) = match delta.zones {
        ZonesDelta::Replaced(zones) => (true, zones.into_iter().map(custom_zone).collect(), vec![]),
        ZonesDelta::Records(changes) => (
            false,
            Vec::new(),
            changes
                .into_iter()
                .map(|c| records(c).unwrap_or_default())
                .collect(),
        ),
    };
    v1::DnsDelta {
        service_enable: delta.service_enable,
        zones_replaced,
        zones,
        zone_records,
        nameserver_groups: nameserver_groups(delta.nameserver_groups),
    }
}

impl TryFrom<v1::MapDelta> for MapDelta {
    type Error = MapError;

    fn try_from(delta: v1::MapDelta) -> Result<Self, MapError> {
        Ok(MapDelta {
            serial: delta.serial,
            network: delta.network.map(|n| owned::Network {
                id: meshplane_core::model::AccountId(n.id),
                net: n.net,
                dns_domain: n.dns_domain,
            }),
            peer_config: delta
                .peer_config
                .map(|c| {
                    Ok::<_, MapError>(owned::OwnConfig {
                        address: from_prefix(
                            "delta.peer_config.address",
                            c.address.ok_or(missing("delta.peer_config.address"))?,
                        )?,
                        fqdn: c.fqdn,
                        ssh_enabled: c.ssh_enabled,
                    })
                })
                .transpose()?,
            peers: from_peers("delta.peers", delta.peers)?,
            offline_peers: from_peers("delta.offline_peers", delta.offline_peers)?,
            firewall_rules: from_firewall_rules("delta.firewall_rules", delta.firewall_rules)?,
            routes: from_routes("delta.routes", delta.routes)?,
            route_firewall_rules: from_route_firewall_rules(
                "delta.route_firewall_rules",
                delta.route_firewall_rules,
            )?,
            dns: delta.dns.map(from_dns).transpose()?,
        })
    }
}

fn from_dns(delta: v1::DnsDelta) -> Result<DnsDelta, MapError> {
    let zones = if delta.zones_replaced {
        ZonesDelta::Replaced(delta.zones.into_iter().map(from_custom_zone).collect())
    } else {
        ZonesDelta::Records(
            delta
                .zone_records
                .into_iter()
                .map(|c| from_records("delta.dns.zone_records", Some(c)))
                .collect::<Result<_, _>>()?,
        )
    };
    Ok(DnsDelta {
        service_enable: delta.service_enable,
        zones,
        nameserver_groups: from_nameserver_groups(
            "delta.dns.nameserver_groups",
            delta.nameserver_groups,
        )?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshplane_core::generate::bench_account;
    use meshplane_core::index::AccountIndex;
    use meshplane_core::netmap::delta::{apply_checked, diff, digest};
    use meshplane_core::netmap::{network_map, PeerMap};
    use meshplane_core::Timestamp;
    use prost::Message;

    const NOW: Timestamp = Timestamp::from_secs(1_750_000_000);

    fn map(account: &meshplane_core::model::Account) -> PeerMap {
        let index = AccountIndex::new(account);
        PeerMap::from(&network_map(&index, "peer-0", NOW).expect("peer-0"))
    }

    #[test]
    fn a_delta_survives_the_wire() {
        let account = bench_account(20, 2, NOW);
        let old = map(&account);
        let mut changed = account.clone();
        changed.peers.remove(3);
        changed.peers[5].name = "renamed".into();
        changed.peers[5].dns_label = "renamed".into();
        changed.settings.dns_domain = "other.example".into();
        changed.serial += 1;
        let new = map(&changed);
        let delta = diff(&old, &new);
        let bytes = v1::MapDelta::from(delta.clone()).encode_to_vec();
        let decoded = v1::MapDelta::decode(bytes.as_slice()).expect("decodes");
        let back = MapDelta::try_from(decoded).expect("converts");
        assert_eq!(back, delta);
        let mut held = old;
        let sent = from_digest_bytes("digest", &digest_bytes(&digest(&new))).expect("32 bytes");
        apply_checked(&mut held, &back, &sent).expect("applies");
        assert_eq!(held, new);
    }

    #[test]
    fn positions_and_entries_must_pair() {
        let delta = v1::MapDelta {
            firewall_rules: Some(v1::FirewallRuleListDelta {
                removed: vec![],
                added_at: vec![0, 1],
                added: vec![],
            }),
            ..v1::MapDelta::default()
        };
        assert_eq!(
            MapDelta::try_from(delta),
            Err(MapError::Positions {
                field: "delta.firewall_rules",
                positions: 2,
                entries: 0
            })
        );
        assert!(from_digest_bytes("digest", &[0; 31]).is_err());
    }
}

//! ReportTraffic: a peer's batch of flow events (a flow starting, ending,
//! or dropped by its firewall). They are stored with the reporter and its
//! user only while the account enables network traffic logging for the
//! peer (`network_traffic_logs_enabled`, limited to
//! `network_traffic_logs_groups` when that is not empty); otherwise the
//! call is refused with FAILED_PRECONDITION and the daemon discards the
//! batch. Packet and byte counts are kept only while
//! `network_traffic_packet_counter_enabled` is on.
//!
//! An event's id (a UUID the daemon draws) is its row's key, so a batch
//! sent again after a lost answer is stored once.

use std::net::Ipv4Addr;

use meshplane_core::model::{Group, Peer};
use meshplane_core::Timestamp;
use meshplane_proto::v1::{FlowDirection, FlowEvent, FlowEventType, ReportTrafficRequest};
use tonic::Status;

use super::internal;
use super::login::checked_peer;
use super::service::Shared;
use crate::domain::traffic_events::Reported;
use crate::ids;
use crate::records::AccountRecord;
use crate::store::{TrafficRow, Tx};

/// Most events one report may carry.
pub const MAX_EVENTS: usize = 1000;

/// Stores the events of the peer holding `key`; answers how many were new.
pub async fn report(
    shared: &Shared,
    key: &str,
    request: ReportTrafficRequest,
) -> Result<u32, Status> {
    if request.events.len() > MAX_EVENTS {
        return Err(Status::invalid_argument(format!(
            "too many events: at most {MAX_EVENTS} may be reported at once"
        )));
    }
    let received = ids::now();
    let mut tx = shared.store.write().await.map_err(internal)?;
    let (account, peer) = checked_peer(&mut tx, key, received).await?;
    logging_enabled(&mut tx, &account, &peer).await?;
    let counted = account
        .settings
        .extra
        .network_traffic_packet_counter_enabled;
    let user_id = peer.user_id.as_ref().map(ToString::to_string);
    let rows = request
        .events
        .iter()
        .map(|e| {
            let reported = reported(e, received, counted)?;
            Ok(TrafficRow {
                id: e.event_id.to_ascii_lowercase(),
                reporter_id: peer.id.to_string(),
                user_id: user_id.clone().unwrap_or_default(),
                timestamp_ms: reported.timestamp.as_millis(),
                data: serde_json::to_string(&reported).map_err(internal)?,
            })
        })
        .collect::<Result<Vec<_>, Status>>()?;
    if request.lost > 0 {
        tracing::warn!(
            peer = %peer.id,
            lost = request.lost,
            "the peer discarded flow events its buffer could not hold"
        );
    }
    let stored = tx
        .append_traffic(&account.id, &rows)
        .await
        .map_err(internal)?;
    tx.commit().await.map_err(internal)?;
    Ok(u32::try_from(stored).unwrap_or(u32::MAX))
}

/// FAILED_PRECONDITION unless the account logs this peer's traffic.
async fn logging_enabled(tx: &mut Tx, account: &AccountRecord, peer: &Peer) -> Result<(), Status> {
    let extra = &account.settings.extra;
    if !extra.network_traffic_logs_enabled {
        return Err(Status::failed_precondition(
            "network traffic logging is disabled for this account",
        ));
    }
    let groups = &extra.network_traffic_logs_groups;
    if groups.is_empty() {
        return Ok(());
    }
    let mut member = false;
    for id in groups {
        let group = tx
            .get::<Group>(&account.id, id.as_str())
            .await
            .map_err(internal)?;
        member |= group.is_some_and(|g| g.peers.contains(&peer.id));
    }
    if !member {
        return Err(Status::failed_precondition(
            "network traffic logging is not enabled for this peer's groups",
        ));
    }
    Ok(())
}

/// The event as stored, or INVALID_ARGUMENT naming what is wrong with it.
fn reported(e: &FlowEvent, received: Timestamp, counted: bool) -> Result<Reported, Status> {
    uuid(&e.event_id, "event id")?;
    uuid(&e.flow_id, "flow id")?;
    let kind = match FlowEventType::try_from(e.r#type) {
        Ok(FlowEventType::Start) => "TYPE_START",
        Ok(FlowEventType::End) => "TYPE_END",
        Ok(FlowEventType::Drop) => "TYPE_DROP",
        Ok(FlowEventType::Unknown) => "TYPE_UNKNOWN",
        Err(_) => return Err(invalid("event type", &e.r#type.to_string())),
    };
    let direction = match FlowDirection::try_from(e.direction) {
        Ok(FlowDirection::Ingress) => "INGRESS",
        Ok(FlowDirection::Egress) => "EGRESS",
        Ok(FlowDirection::Unknown) => "DIRECTION_UNKNOWN",
        Err(_) => return Err(invalid("direction", &e.direction.to_string())),
    };
    if e.timestamp_ms < 0 {
        return Err(invalid("timestamp", &e.timestamp_ms.to_string()));
    }
    let count = |n: u64| if counted { n } else { 0 };
    Ok(Reported {
        flow_id: e.flow_id.to_ascii_lowercase(),
        kind: kind.to_string(),
        timestamp: Timestamp::from_millis(e.timestamp_ms),
        received,
        protocol: narrow(e.protocol, "protocol")?,
        direction: direction.to_string(),
        source_ip: ip(&e.source_ip, "source ip")?,
        source_port: narrow(e.source_port, "source port")?,
        destination_ip: ip(&e.destination_ip, "destination ip")?,
        destination_port: narrow(e.destination_port, "destination port")?,
        rx_packets: count(e.rx_packets),
        rx_bytes: count(e.rx_bytes),
        tx_packets: count(e.tx_packets),
        tx_bytes: count(e.tx_bytes),
        icmp_type: narrow(e.icmp_type, "icmp type")?,
        icmp_code: narrow(e.icmp_code, "icmp code")?,
    })
}

fn invalid(what: &str, value: &str) -> Status {
    Status::invalid_argument(format!("invalid {what} \"{value}\""))
}

/// `value` in the field's narrower type.
fn narrow<T: TryFrom<u32>>(value: u32, what: &str) -> Result<T, Status> {
    T::try_from(value).map_err(|_| invalid(what, &value.to_string()))
}

fn ip(text: &str, what: &str) -> Result<Ipv4Addr, Status> {
    text.parse().map_err(|_| invalid(what, text))
}

/// INVALID_ARGUMENT unless `text` is a UUID (8-4-4-4-12 hex digits).
fn uuid(text: &str, what: &str) -> Result<(), Status> {
    let groups: Vec<&str> = text.split('-').collect();
    let shaped = groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && groups
            .iter()
            .all(|g| g.bytes().all(|b| b.is_ascii_hexdigit()));
    if shaped {
        Ok(())
    } else {
        Err(Status::invalid_argument(format!(
            "invalid {what} \"{text}\": must be a UUID"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> FlowEvent {
        FlowEvent {
            event_id: "6f1c2a3b-0000-4000-8000-000000000001".into(),
            flow_id: "6F1C2A3B-0000-4000-8000-0000000000AA".into(),
            r#type: FlowEventType::End as i32,
            timestamp_ms: 1_700_000_000_000,
            protocol: 6,
            direction: FlowDirection::Egress as i32,
            source_ip: "100.64.0.1".into(),
            source_port: 40000,
            destination_ip: "100.64.0.2".into(),
            destination_port: 80,
            rx_packets: 3,
            rx_bytes: 300,
            tx_packets: 4,
            tx_bytes: 400,
            icmp_type: 0,
            icmp_code: 0,
        }
    }

    #[test]
    fn events_are_checked_and_counts_kept_only_when_counted() {
        let now = Timestamp::from_millis(5);
        let r = reported(&event(), now, true).unwrap();
        assert_eq!(r.kind, "TYPE_END");
        assert_eq!(r.direction, "EGRESS");
        assert_eq!(r.flow_id, "6f1c2a3b-0000-4000-8000-0000000000aa");
        assert_eq!((r.rx_bytes, r.tx_packets), (300, 4));
        let r = reported(&event(), now, false).unwrap();
        assert_eq!(
            (r.rx_packets, r.rx_bytes, r.tx_packets, r.tx_bytes),
            (0, 0, 0, 0)
        );

        let bad = [
            (
                FlowEvent {
                    flow_id: "x".into(),
                    ..event()
                },
                "invalid flow id \"x\": must be a UUID",
            ),
            (
                FlowEvent {
                    r#type: 9,
                    ..event()
                },
                "invalid event type \"9\"",
            ),
            (
                FlowEvent {
                    direction: 7,
                    ..event()
                },
                "invalid direction \"7\"",
            ),
            (
                FlowEvent {
                    protocol: 256,
                    ..event()
                },
                "invalid protocol \"256\"",
            ),
            (
                FlowEvent {
                    source_port: 70000,
                    ..event()
                },
                "invalid source port \"70000\"",
            ),
            (
                FlowEvent {
                    destination_ip: "h".into(),
                    ..event()
                },
                "invalid destination ip \"h\"",
            ),
            (
                FlowEvent {
                    timestamp_ms: -1,
                    ..event()
                },
                "invalid timestamp \"-1\"",
            ),
        ];
        for (e, message) in bad {
            let status = reported(&e, now, true).unwrap_err();
            assert_eq!(status.code(), tonic::Code::InvalidArgument);
            assert_eq!(status.message(), message);
        }
    }
}

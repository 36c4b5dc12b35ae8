//! Reporting the engine's flow log ([`crate::engine::flows`]) to the
//! management server: every few seconds, in sealed `ReportTraffic` calls of
//! at most [`BATCH`] events. The server refuses reports while the account
//! does not log this peer's traffic; a refused batch is discarded (the
//! account does not want it), one that could not be delivered goes back
//! into the buffer for the next round.

use std::time::Duration;

use meshplane_core::netmap::firewall::Direction;
use meshplane_proto::v1::{FlowDirection, FlowEvent, FlowEventType, ReportTrafficRequest};

use crate::engine::flows::{Batch, Event, FlowLog, Kind};
use crate::key::PrivateKey;
use crate::mgmt::client::{Management, ManagementError, Session};

/// How often events are reported unless `--flow-report-secs` says otherwise.
pub const DEFAULT_REPORT_EVERY: Duration = Duration::from_secs(10);
/// Most events in one report (the server's limit).
pub const BATCH: usize = 1000;

/// Reports `log`'s events to `server` as the peer holding `key`
/// every `every`, until the task is aborted.
pub async fn report(server: Management, key: PrivateKey, log: FlowLog, every: Duration) {
    let mut session: Option<Session> = None;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        loop {
            let batch = log.take(BATCH);
            if batch.is_empty() {
                break;
            }
            if session.is_none() {
                session = Session::connect(&server, &key).await.ok();
            }
            let Some(s) = session.as_mut() else {
                log.restore(batch);
                break;
            };
            match s.report_traffic(&to_request(&batch)).await {
                Ok(_) => {}
                Err(ManagementError::Refused(reason)) => {
                    tracing::debug!("flow events discarded: {reason}");
                    break;
                }
                Err(e) => {
                    tracing::debug!("flow report not delivered: {e}");
                    session = None;
                    log.restore(batch);
                    break;
                }
            }
        }
    }
}

/// A batch as the `ReportTraffic` request carries it.
pub fn to_request(batch: &Batch) -> ReportTrafficRequest {
    ReportTrafficRequest {
        events: batch.events.iter().map(to_proto).collect(),
        lost: batch.lost,
    }
}

fn to_proto(event: &Event) -> FlowEvent {
    FlowEvent {
        event_id: event.id.clone(),
        flow_id: event.flow_id.clone(),
        r#type: match event.kind {
            Kind::Start => FlowEventType::Start,
            Kind::End => FlowEventType::End,
            Kind::Drop => FlowEventType::Drop,
        } as i32,
        timestamp_ms: event.at_ms,
        protocol: u32::from(event.protocol),
        direction: match event.direction {
            Direction::In => FlowDirection::Ingress,
            Direction::Out => FlowDirection::Egress,
        } as i32,
        source_ip: event.source.0.to_string(),
        source_port: u32::from(event.source.1),
        destination_ip: event.destination.0.to_string(),
        destination_port: u32::from(event.destination.1),
        rx_packets: event.rx.0,
        rx_bytes: event.rx.1,
        tx_packets: event.tx.0,
        tx_bytes: event.tx.1,
        icmp_type: u32::from(event.icmp.0),
        icmp_code: u32::from(event.icmp.1),
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn events_keep_their_kind_direction_and_counts_on_the_wire() {
        let event = Event {
            id: "e".into(),
            flow_id: "f".into(),
            kind: Kind::Start,
            at_ms: 7,
            protocol: 6,
            direction: Direction::Out,
            source: (Ipv4Addr::new(100, 64, 0, 1), 40000),
            destination: (Ipv4Addr::new(100, 64, 0, 2), 80),
            rx: (1, 60),
            tx: (2, 120),
            icmp: (0, 0),
        };
        let request = to_request(&Batch {
            events: vec![event],
            lost: 5,
        });
        assert_eq!(request.lost, 5);
        let e = &request.events[0];
        assert_eq!(e.r#type, FlowEventType::Start as i32);
        assert_eq!(e.direction, FlowDirection::Egress as i32);
        assert_eq!((e.source_port, e.destination_port), (40000, 80));
        assert_eq!((e.tx_packets, e.tx_bytes, e.rx_packets), (2, 120, 1));
    }
}

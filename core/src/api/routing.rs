//! Routes on the peer: choosing routing peers over a sequence of state
//! changes ([`crate::routing::select`]), and a routing peer's forwarding
//! filter over a sequence of packets ([`crate::routing::forward`]).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{json, Value};

use super::{parse, to_value};
use crate::error::ApiError;
use crate::model::PeerId;
use crate::routing::forward::{Packet, RouteFilter, RouteRule};
use crate::routing::select::{Candidate, PeerState, Selector};
use crate::time::Timestamp;

pub(super) const OPS: &[&str] = &["routes_select", "route_forward_check"];

/// The routing peers' states at one moment.
#[derive(Deserialize)]
struct Step {
    #[serde(default)]
    states: BTreeMap<PeerId, PeerState>,
}

#[derive(Deserialize)]
struct Select {
    peer_id: PeerId,
    routes: Vec<Candidate>,
    steps: Vec<Step>,
}

/// A routed packet and the time it passes, in milliseconds of any
/// monotonic clock.
#[derive(Deserialize)]
struct TimedPacket {
    #[serde(flatten)]
    packet: Packet,
    #[serde(default)]
    at: i64,
}

#[derive(Deserialize)]
struct Check {
    rules: Vec<RouteRule>,
    packets: Vec<TimedPacket>,
}

pub(super) fn dispatch(op: &str, input: Value) -> Option<Result<Value, ApiError>> {
    match op {
        "routes_select" => Some(select(input)),
        "route_forward_check" => Some(check(input)),
        _ => None,
    }
}

/// One selection per step, each seeing the choices of the steps before.
fn select(input: Value) -> Result<Value, ApiError> {
    let Select {
        peer_id,
        routes,
        steps,
    } = parse(input)?;
    let mut selector = Selector::default();
    let selections = steps
        .iter()
        .map(|s| selector.select(&peer_id, &routes, |p| s.states.get(p).copied()))
        .collect::<Vec<_>>();
    Ok(json!({ "selections": to_value(&selections)? }))
}

/// Decides each packet in order, so replies see the flows earlier packets
/// opened.
fn check(input: Value) -> Result<Value, ApiError> {
    let Check { rules, packets } = parse(input)?;
    let mut filter = RouteFilter::new(&rules);
    let decisions = packets
        .iter()
        .map(|p| filter.check(&p.packet, Timestamp::from_millis(p.at)))
        .collect::<Vec<_>>();
    Ok(json!({ "decisions": to_value(&decisions)? }))
}

//! Routes on the peer: choosing routing peers over a sequence of state
//! changes ([`crate::routing::select`]), and a routing peer's forwarding
//! filter over a sequence of packets ([`crate::routing::forward`]).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{json, Value};

use super::{parse, to_value};
use crate::error::ApiError;
use crate::model::PeerId;
use crate::routing::forward::RouteRules;
use crate::routing::select::{Candidate, PeerState, Selector};

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

pub(super) fn dispatch(op: &str, input: Value) -> Option<Result<Value, ApiError>> {
    match op {
        "routes_select" => Some(select(input)),
        "route_forward_check" => Some(super::firewall::check::<RouteRules>(input)),
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

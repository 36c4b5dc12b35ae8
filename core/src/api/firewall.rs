//! The data plane's packet filter: a sequence of packets through one
//! stateful [`crate::firewall::Firewall`]; the same replay serves the
//! routing peer's filter.

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{parse, to_value};
use crate::error::ApiError;
use crate::firewall::{Decide, RuleSet, Stateful};
use crate::time::Timestamp;

pub(super) const OPS: &[&str] = &["firewall_check"];

/// A packet and the time it passes, in milliseconds of any monotonic clock.
#[derive(Deserialize)]
struct TimedPacket<P> {
    #[serde(flatten)]
    packet: P,
    #[serde(default)]
    at: i64,
}

#[derive(Deserialize)]
struct Check<R, P> {
    rules: Vec<R>,
    packets: Vec<TimedPacket<P>>,
}

pub(super) fn dispatch(op: &str, input: Value) -> Option<Result<Value, ApiError>> {
    match op {
        "firewall_check" => Some(check::<RuleSet>(input)),
        _ => None,
    }
}

/// Decides each packet in order through one stateful filter of `R`'s
/// rules, so replies see the flows earlier packets opened (the peer
/// firewall here, the routing peer's filter in [`super::routing`]).
pub(super) fn check<R>(input: Value) -> Result<Value, ApiError>
where
    R: Decide,
    R::Rule: DeserializeOwned,
    R::Packet: DeserializeOwned,
{
    let Check { rules, packets } = parse::<Check<R::Rule, R::Packet>>(input)?;
    let mut filter = Stateful::<R>::new(&rules);
    let decisions = packets
        .iter()
        .map(|p| filter.check(&p.packet, Timestamp::from_millis(p.at)))
        .collect::<Vec<_>>();
    Ok(json!({ "decisions": to_value(&decisions)? }))
}

//! The data plane's packet filter: a sequence of packets through one
//! stateful [`crate::firewall::Firewall`].

use serde::Deserialize;
use serde_json::{json, Value};

use super::{parse, to_value};
use crate::error::ApiError;
use crate::firewall::{Firewall, Packet, Rule};
use crate::time::Timestamp;

pub(super) const OPS: &[&str] = &["firewall_check"];

/// A packet and the time it passes, in milliseconds of any monotonic clock.
#[derive(Deserialize)]
struct TimedPacket {
    #[serde(flatten)]
    packet: Packet,
    #[serde(default)]
    at: i64,
}

#[derive(Deserialize)]
struct Check {
    rules: Vec<Rule>,
    packets: Vec<TimedPacket>,
}

pub(super) fn dispatch(op: &str, input: Value) -> Option<Result<Value, ApiError>> {
    match op {
        "firewall_check" => Some(check(input)),
        _ => None,
    }
}

/// Decides each packet in order, so replies see the flows earlier packets
/// opened.
fn check(input: Value) -> Result<Value, ApiError> {
    let Check { rules, packets } = parse(input)?;
    let mut fw = Firewall::new(&rules);
    let decisions = packets
        .iter()
        .map(|p| fw.check(&p.packet, Timestamp::from_millis(p.at)))
        .collect::<Vec<_>>();
    Ok(json!({ "decisions": to_value(&decisions)? }))
}

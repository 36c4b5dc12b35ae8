//! Posture checks: `check_posture`.

use serde::Deserialize;
use serde_json::{json, Value};

use super::parse;
use crate::error::ApiError;
use crate::model::{Peer, PostureCheck};
use crate::posture;

pub(super) const OPS: &[&str] = &["check_posture"];

#[derive(Deserialize)]
struct Input {
    checks: Vec<PostureCheck>,
    peer: Peer,
}

pub(super) fn dispatch(op: &str, input: Value) -> Option<Result<Value, ApiError>> {
    (op == "check_posture").then(|| {
        let i = parse::<Input>(input)?;
        Ok(match posture::evaluate_all(&i.checks, &i.peer) {
            Ok(()) => json!({ "passed": true, "failure": null }),
            Err(f) => json!({ "passed": false, "failure": f }),
        })
    })
}

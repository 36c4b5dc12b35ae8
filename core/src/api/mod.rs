//! Every core operation as JSON in, JSON out.
//!
//! A request is `{"op": "<name>", "input": {...}}`; the answer is
//! `{"ok": <value>}` or `{"error": {"code": "...", "message": "..."}}`.
//! Time (`now`, in RFC 3339 or integer milliseconds) and randomness (`seed`,
//! an integer that seeds ChaCha8) are fields of the input, never read from the
//! machine, so the same request always gets the same answer. The bindings
//! and the conformance runners are a few lines each on top of [`call`].
//!
//! Each area has its own submodule with a `dispatch` function and the list of
//! its op names.

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::ApiError;

mod expose;
mod firewall;
mod keys;
mod netmap;
mod permissions;
mod policy;
mod posture;
mod registration;
mod routing;
pub mod stateful;
mod validate;

/// One area's ops: `dispatch` answers `None` for an op it does not own.
struct Area {
    ops: &'static [&'static str],
    dispatch: fn(&str, Value) -> Option<Result<Value, ApiError>>,
}

const AREAS: &[Area] = &[
    Area {
        ops: validate::OPS,
        dispatch: validate::dispatch,
    },
    Area {
        ops: keys::OPS,
        dispatch: keys::dispatch,
    },
    Area {
        ops: policy::OPS,
        dispatch: policy::dispatch,
    },
    Area {
        ops: registration::OPS,
        dispatch: registration::dispatch,
    },
    Area {
        ops: posture::OPS,
        dispatch: posture::dispatch,
    },
    Area {
        ops: netmap::OPS,
        dispatch: netmap::dispatch,
    },
    Area {
        ops: expose::OPS,
        dispatch: expose::dispatch,
    },
    Area {
        ops: firewall::OPS,
        dispatch: firewall::dispatch,
    },
    Area {
        ops: permissions::OPS,
        dispatch: permissions::dispatch,
    },
    Area {
        ops: routing::OPS,
        dispatch: routing::dispatch,
    },
];

/// A request envelope.
#[derive(Debug, Deserialize)]
pub struct Request {
    pub op: String,
    #[serde(default)]
    pub input: Value,
}

/// Every op name, sorted.
pub fn ops() -> Vec<&'static str> {
    let mut all: Vec<&'static str> = AREAS.iter().flat_map(|a| a.ops.iter().copied()).collect();
    all.sort_unstable();
    all
}

/// Runs one op on a parsed input.
pub fn call_value(op: &str, input: Value) -> Result<Value, ApiError> {
    for area in AREAS {
        if area.ops.contains(&op) {
            return (area.dispatch)(op, input).unwrap_or_else(|| Err(ApiError::unknown_op(op)));
        }
    }
    Err(ApiError::unknown_op(op))
}

/// Runs a request given as JSON text and answers JSON text (the envelope
/// form). Never panics on bad input: malformed JSON is an `invalid_json` error.
pub fn call(request: &str) -> String {
    let answer = match serde_json::from_str::<Request>(request) {
        Ok(req) => call_value(&req.op, req.input),
        Err(e) => Err(ApiError::invalid_call(
            "invalid_json",
            format!("invalid request: {e}"),
        )),
    };
    envelope(answer).to_string()
}

/// Wraps a result in the `{"ok": ...}` / `{"error": ...}` envelope.
pub fn envelope(answer: Result<Value, ApiError>) -> Value {
    match answer {
        Ok(v) => json!({ "ok": v }),
        Err(e) => json!({ "error": { "code": e.code, "message": e.message } }),
    }
}

/// Parses an op's input into its typed form; a mismatch is `invalid_input`.
pub(crate) fn parse<T: DeserializeOwned>(input: Value) -> Result<T, ApiError> {
    serde_json::from_value(input).map_err(ApiError::invalid_input)
}

/// Serialises an op's output.
pub(crate) fn to_value<T: Serialize>(v: &T) -> Result<Value, ApiError> {
    serde_json::to_value(v).map_err(|e| ApiError::internal(format!("cannot serialise output: {e}")))
}

/// The deterministic generator behind every `seed` field.
pub(crate) fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

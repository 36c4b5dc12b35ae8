//! (being written)

use serde_json::Value;

use crate::error::ApiError;

pub(super) const OPS: &[&str] = &[];

pub(super) fn dispatch(_op: &str, _input: Value) -> Option<Result<Value, ApiError>> {
    None
}

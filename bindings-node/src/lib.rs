//! Node.js binding of meshplane-core (napi-rs).
//!
//! Everything here forwards to [`meshplane_core::api`]: JavaScript values
//! arrive as JSON values, the op runs in the core, and its answer goes back as
//! plain objects. An error from the core is thrown as an `Error` whose
//! `message` is the core's exact message and whose `code` is its stable code.

use meshplane_core::api;
use meshplane_core::ApiError;
use napi_derive::napi;
use serde_json::Value;

pub mod classes;
pub mod named;

/// A thrown JavaScript `Error` whose `code` is the core's error code. (The
/// exported functions spell the type out: napi's macro recognises `Result`
/// by name.)
type JsResult<T> = napi::Result<T, String>;

/// Turns a core error into the `Error` napi throws: `status` becomes `code`.
fn js_error(e: ApiError) -> napi::Error<String> {
    napi::Error::new(e.code, e.message)
}

/// The largest integer a JavaScript number holds exactly (2^53 - 1).
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

/// JavaScript has one number type, and napi reads an integer beyond 32 bits
/// as a float; the core wants JSON integers there (millisecond times, seeds).
/// Every integral number within the safe range becomes an integer again.
fn integers(v: &mut Value) {
    match v {
        Value::Number(n) => {
            if let Some(f) = n.as_f64().filter(|f| n.is_f64() && f.fract() == 0.0) {
                if f.abs() <= MAX_SAFE_INTEGER {
                    // Exact: |f| is an integer below 2^53.
                    *v = Value::from(f as i64);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integers),
        Value::Object(fields) => fields.values_mut().for_each(integers),
        _ => {}
    }
}

/// An input as the core reads it (none given: `{}`).
fn from_js(input: Option<Value>) -> Value {
    let mut v = input.unwrap_or_else(|| Value::Object(Default::default()));
    integers(&mut v);
    v
}

/// Runs any core op by name on an input object and answers its result.
/// Throws an `Error` with `code` and the core's message on failure.
#[napi(ts_args_type = "op: string, input?: any", ts_return_type = "any")]
pub fn call(op: String, input: Option<Value>) -> napi::Result<Value, String> {
    api::call_value(&op, from_js(input)).map_err(js_error)
}

/// Runs a request given as JSON text (`{"op": ..., "input": ...}`) and answers
/// the JSON envelope text (`{"ok": ...}` or `{"error": {"code", "message"}}`).
/// Never throws.
#[napi(js_name = "callJson")]
pub fn call_json(request: String) -> String {
    api::call(&request)
}

/// Every op name the core knows, sorted.
#[napi]
pub fn ops() -> Vec<&'static str> {
    api::ops()
}

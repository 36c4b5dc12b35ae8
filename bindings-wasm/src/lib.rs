//! WebAssembly binding of meshplane-core, for browsers and Node.
//!
//! Everything here forwards to [`meshplane_core::api`]: JavaScript values are
//! turned into JSON values, the op runs in the core, and its answer comes back
//! as plain objects. An error from the core is thrown as an `Error` whose
//! `message` is the core's exact message and whose `code` is its stable code,
//! so a dashboard can show the message and branch on the code.

use meshplane_core::api;
use meshplane_core::ApiError;
use serde::Serialize;
use serde_json::Value;
use wasm_bindgen::prelude::*;

mod classes;
mod named;

/// The JSON shapes of the ops, in the package's TypeScript declarations.
#[wasm_bindgen(typescript_custom_section)]
const TYPES: &str = include_str!("types.d.ts");

/// Turns a core error into a thrown JavaScript `Error` carrying `code`.
fn js_error(e: ApiError) -> JsValue {
    let err = js_sys::Error::new(&e.message);
    // Setting a property on a fresh Error object cannot fail.
    let _ = js_sys::Reflect::set(&err, &"code".into(), &e.code.into());
    let _ = js_sys::Reflect::set(&err, &"kind".into(), &e.kind.as_str().into());
    err.into()
}

/// A JavaScript value the core cannot read is the caller's bad input.
fn from_js(input: JsValue) -> Result<Value, JsValue> {
    if input.is_undefined() {
        return Ok(Value::Object(Default::default()));
    }
    serde_wasm_bindgen::from_value(input).map_err(|e| js_error(ApiError::invalid_input(e)))
}

/// Plain objects (not `Map`s) so the answer reads like parsed JSON.
fn to_js(value: &Value) -> Result<JsValue, JsValue> {
    value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(|e| js_error(ApiError::internal(format!("cannot convert output: {e}"))))
}

/// Runs one op on a parsed input: the value-in, value-out form of every call.
fn run(op: &str, input: Value) -> Result<JsValue, JsValue> {
    to_js(&api::call_value(op, input).map_err(js_error)?)
}

/// Runs any core op by name on an input object and answers its result.
/// Throws an `Error` with `code` and the core's message on failure.
#[wasm_bindgen(unchecked_return_type = "any")]
pub fn call(
    op: &str,
    #[wasm_bindgen(unchecked_param_type = "any")] input: JsValue,
) -> Result<JsValue, JsValue> {
    run(op, from_js(input)?)
}

/// Runs a request given as JSON text (`{"op": ..., "input": ...}`) and answers
/// the JSON envelope text (`{"ok": ...}` or `{"error": {"code", "message"}}`).
/// Never throws.
#[wasm_bindgen(js_name = callJson)]
pub fn call_json(request: &str) -> String {
    api::call(request)
}

/// Every op name the core knows, sorted.
#[wasm_bindgen]
pub fn ops() -> Vec<String> {
    api::ops().into_iter().map(str::to_string).collect()
}

//! The named functions: one table row per core op, each a one-line forward
//! to the generic call so the binding adds no behaviour of its own.

use serde_json::{json, Value};
use wasm_bindgen::prelude::*;

use crate::{from_js, js_error, run, to_js};

/// A validator takes a bare value and answers the normalised value (or
/// `undefined` for yes/no checks such as the PIN); the core sees `{"value": v}`.
fn value(op: &str, input: JsValue) -> Result<JsValue, JsValue> {
    let answer = meshplane_core::api::call_value(op, json!({ "value": from_js(input)? }));
    match answer.map_err(js_error)? {
        Value::Object(mut fields) => match fields.remove("value") {
            Some(v) => to_js(&v),
            None => Ok(JsValue::UNDEFINED),
        },
        other => to_js(&other),
    }
}

/// An object op takes the op's input object and answers its output object.
fn object(op: &str, input: JsValue) -> Result<JsValue, JsValue> {
    run(op, from_js(input)?)
}

/// `doc: js name, rust name(op, kind: TS input type) -> TS output type`.
/// The doc is a plain string literal because wasm-bindgen copies it into the
/// TypeScript declarations verbatim.
macro_rules! bind {
    ($($doc:literal: $js:literal $name:ident($op:literal, $via:ident: $in_ty:literal) -> $out_ty:literal;)*) => {$(
        #[doc = $doc]
        #[wasm_bindgen(js_name = $js, unchecked_return_type = $out_ty)]
        pub fn $name(
            #[wasm_bindgen(unchecked_param_type = $in_ty)] input: JsValue,
        ) -> Result<JsValue, JsValue> {
            $via($op, input)
        }
    )*};
}

bind! {
    "Checks an expose name prefix; answers it or throws `invalid_name_prefix`.":
        "validateNamePrefix" validate_name_prefix("validate_name_prefix", value: "string") -> "string";
    "Checks a 6-digit PIN; throws `invalid_pin` otherwise.":
        "validatePin" validate_pin("validate_pin", value: "string") -> "undefined";
    "Checks that a password is non-empty.":
        "validatePassword" validate_password("validate_password", value: "string") -> "undefined";
    "Checks a domain name and answers it normalised.":
        "validateDomain" validate_domain("validate_domain", value: "string") -> "string";
    "Checks a port (1..65535) and answers it.":
        "validatePort" validate_port("validate_port", value: "number") -> "number";
    "Checks an expose protocol (`http` / `https`).":
        "validateProtocol" validate_protocol("validate_protocol", value: "string") -> "string";
    "Checks a CIDR and answers it in canonical form.":
        "validateCidr" validate_cidr("validate_cidr", value: "string") -> "string";
    "Checks one DNS label.":
        "validateDnsLabel" validate_dns_label("validate_dns_label", value: "string") -> "string";
    "Checks a non-empty list of user group names.":
        "validateUserGroups" validate_user_groups("validate_user_groups", value: "string[]") -> "string[]";
    "Checks a policy and its rules.":
        "validatePolicy" validate_policy("validate_policy", object: "{ policy: Policy }") -> "{ valid: boolean }";
    "May `query.source` reach `query.destination`? Names the deciding policy and rule.":
        "evaluatePolicy" evaluate_policy("evaluate_policy", object: "{ account: Account; query: AccessQuery; now?: Timestamp }") -> "Decision";
    "The ids of the peers `peer_id` may reach or be reached by, sorted.":
        "accessiblePeers" accessible_peers("accessible_peers", object: "{ account: Account; peer_id: string; now: Timestamp }") -> "string[]";
    "The network map of one peer at `now`.":
        "networkMap" network_map("network_map", object: "{ account: Account; peer_id: string; now: Timestamp }") -> "NetworkMap";
    "Every peer's network map at `now`, by peer id.":
        "allNetworkMaps" all_network_maps("all_network_maps", object: "{ account: Account; now: Timestamp }") -> "Record<string, NetworkMap>";
    "A fresh service name (`<prefix>-` + 4 chars, or 12 chars without a prefix), from `seed`.":
        "exposeGenerateName" expose_generate_name("expose_generate_name", object: "{ name_prefix?: string; seed: number }") -> "{ name: string }";
    "A synthetic account of `peers` peers in `groups` groups, for benchmarks and simulations.":
        "generateBenchAccount" generate_bench_account("generate_bench_account", object: "{ peers: number; groups: number; now: Timestamp }") -> "Required<Account>";
    "A new personal access token (`nbp_...`) and its stored hash, from `seed`.":
        "patGenerate" pat_generate("pat_generate", object: "{ seed: number }") -> "{ token: string; hashed_token: string }";
    "Checks a token's length, prefix and checksum.":
        "patValidate" pat_validate("pat_validate", object: "{ token: string }") -> "{ valid: boolean }";
    "A new setup key, its stored hash and its masked form, from `seed`.":
        "setupKeyGenerate" setup_key_generate("setup_key_generate", object: "{ seed: number }") -> "{ key: string; hashed_key: string; masked_key: string }";
    "Checks a setup key's format.":
        "setupKeyValidate" setup_key_validate("setup_key_validate", object: "{ key: string }") -> "{ valid: boolean }";
    "A setup key as shown after creation.":
        "setupKeyMask" setup_key_mask("setup_key_mask", object: "{ key: string }") -> "{ masked_key: string }";
    "The stored form of a token or key: base64(SHA-256).":
        "secretHash" secret_hash("secret_hash", object: "{ secret: string }") -> "{ hash: string }";
    "Whether a token or key matches its stored hash.":
        "secretVerify" secret_verify("secret_verify", object: "{ secret: string; hash: string }") -> "{ matches: boolean }";
}

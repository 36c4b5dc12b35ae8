//! The named functions: one table row per core op, each a one-line forward
//! to the generic call so the binding adds no behaviour of its own.

use meshplane_core::api;
use napi::Either;
use napi_derive::napi;
use serde_json::{json, Value};

use crate::{from_js, js_error, JsResult};

/// An op's answer, or `undefined` when a validator has no value to give back.
type Answer = Either<Value, ()>;

/// A validator takes a bare value and answers the normalised value (or
/// `undefined` for yes/no checks such as the PIN); the core sees `{"value": v}`.
fn value(op: &str, input: Value) -> JsResult<Answer> {
    match api::call_value(op, json!({ "value": from_js(Some(input)) })).map_err(js_error)? {
        Value::Object(mut fields) => Ok(fields.remove("value").map_or(Either::B(()), Either::A)),
        other => Ok(Either::A(other)),
    }
}

/// An object op takes the op's input object and answers its output object.
fn object(op: &str, input: Value) -> JsResult<Answer> {
    api::call_value(op, from_js(Some(input)))
        .map(Either::A)
        .map_err(js_error)
}

/// `doc: js name, rust name(op, kind: TS parameters) -> TS output type`.
/// The doc is a plain string literal because napi copies it into the
/// TypeScript declarations verbatim.
macro_rules! bind {
    ($($doc:literal: $js:literal $name:ident($op:literal, $via:ident: $in_ty:literal) -> $out_ty:literal;)*) => {$(
        #[doc = $doc]
        #[napi(js_name = $js, ts_args_type = $in_ty, ts_return_type = $out_ty)]
        pub fn $name(input: Value) -> napi::Result<Answer, String> {
            $via($op, input)
        }
    )*};
}

bind! {
    "Checks an expose name prefix; answers it or throws `invalid_name_prefix`.":
        "validateNamePrefix" validate_name_prefix("validate_name_prefix", value: "value: string") -> "string";
    "Checks a 6-digit PIN; throws `invalid_pin` otherwise.":
        "validatePin" validate_pin("validate_pin", value: "value: string") -> "void";
    "Checks that a password is non-empty.":
        "validatePassword" validate_password("validate_password", value: "value: string") -> "void";
    "Checks a domain name and answers it normalised.":
        "validateDomain" validate_domain("validate_domain", value: "value: string") -> "string";
    "Checks a port (1..65535) and answers it.":
        "validatePort" validate_port("validate_port", value: "value: number") -> "number";
    "Checks an expose protocol (`http` / `https`).":
        "validateProtocol" validate_protocol("validate_protocol", value: "value: string") -> "string";
    "Checks a CIDR and answers it in canonical form.":
        "validateCidr" validate_cidr("validate_cidr", value: "value: string") -> "string";
    "Checks one DNS label.":
        "validateDnsLabel" validate_dns_label("validate_dns_label", value: "value: string") -> "string";
    "Checks a non-empty list of user group names.":
        "validateUserGroups" validate_user_groups("validate_user_groups", value: "value: string[]") -> "string[]";
    "Checks a policy and its rules.":
        "validatePolicy" validate_policy("validate_policy", object: "input: { policy: Policy }") -> "{ valid: boolean }";
    "May `query.source` reach `query.destination`? Names the deciding policy and rule.":
        "evaluatePolicy" evaluate_policy("evaluate_policy", object: "input: { account: Account; query: AccessQuery; now?: Timestamp }") -> "Decision";
    "The ids of the peers `peer_id` may reach or be reached by, sorted.":
        "accessiblePeers" accessible_peers("accessible_peers", object: "input: { account: Account; peer_id: string; now: Timestamp }") -> "string[]";
    "The network map of one peer at `now`.":
        "networkMap" network_map("network_map", object: "input: { account: Account; peer_id: string; now: Timestamp }") -> "NetworkMap";
    "Every peer's network map at `now`, by peer id.":
        "allNetworkMaps" all_network_maps("all_network_maps", object: "input: { account: Account; now: Timestamp }") -> "Record<string, NetworkMap>";
    "A fresh service name (`<prefix>-` + 4 chars, or 12 chars without a prefix), from `seed`.":
        "exposeGenerateName" expose_generate_name("expose_generate_name", object: "input: { name_prefix?: string; seed: number }") -> "{ name: string }";
    "A synthetic account of `peers` peers in `groups` groups, for benchmarks and simulations.":
        "generateBenchAccount" generate_bench_account("generate_bench_account", object: "input: { peers: number; groups: number; now: Timestamp }") -> "Required<Account>";
    "A new personal access token (`nbp_...`) and its stored hash, from `seed`.":
        "patGenerate" pat_generate("pat_generate", object: "input: { seed: number }") -> "{ token: string; hashed_token: string }";
    "Checks a token's length, prefix and checksum.":
        "patValidate" pat_validate("pat_validate", object: "input: { token: string }") -> "{ valid: boolean }";
    "A new setup key, its stored hash and its masked form, from `seed`.":
        "setupKeyGenerate" setup_key_generate("setup_key_generate", object: "input: { seed: number }") -> "{ key: string; hashed_key: string; masked_key: string }";
    "Checks a setup key's format.":
        "setupKeyValidate" setup_key_validate("setup_key_validate", object: "input: { key: string }") -> "{ valid: boolean }";
    "A setup key as shown after creation.":
        "setupKeyMask" setup_key_mask("setup_key_mask", object: "input: { key: string }") -> "{ masked_key: string }";
    "The stored form of a token or key: base64(SHA-256).":
        "secretHash" secret_hash("secret_hash", object: "input: { secret: string }") -> "{ hash: string }";
    "Whether a token or key matches its stored hash.":
        "secretVerify" secret_verify("secret_verify", object: "input: { secret: string; hash: string }") -> "{ matches: boolean }";
}

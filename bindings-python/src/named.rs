//! The named functions: one table row per core op, each a one-line forward
//! to the generic call so the binding adds no behaviour of its own.

use pyo3::prelude::*;
use pyo3::types::PyDict;
use serde_json::{json, Value};

use crate::{from_py, kwargs, run, to_py};

/// A validator takes a bare value and answers the normalised value (or
/// `None` for yes/no checks such as the PIN); the core sees `{"value": v}`.
fn value(py: Python<'_>, op: &str, input: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
    let answer = meshplane_core::api::call_value(op, json!({ "value": from_py(py, input)? }));
    to_py(
        py,
        answer.map(|out| match out {
            Value::Object(mut fields) => fields.remove("value").unwrap_or(Value::Null),
            other => other,
        }),
    )
}

/// Validators: `name(op)`, called as `name(value)`.
macro_rules! validators {
    ($($doc:literal: $name:ident($op:literal);)*) => {
        $(
            #[doc = $doc]
            #[pyfunction]
            fn $name(py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
                self::value(py, $op, value)
            }
        )*
        /// Adds every validator to the module.
        fn register_validators(m: &Bound<'_, PyModule>) -> PyResult<()> {
            $(m.add_function(wrap_pyfunction!($name, m)?)?;)*
            Ok(())
        }
    };
}

/// Object ops: `name(op)`, called with the op's input fields as keywords.
macro_rules! object_ops {
    ($($doc:literal: $name:ident($op:literal);)*) => {
        $(
            #[doc = $doc]
            #[pyfunction]
            #[pyo3(signature = (**input))]
            fn $name(py: Python<'_>, input: Option<&Bound<'_, PyDict>>) -> PyResult<Py<PyAny>> {
                run(py, $op, kwargs(py, input)?)
            }
        )*
        /// Adds every object op to the module.
        fn register_object_ops(m: &Bound<'_, PyModule>) -> PyResult<()> {
            $(m.add_function(wrap_pyfunction!($name, m)?)?;)*
            Ok(())
        }
    };
}

validators! {
    "Checks an expose name prefix; answers it or throws `invalid_name_prefix`.": validate_name_prefix("validate_name_prefix");
    "Checks a 6-digit PIN; throws `invalid_pin` otherwise.": validate_pin("validate_pin");
    "Checks that a password is non-empty.": validate_password("validate_password");
    "Checks a domain name and answers it normalised.": validate_domain("validate_domain");
    "Checks a port (1..65535) and answers it.": validate_port("validate_port");
    "Checks an expose protocol (`http` / `https`).": validate_protocol("validate_protocol");
    "Checks a CIDR and answers it in canonical form.": validate_cidr("validate_cidr");
    "Checks one DNS label.": validate_dns_label("validate_dns_label");
    "Checks a non-empty list of user group names.": validate_user_groups("validate_user_groups");
}

object_ops! {
    "Checks a policy and its rules.": validate_policy("validate_policy");
    "May `query.source` reach `query.destination`? Names the deciding policy and rule.": evaluate_policy("evaluate_policy");
    "The ids of the peers `peer_id` may reach or be reached by, sorted.": accessible_peers("accessible_peers");
    "The network map of one peer at `now`.": network_map("network_map");
    "Every peer's network map at `now`, by peer id.": all_network_maps("all_network_maps");
    "A fresh service name (`<prefix>-` + 4 chars, or 12 chars without a prefix): `expose_generate_name(seed=..., name_prefix=...)`.": expose_generate_name("expose_generate_name");
    "A synthetic account of `peers` peers in `groups` groups, for benchmarks and simulations.": generate_bench_account("generate_bench_account");
    "A new personal access token (`nbp_...`) and its stored hash, from `seed`.": pat_generate("pat_generate");
    "Checks a token's length, prefix and checksum.": pat_validate("pat_validate");
    "A new setup key, its stored hash and its masked form, from `seed`.": setup_key_generate("setup_key_generate");
    "Checks a setup key's format.": setup_key_validate("setup_key_validate");
    "A setup key as shown after creation.": setup_key_mask("setup_key_mask");
    "The stored form of a token or key: base64(SHA-256).": secret_hash("secret_hash");
    "Whether a token or key matches its stored hash.": secret_verify("secret_verify");
}

/// Adds every named function to the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    register_validators(m)?;
    register_object_ops(m)
}

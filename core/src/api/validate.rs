//! Validators: `validate_*` ops. Each answers the normalised value on success.

use serde::Deserialize;
use serde_json::{json, Value};

use super::parse;
use crate::error::ApiError;
use crate::model::Policy;
use crate::validate::{self, Cidr, Domain, ExposeProtocol, NamePrefix, Password, Pin, Port};

pub(super) const OPS: &[&str] = &[
    "validate_cidr",
    "validate_dns_label",
    "validate_domain",
    "validate_name_prefix",
    "validate_password",
    "validate_pin",
    "validate_policy",
    "validate_port",
    "validate_protocol",
    "validate_user_groups",
];

#[derive(Deserialize)]
struct Text {
    value: String,
}

#[derive(Deserialize)]
struct Number {
    value: i64,
}

#[derive(Deserialize)]
struct Groups {
    value: Vec<String>,
}

#[derive(Deserialize)]
struct PolicyInput {
    policy: Policy,
}

pub(super) fn dispatch(op: &str, input: Value) -> Option<Result<Value, ApiError>> {
    Some(run(op, input))
}

fn text(input: Value) -> Result<String, ApiError> {
    parse::<Text>(input).map(|t| t.value)
}

fn run(op: &str, input: Value) -> Result<Value, ApiError> {
    let ok = |v: String| Ok(json!({ "value": v }));
    match op {
        "validate_name_prefix" => ok(text(input)?.parse::<NamePrefix>()?.to_string()),
        "validate_pin" => {
            text(input)?.parse::<Pin>()?;
            Ok(json!({ "valid": true }))
        }
        "validate_password" => {
            text(input)?.parse::<Password>()?;
            Ok(json!({ "valid": true }))
        }
        "validate_port" => {
            let port = Port::try_from(parse::<Number>(input)?.value)?;
            Ok(json!({ "value": port.get() }))
        }
        "validate_protocol" => ok(text(input)?.parse::<ExposeProtocol>()?.as_str().to_string()),
        "validate_domain" => ok(text(input)?.parse::<Domain>()?.to_string()),
        "validate_cidr" => ok(text(input)?.parse::<Cidr>()?.to_string()),
        "validate_dns_label" => {
            let label = text(input)?;
            validate::dns_label(&label)?;
            ok(label)
        }
        "validate_user_groups" => {
            let groups = parse::<Groups>(input)?.value;
            if groups.is_empty() || groups.iter().any(|g| g.trim().is_empty()) {
                return Err(validate::ValidationError::EmptyUserGroups.into());
            }
            Ok(json!({ "value": groups }))
        }
        "validate_policy" => {
            validate::policy(&parse::<PolicyInput>(input)?.policy)?;
            Ok(json!({ "valid": true }))
        }
        _ => Err(ApiError::unknown_op(op)),
    }
}

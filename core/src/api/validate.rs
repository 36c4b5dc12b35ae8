//! Validators: `validate_*` ops. Each answers the normalised value on success.
//!
//! `validate_network_range` input: `{value, peers?}` (the account's peer
//! count, default 0); answers the range with host bits cleared.
//! `account_settings_update` input: `{settings, update}` (the stored
//! settings and a REST `PUT` body's `settings`); answers the new settings.

use serde::Deserialize;
use serde_json::{json, Value};

use super::{parse, to_value};
use crate::error::ApiError;
use crate::model::{AccountSettings, AccountSettingsUpdate, Policy};
use crate::validate::{self, Cidr, Domain, ExposeProtocol, NamePrefix, Password, Pin, Port};

pub(super) const OPS: &[&str] = &[
    "account_settings_update",
    "validate_account_settings",
    "validate_cidr",
    "validate_dns_label",
    "validate_domain",
    "validate_name_prefix",
    "validate_network_range",
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
struct NetworkRange {
    value: String,
    #[serde(default)]
    peers: u64,
}

#[derive(Deserialize)]
struct SettingsInput {
    settings: AccountSettings,
}

#[derive(Deserialize)]
struct SettingsUpdate {
    #[serde(default)]
    settings: AccountSettings,
    #[serde(default)]
    update: AccountSettingsUpdate,
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
        "validate_network_range" => {
            let r = parse::<NetworkRange>(input)?;
            ok(validate::network_range(&r.value, r.peers)?.to_string())
        }
        "validate_account_settings" => {
            validate::account_settings(&parse::<SettingsInput>(input)?.settings)?;
            Ok(json!({ "valid": true }))
        }
        "account_settings_update" => {
            let u = parse::<SettingsUpdate>(input)?;
            to_value(&u.update.apply(&u.settings))
        }
        "validate_dns_label" => {
            let label = text(input)?;
            validate::dns_label(&label)?;
            ok(label)
        }
        "validate_user_groups" => {
            let groups = validate::user_groups(&parse::<Groups>(input)?.value)?;
            Ok(json!({ "value": groups }))
        }
        "validate_policy" => {
            validate::policy(&parse::<PolicyInput>(input)?.policy)?;
            Ok(json!({ "valid": true }))
        }
        _ => Err(ApiError::unknown_op(op)),
    }
}

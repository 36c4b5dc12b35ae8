//! The permission table: `permission_check`.

use serde::Deserialize;
use serde_json::{json, Value};

use super::parse;
use crate::error::ApiError;
use crate::model::Role;
use crate::permissions::{self, Family, Operation};

pub(super) const OPS: &[&str] = &["permission_check"];

#[derive(Deserialize)]
struct Input {
    role: Role,
    family: Family,
    operation: Operation,
}

pub(super) fn dispatch(op: &str, input: Value) -> Option<Result<Value, ApiError>> {
    (op == "permission_check").then(|| {
        let i = parse::<Input>(input)?;
        let access = permissions::check(i.role, i.family, i.operation)?;
        Ok(json!({ "access": access }))
    })
}

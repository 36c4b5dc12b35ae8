//! The shape every core error takes at the edges.
//!
//! Each module has its own `thiserror` enum. All of them implement
//! [`ErrorCode`], which gives a stable machine code (used by the conformance
//! vectors and mapped to HTTP / gRPC status by the shells) and a [`Kind`] that
//! says which status family the error belongs to. The human message is the
//! enum's `Display`, worded as in `SEMANTICS.md`.

use serde::{Deserialize, Serialize};

/// The status family of an error; shells map it to HTTP and gRPC codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Bad input (HTTP 422 / 400, gRPC INVALID_ARGUMENT).
    InvalidArgument,
    /// The caller may not do this (HTTP 403, gRPC PERMISSION_DENIED).
    PermissionDenied,
    /// The thing does not exist (HTTP 404, gRPC NOT_FOUND).
    NotFound,
    /// It exists already (HTTP 409, gRPC ALREADY_EXISTS).
    AlreadyExists,
    /// A limit or state forbids it (HTTP 400/412, gRPC RESOURCE_EXHAUSTED for limits).
    FailedPrecondition,
    /// Not the caller's fault (HTTP 500, gRPC INTERNAL); never expected.
    Internal,
}

impl Kind {
    /// The snake_case name, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::InvalidArgument => "invalid_argument",
            Kind::PermissionDenied => "permission_denied",
            Kind::NotFound => "not_found",
            Kind::AlreadyExists => "already_exists",
            Kind::FailedPrecondition => "failed_precondition",
            Kind::Internal => "internal",
        }
    }

    /// The HTTP status a REST shell answers with.
    pub fn http_status(self) -> u16 {
        match self {
            Kind::InvalidArgument => 422,
            Kind::PermissionDenied => 403,
            Kind::NotFound => 404,
            Kind::AlreadyExists => 409,
            Kind::FailedPrecondition => 412,
            Kind::Internal => 500,
        }
    }
}

/// Implemented by every error enum of the core.
pub trait ErrorCode: std::error::Error {
    /// Stable, lowercase, snake_case identifier (for example `invalid_name_prefix`).
    fn code(&self) -> &'static str;
    /// The status family.
    fn kind(&self) -> Kind;
}

/// An error as it crosses a language or process boundary. `kind` lets a
/// binding raise the right exception family without knowing every code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub code: String,
    pub message: String,
    pub kind: Kind,
}

impl ApiError {
    /// A call the core could not even read: malformed JSON, an input of the
    /// wrong shape, an unknown op.
    pub fn invalid_call(code: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError {
            code: code.into(),
            message: message.into(),
            kind: Kind::InvalidArgument,
        }
    }

    /// An input of the wrong shape (`detail` says how).
    pub fn invalid_input(detail: impl std::fmt::Display) -> Self {
        ApiError::invalid_call("invalid_input", format!("invalid input: {detail}"))
    }

    /// An op name the core does not know.
    pub fn unknown_op(op: &str) -> Self {
        ApiError::invalid_call("unknown_op", format!("unknown op \"{op}\""))
    }

    /// A failure inside the core (an output that cannot be serialised).
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError {
            code: "internal".to_string(),
            message: message.into(),
            kind: Kind::Internal,
        }
    }
}

impl<E: ErrorCode> From<E> for ApiError {
    fn from(e: E) -> Self {
        ApiError {
            code: e.code().to_string(),
            message: e.to_string(),
            kind: e.kind(),
        }
    }
}

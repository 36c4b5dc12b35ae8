//! gRPC statuses for core errors and envelope refusals, per SEMANTICS.md:
//! invalid argument, permission denied, not found and already exists pass
//! through; a failed precondition (a limit) becomes RESOURCE_EXHAUSTED.

use meshplane_core::{ErrorCode, Kind};
use tonic::{Code, Status};

use crate::envelope::EnvelopeError;

/// The gRPC code of a core error kind.
pub fn code_of(kind: Kind) -> Code {
    match kind {
        Kind::InvalidArgument => Code::InvalidArgument,
        Kind::PermissionDenied => Code::PermissionDenied,
        Kind::NotFound => Code::NotFound,
        Kind::AlreadyExists => Code::AlreadyExists,
        Kind::FailedPrecondition => Code::ResourceExhausted,
        Kind::Internal => Code::Internal,
    }
}

/// A status carrying the core error's message.
pub fn from_core(e: &impl ErrorCode) -> Status {
    Status::new(code_of(e.kind()), e.to_string())
}

impl From<EnvelopeError> for Status {
    fn from(e: EnvelopeError) -> Status {
        let code = match e {
            EnvelopeError::BadKey | EnvelopeError::Truncated | EnvelopeError::Decode(_) => {
                Code::InvalidArgument
            }
            EnvelopeError::Forged | EnvelopeError::Stale | EnvelopeError::Replayed => {
                Code::Unauthenticated
            }
        };
        Status::new(code, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshplane_core::validate::ValidationError;

    #[test]
    fn kinds_map_to_codes() {
        let s = from_core(&ValidationError::InvalidPin);
        assert_eq!(s.code(), Code::InvalidArgument);
        assert_eq!(s.message(), "invalid pin: must be exactly 6 digits");
        assert_eq!(code_of(Kind::FailedPrecondition), Code::ResourceExhausted);
        assert_eq!(
            Status::from(EnvelopeError::Replayed).code(),
            Code::Unauthenticated
        );
    }
}

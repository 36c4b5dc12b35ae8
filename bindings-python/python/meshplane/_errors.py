"""The exception families a core error is raised as.

Every error from the core has a stable snake_case ``code``, an exact human
``message`` (worded as in SEMANTICS.md) and a kind. The class follows the
kind, so callers can catch broadly (``NotFound``) and still branch on
``err.code``. This module is the one place that maps kinds to classes.
"""

from __future__ import annotations


class MeshplaneError(Exception):
    """Base of every error raised by meshplane."""

    code: str
    message: str

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r})"


class InvalidInput(MeshplaneError):
    """The call itself was malformed: unknown op, unreadable input."""


class ValidationError(MeshplaneError):
    """A value breaks a rule (name prefix, PIN, port, policy, token format...)."""


class PermissionDenied(MeshplaneError):
    """The caller may not do this."""


class NotFound(MeshplaneError):
    """The thing does not exist."""


class AlreadyExists(MeshplaneError):
    """It exists already (a taken domain, a duplicate session)."""


class FailedPrecondition(MeshplaneError):
    """A limit or the current state forbids it (sessions per peer, addresses in a network)."""


# The call itself could not be read; these codes come from the JSON layer.
_CALL_ERRORS = frozenset({"invalid_input", "invalid_json", "unknown_op"})

# The core's error kinds (meshplane_core::error::Kind) and their classes.
_KINDS: dict[str, type[MeshplaneError]] = {
    "invalid_argument": ValidationError,
    "permission_denied": PermissionDenied,
    "not_found": NotFound,
    "already_exists": AlreadyExists,
    "failed_precondition": FailedPrecondition,
}


def family(code: str, kind: str) -> type[MeshplaneError]:
    """The exception class for an error of ``kind`` (and ``code``)."""
    if code in _CALL_ERRORS:
        return InvalidInput
    return _KINDS.get(kind, MeshplaneError)


def error_for(code: str, message: str, kind: str) -> MeshplaneError:
    """The exception to raise for a core error."""
    return family(code, kind)(code, message)

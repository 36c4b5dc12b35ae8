"""The exception families a core error is raised as.

Every error from the core has a stable snake_case ``code`` and an exact
human ``message`` (worded as in SEMANTICS.md). The class only says which
family the code belongs to, so callers can catch broadly (``NotFound``) and
still branch on ``err.code``. This module is the one place that maps codes to
families.
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
    """The current state forbids it."""


class LimitReached(FailedPrecondition):
    """A limit is reached (sessions per peer, addresses in a network)."""


_CALL_ERRORS = frozenset({"invalid_input", "invalid_json", "unknown_op"})


def family(code: str) -> type[MeshplaneError]:
    """The exception class for an error code."""
    if code in _CALL_ERRORS:
        return InvalidInput
    if code == "internal":
        return MeshplaneError
    if code.endswith(("permission_denied", "_denied", "_not_allowed", "_forbidden")):
        return PermissionDenied
    if code.endswith("not_found"):
        return NotFound
    if code.endswith(("already_exists", "_exists", "_taken")) or code.startswith("duplicate_"):
        return AlreadyExists
    if "limit" in code or code.endswith("exhausted") or code.startswith("too_many"):
        return LimitReached
    if code.endswith(("_expired", "_stopped", "_revoked")) or code.startswith("not_"):
        return FailedPrecondition
    return ValidationError


def error_for(code: str, message: str) -> MeshplaneError:
    """The exception to raise for a core error."""
    return family(code)(code, message)

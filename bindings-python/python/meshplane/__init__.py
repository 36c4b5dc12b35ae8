"""meshplane: the deterministic core of a WireGuard mesh control plane.

Every function forwards to the Rust core. Time (``now``) and randomness
(``seed``) are arguments, never read from the machine, so the same call always
gives the same answer. Errors are raised as :class:`MeshplaneError`
subclasses carrying ``code`` and ``message``.

>>> import meshplane
>>> meshplane.validate_name_prefix("my-svc")
'my-svc'
"""

from meshplane._errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidInput,
    MeshplaneError,
    NotFound,
    PermissionDenied,
    ValidationError,
    error_for,
    family,
)
from meshplane._native import (
    KeepAlive,
    SessionTable,
    accessible_peers,
    all_network_maps,
    call,
    call_json,
    evaluate_policy,
    expose_generate_name,
    generate_bench_account,
    network_map,
    ops,
    pat_generate,
    pat_validate,
    secret_hash,
    secret_verify,
    setup_key_generate,
    setup_key_mask,
    setup_key_validate,
    validate_cidr,
    validate_dns_label,
    validate_domain,
    validate_name_prefix,
    validate_password,
    validate_pin,
    validate_policy,
    validate_port,
    validate_protocol,
    validate_user_groups,
)

__all__ = [
    "KeepAlive",
    "SessionTable",
    "AlreadyExists",
    "FailedPrecondition",
    "InvalidInput",
    "MeshplaneError",
    "NotFound",
    "PermissionDenied",
    "ValidationError",
    "accessible_peers",
    "all_network_maps",
    "call",
    "call_json",
    "error_for",
    "evaluate_policy",
    "expose_generate_name",
    "family",
    "generate_bench_account",
    "network_map",
    "ops",
    "pat_generate",
    "pat_validate",
    "secret_hash",
    "secret_verify",
    "setup_key_generate",
    "setup_key_mask",
    "setup_key_validate",
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
]

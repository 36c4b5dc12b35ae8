"""Typed shapes of the core's JSON, for annotating code that uses meshplane.

Field names are the core's, snake_case, exactly as the conformance vectors
spell them. Accounts, policies and network maps are large NetBird-shaped
objects and stay plain dicts here.
"""

from __future__ import annotations

from typing import Any, Dict, List, Literal, Optional, TypedDict, Union

Timestamp = Union[str, int]
"""RFC 3339 text or integer milliseconds since the epoch."""

Account = Dict[str, Any]
"""An account: peers, groups, policies, routes, networks, DNS, settings."""

Policy = Dict[str, Any]
"""An access policy with its rules (NetBird REST shape)."""

NetworkMap = Dict[str, Any]
"""One peer's map: serial, network, peer_config, peers, offline_peers,
firewall_rules, routes, route_firewall_rules, dns."""

Protocol = Literal["all", "tcp", "udp", "icmp", "netbird-ssh"]


class _AccessQueryRequired(TypedDict):
    source: str
    destination: Dict[Literal["peer", "resource"], str]
    protocol: Protocol


class AccessQuery(_AccessQueryRequired, total=False):
    """May ``source`` reach ``destination`` (``{"peer": id}`` or ``{"resource": id}``)?"""

    port: Optional[int]


class DecidingRule(TypedDict):
    """The policy rule that decided a query."""

    policy_id: str
    policy_name: str
    rule_id: str
    rule_name: str
    action: Literal["accept", "drop"]


class Decision(TypedDict):
    """The answer to an access query, with the reason in words."""

    allowed: bool
    decided_by: Optional[DecidingRule]
    reason: str


class Pat(TypedDict):
    """A new personal access token and the hash that is stored."""

    token: str
    hashed_token: str


class SetupKey(TypedDict):
    """A new setup key, its stored hash and the masked form shown later."""

    key: str
    hashed_key: str
    masked_key: str


class Valid(TypedDict):
    valid: bool


class TableConfig(TypedDict, total=False):
    """Server-side expose constants (defaults: 90 s TTL, 10 sessions per peer)."""

    ttl: int
    max_sessions_per_peer: int
    proxy_domain: str


class KeepAliveConfig(TypedDict, total=False):
    """Client-side keep-alive constants, in milliseconds (defaults 30 s / 10 s / 5 s)."""

    renew_period: int
    renew_timeout: int
    stop_timeout: int


class _ExposePeerRequired(TypedDict):
    id: str
    name: str


class ExposePeer(_ExposePeerRequired, total=False):
    """The peer asking to expose, with the ids of its groups."""

    groups: List[str]


class _ExposeContextRequired(TypedDict):
    peer: ExposePeer


class ExposeContext(_ExposeContextRequired, total=False):
    """The peer and what its account says about it."""

    settings: Dict[str, Any]
    groups: List[Dict[str, Any]]
    custom_domains: List[str]


class _ExposeRequestRequired(TypedDict):
    port: int


class ExposeRequest(_ExposeRequestRequired, total=False):
    """The flags of ``meshplane expose``."""

    protocol: str
    pin: str
    password: str
    user_groups: List[str]
    custom_domain: str
    name_prefix: str


Session = Dict[str, Any]
"""One active exposed service: id, peer_id, peer_name, name, domain, url,
protocol, port, auth, created_at, deadline."""


class ExposeEvent(TypedDict):
    """An audit event (activity 111 exposed, 112 unexposed, 113 expired)."""

    kind: Literal["exposed", "unexposed", "expired"]
    activity: int
    at: str
    peer_id: str
    peer_name: str
    domain: str
    auth_enabled: bool


KeepAliveState = Dict[str, Any]
"""``{"state": "active" | "renewing" | "stopping" | "stopped" | "failed", ...}``."""

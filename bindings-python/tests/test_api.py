"""The Python idiom on top of the shared vectors: named functions, keyword
arguments, exception families carrying code and message."""

from __future__ import annotations

import json
import re

import pytest

import meshplane
from meshplane import MeshplaneError
from meshplane.types import ExposePeer

NOW = "2026-01-01T00:00:00Z"


def test_validator_answers_the_value() -> None:
    assert meshplane.validate_name_prefix("my-svc") == "my-svc"
    assert meshplane.validate_port(443) == 443
    meshplane.validate_pin("123456")


def test_validation_error_carries_code_and_exact_message() -> None:
    with pytest.raises(meshplane.ValidationError) as raised:
        meshplane.validate_name_prefix("My_Svc")
    assert raised.value.code == "invalid_name_prefix"
    assert raised.value.message == (
        'invalid name prefix "My_Svc": must be lowercase alphanumeric with optional hyphens, 1-32 characters'
    )
    assert str(raised.value) == raised.value.message


def test_bad_call_is_invalid_input() -> None:
    with pytest.raises(meshplane.InvalidInput) as raised:
        meshplane.call("no_such_op", {})
    assert raised.value.code == "unknown_op"
    with pytest.raises(meshplane.InvalidInput):
        meshplane.call("validate_port", {"value": "eighty"})


def test_missing_peer_is_not_found() -> None:
    account = meshplane.generate_bench_account(peers=3, groups=1, now=NOW)
    with pytest.raises(meshplane.NotFound) as raised:
        meshplane.network_map(account=account, peer_id="no-such-peer", now=NOW)
    assert raised.value.code == "peer_not_found"


@pytest.mark.parametrize(
    ("op", "op_input", "family", "code"),
    [
        ("no_such_op", {}, meshplane.InvalidInput, "unknown_op"),
        ("validate_pin", {"pin": "123456"}, meshplane.InvalidInput, "invalid_input"),
        ("validate_pin", {"value": "12345"}, meshplane.ValidationError, "invalid_pin"),
        ("pat_validate", {"token": "nbp_"}, meshplane.ValidationError, "pat_length"),
        ("check_login", {"account": {}, "wg_key": "k", "now": 0}, meshplane.NotFound, "peer_not_registered"),
        (
            "ipam_allocate",
            {"network": "10.0.0.0/30", "taken": ["10.0.0.1", "10.0.0.2"], "seed": 1},
            meshplane.FailedPrecondition,
            "network_exhausted",
        ),
    ],
)
def test_families_follow_the_core_error_kind(
    op: str, op_input: dict[str, object], family: type[MeshplaneError], code: str
) -> None:
    with pytest.raises(MeshplaneError) as raised:
        meshplane.call(op, op_input)
    assert type(raised.value) is family
    assert raised.value.code == code


def test_permission_and_conflict_families() -> None:
    peer: ExposePeer = {"id": "p1", "name": "laptop"}
    table = meshplane.SessionTable(seed=1)
    with pytest.raises(meshplane.PermissionDenied) as denied:
        table.create({"peer": peer}, {"port": 8080}, 0)
    assert denied.value.message == "permission denied"
    key = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA="
    account = {
        "settings": {"network_range": "100.64.0.0/30"},
        "peers": [{"id": "a", "name": "a", "ip": "100.64.0.1", "key": key}],
        "groups": [{"id": "all", "name": "All", "peers": ["a"]}],
    }
    setup_key = {
        "id": "k", "name": "k", "hashed_key": "h", "masked_key": "m", "type": "reusable",
        "created_at": 0, "updated_at": 0,
    }
    with pytest.raises(meshplane.AlreadyExists) as taken:
        meshplane.call(
            "register_peer",
            {"account": account, "setup_key": setup_key, "request": {"wg_key": key},
             "peer_id": "b", "now": 0, "seed": 1},
        )
    assert taken.value.code == "peer_already_registered"


def test_keyword_ops_match_the_generic_call() -> None:
    account = meshplane.generate_bench_account(peers=20, groups=4, now=NOW)
    peer = account["peers"][0]["id"]
    assert meshplane.network_map(account=account, peer_id=peer, now=NOW) == meshplane.call(
        "network_map", {"account": account, "peer_id": peer, "now": NOW}
    )
    maps = meshplane.all_network_maps(account=account, now=NOW)
    assert sorted(maps) == sorted(p["id"] for p in account["peers"])
    other = account["peers"][1]["id"]
    decision = meshplane.evaluate_policy(
        account=account, query={"source": peer, "destination": {"peer": other}, "protocol": "tcp", "port": 22}, now=NOW
    )
    assert isinstance(decision["allowed"], bool) and decision["reason"]


def test_pat_round_trip() -> None:
    pat = meshplane.pat_generate(seed=7)
    assert pat == meshplane.pat_generate(seed=7)
    assert meshplane.pat_validate(token=pat["token"]) == {"valid": True}
    assert meshplane.secret_verify(secret=pat["token"], hash=pat["hashed_token"]) == {"matches": True}
    with pytest.raises(meshplane.ValidationError) as raised:
        meshplane.pat_validate(token=pat["token"][:-1] + ("A" if pat["token"][-1] != "A" else "B"))
    assert raised.value.code == "pat_checksum"


def test_setup_key_round_trip() -> None:
    key = meshplane.setup_key_generate(seed=3)
    assert meshplane.setup_key_validate(key=key["key"]) == {"valid": True}
    assert meshplane.setup_key_mask(key=key["key"]) == {"masked_key": key["masked_key"]}


def test_expose_names_come_from_the_seed() -> None:
    assert re.fullmatch(r"demo-[a-z0-9]{4}", meshplane.expose_generate_name(seed=1, name_prefix="demo")["name"])
    assert meshplane.expose_generate_name(seed=1) == meshplane.call("expose_generate_name", {"seed": 1})
    with pytest.raises(meshplane.ValidationError):
        meshplane.expose_generate_name(seed=1, name_prefix="Bad!")


def test_call_json_envelope() -> None:
    answer = json.loads(meshplane.call_json(json.dumps({"op": "validate_pin", "input": {"value": "12"}})))
    assert answer == {"error": {"code": "invalid_pin", "message": "invalid pin: must be exactly 6 digits"}}
    assert "network_map" in meshplane.ops()


def test_session_table_matches_the_table_run_op() -> None:
    settings = {"peer_expose_enabled": True}
    peer: ExposePeer = {"id": "p1", "name": "laptop"}
    t0 = 1_750_000_000_000
    table = meshplane.SessionTable(seed=9, config={"max_sessions_per_peer": 1})
    session = table.create({"peer": peer, "settings": settings}, {"port": 8080, "name_prefix": "demo"}, t0)
    with pytest.raises(meshplane.FailedPrecondition) as raised:
        table.create({"peer": peer, "settings": settings}, {"port": 8081}, t0)
    assert raised.value.code == "limit_reached"
    deadline = table.renew("p1", session["domain"], t0 + 30_000)
    assert len(table) == 1
    assert table.get(session["domain"]) == {**session, "deadline": deadline}
    table.handle_timeout(t0 + 200_000)
    assert len(table) == 0 and table.poll_timeout() is None
    events = [table.poll_event(), table.poll_event()]
    assert table.poll_event() is None
    with pytest.raises(meshplane.NotFound):
        table.renew("p1", session["domain"], t0 + 300_000)

    run = meshplane.call(
        "expose_table_run",
        {
            "config": {"max_sessions_per_peer": 1},
            "settings": settings,
            "peers": [peer],
            "seed": 9,
            "steps": [
                {"at": t0, "action": "create", "peer": "p1", "request": {"port": 8080, "name_prefix": "demo"}},
                {"at": t0, "action": "create", "peer": "p1", "request": {"port": 8081}},
                {"at": t0 + 30_000, "action": "renew", "peer": "p1", "domain": session["domain"]},
                {"at": t0 + 200_000, "action": "tick"},
            ],
        },
    )
    assert run["results"][0] == {"ok": session}
    assert run["results"][1]["error"]["code"] == "limit_reached"
    assert run["results"][2] == {"ok": {"deadline": deadline}}
    assert run["events"] == events
    assert run["sessions"] == table.sessions() == []


def test_keepalive_matches_the_keepalive_run_op() -> None:
    start = "2026-01-01T00:00:00Z"
    ka = meshplane.KeepAlive(now=start)

    def snap(at: str) -> dict[str, object]:
        transmits = list(iter(ka.poll_transmit, None))
        events = list(iter(ka.poll_event, None))
        return {"at": at, "state": ka.state, "transmits": transmits, "events": events, "next_timeout": ka.poll_timeout()}

    trace = [snap(start)]
    ka.handle_timeout("2026-01-01T00:00:30Z")
    trace.append(snap("2026-01-01T00:00:30Z"))
    ka.handle_renew_failed("server gone", "2026-01-01T00:00:32Z")
    trace.append(snap("2026-01-01T00:00:32Z"))
    assert ka.is_finished
    run = meshplane.call(
        "expose_keepalive_run",
        {
            "start": start,
            "steps": [
                {"at": "2026-01-01T00:00:30Z", "input": "timeout"},
                {"at": "2026-01-01T00:00:32Z", "input": "renew_failed", "reason": "server gone"},
            ],
        },
    )
    assert run == {"initial": trace[0], "trace": trace[1:]}
    assert trace[-1]["state"] == {"state": "failed", "reason": "server gone"}

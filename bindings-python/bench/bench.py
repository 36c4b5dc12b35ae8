"""Per-call cost of the benchmark calls from Python: one name-prefix
validation, one policy evaluation and one network map on the 1000-peer /
50-group benchmark account (the same calls as core/benches/api_calls.rs).
Prints the best of five runs per call, in microseconds.

    python bench/bench.py      # with the wheel installed
"""

from __future__ import annotations

import json
import timeit
from typing import Any, Callable

import meshplane

NOW = 1_750_000_000_000


def per_call(fn: Callable[[], Any], number: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6


def main() -> None:
    account = meshplane.generate_bench_account(peers=1000, groups=50, now=NOW)
    query: Any = {"source": "peer-0", "destination": {"peer": "peer-20"}, "protocol": "tcp", "port": 5432}
    # The account as JSON text, as a client receives it from the server:
    # call_json skips converting a large dict into the core's input.
    request = json.dumps({"op": "network_map", "input": {"account": account, "peer_id": "peer-0", "now": NOW}})
    rows: list[tuple[str, Callable[[], Any], int]] = [
        ("validate_name_prefix", lambda: meshplane.validate_name_prefix("my-svc"), 200_000),
        ("evaluate_policy_1000", lambda: meshplane.evaluate_policy(account=account, query=query, now=NOW), 20),
        ("network_map_1000", lambda: meshplane.network_map(account=account, peer_id="peer-0", now=NOW), 20),
        ("network_map_1000_json_text", lambda: meshplane.call_json(request), 20),
    ]
    for name, fn, number in rows:
        print(f"python {name}: {per_call(fn, number):.3f} µs/call")


if __name__ == "__main__":
    main()

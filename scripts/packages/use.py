"""Uses the installed meshplane wheel the way a user's program does: imports
it from the venv it was installed into (not the source tree), answers the
first vector of a few ops exactly as the vector says, raises the core's
errors, and checks the native module carries no debug info.

Usage (from scripts/test-packages.sh): python use.py VECTORS_DIR
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
from typing import Any

import meshplane
import meshplane._native


def first_cases(vectors: pathlib.Path, ops: list[str]) -> list[dict[str, Any]]:
    """The first case with a non-empty expected answer of each op."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(vectors.rglob("*.json")):
        for case in json.loads(path.read_text()).get("cases", []):
            if case["op"] in ops and case.get("expect") and case["op"] not in found:
                found[case["op"]] = case
    assert sorted(found) == sorted(ops), f"a vector for every op: {sorted(found)}"
    return list(found.values())


def main() -> None:
    vectors = pathlib.Path(sys.argv[1])
    where = pathlib.Path(meshplane.__file__).resolve()
    assert where.is_relative_to(pathlib.Path(sys.prefix).resolve()), f"meshplane from {where}"
    print(f"meshplane {sys.version.split()[0]}: {where}")

    ops = ["generate_bench_account", "evaluate_policy", "network_map", "all_network_maps"]
    for case in first_cases(vectors, ops):
        got = getattr(meshplane, case["op"])(**case["input"])
        assert got == case["expect"], f"{case['id']}: {got!r}"
        print(f"meshplane: {case['id']} as the vector says")

    try:
        meshplane.validate_name_prefix("My_Svc")
        raise AssertionError("an invalid prefix was accepted")
    except meshplane.ValidationError as e:
        assert e.code == "invalid_name_prefix", e.code

    native = meshplane._native.__file__
    assert native is not None
    sections = subprocess.run(["readelf", "-S", "-W", native], check=True, capture_output=True, text=True).stdout
    assert ".debug_" not in sections, f"{native} carries debug info"
    print("meshplane: ok (native module stripped)")


if __name__ == "__main__":
    main()

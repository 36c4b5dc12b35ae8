"""Runs every conformance vector (conformance/vectors/**/*.json) through the
Python binding: one test per case, plus a JSON Schema check of each file.

MESHPLANE_VECTORS overrides the vectors directory.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest

import meshplane

VECTORS = Path(
    os.environ.get("MESHPLANE_VECTORS", Path(__file__).resolve().parents[2] / "conformance" / "vectors")
)
SCHEMA = VECTORS / "schema.json"


def vector_files() -> list[Path]:
    return sorted(p for p in VECTORS.rglob("*.json") if p.name != "schema.json")


def load_cases() -> list[Any]:
    cases = []
    seen: dict[str, Path] = {}
    for path in vector_files():
        for case in json.loads(path.read_text())["cases"]:
            if case["id"] in seen:
                raise ValueError(f"duplicate case id {case['id']} in {path} and {seen[case['id']]}")
            seen[case["id"]] = path
            cases.append(pytest.param(case, id=case["id"]))
    return cases


def canonical(value: Any) -> str:
    """JSON text with sorted keys: equal only for equal JSON (1 != 1.0 != true)."""
    return json.dumps(value, sort_keys=True)


def test_vectors_present() -> None:
    assert vector_files(), f"no vector files under {VECTORS}"


@pytest.mark.parametrize("path", vector_files(), ids=lambda p: str(p.relative_to(VECTORS)))
def test_schema(path: Path) -> None:
    if not SCHEMA.exists():
        pytest.skip(f"{SCHEMA} not present")
    jsonschema.validate(json.loads(path.read_text()), json.loads(SCHEMA.read_text()))


@pytest.mark.parametrize("case", load_cases())
def test_vector(case: dict[str, Any]) -> None:
    assert ("expect" in case) != ("error" in case), "a case needs exactly one of expect and error"
    if "expect" in case:
        got = meshplane.call(case["op"], case["input"])
        assert canonical(got) == canonical(case["expect"])
    else:
        with pytest.raises(meshplane.MeshplaneError) as raised:
            meshplane.call(case["op"], case["input"])
        assert (raised.value.code, raised.value.message) == (case["error"]["code"], case["error"]["message"])

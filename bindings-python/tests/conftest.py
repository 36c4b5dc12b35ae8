"""Prints the conformance count in the form every runner shares, so the
test script can compare it with the Rust runner's."""

from __future__ import annotations

import pytest

VECTOR_TEST = "test_vector["


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    def count(outcome: str) -> int:
        return sum(1 for r in terminalreporter.stats.get(outcome, []) if VECTOR_TEST in r.nodeid)

    passed = count("passed")
    failed = count("failed") + count("error")
    if passed + failed == 0 and "test_conformance.py" not in " ".join(terminalreporter.config.args):
        return  # a run without the conformance module: nothing to report
    terminalreporter.write_line(f"conformance: {passed} passed, {failed} failed")

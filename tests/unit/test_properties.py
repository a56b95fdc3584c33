from __future__ import annotations

from pathlib import Path

import pytest

from cogem import Reasoner
from cogem.properties import (
    PROPERTIES,
    assert_deterministic,
    check_trace,
    derived_fields,
    trace_digest,
)
from cogem.testing import SchemaFillingLLM, fake_runtime, rewrite_trace
from cogem.trace.rules import RULES

SCENARIO = "I told my friend her haircut looked great when I thought it did not."


def _run(seed: int) -> object:
    def run(path: Path) -> None:
        Reasoner.default().run(SCENARIO, fake_runtime(SchemaFillingLLM(seed)), trace_path=path)

    return run


def test_audit_and_properties_are_one_implementation() -> None:
    assert PROPERTIES == RULES
    assert all(fn.__doc__ for fn in PROPERTIES.values())


def test_determinism_digest(tmp_path: Path) -> None:
    digest = assert_deterministic(_run(1), tmp_path)  # type: ignore[arg-type]
    assert digest == trace_digest(tmp_path / "determinism-0.jsonl")
    other = tmp_path / "other.jsonl"
    Reasoner.default().run(SCENARIO, fake_runtime(SchemaFillingLLM(2)), trace_path=other)
    assert trace_digest(other) != digest


def test_nondeterminism_is_reported(tmp_path: Path) -> None:
    seeds = iter([1, 2])

    def flaky(path: Path) -> None:
        Reasoner.default().run(
            SCENARIO, fake_runtime(SchemaFillingLLM(next(seeds))), trace_path=path
        )

    with pytest.raises(AssertionError, match="first difference at record"):
        assert_deterministic(flaky, tmp_path)


def test_check_trace_selected_properties(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    Reasoner.default().run(SCENARIO, fake_runtime(), trace_path=path)
    assert check_trace(path) == [] and check_trace(path, [derived_fields]) == []

    def flip_stance(records: list[dict]) -> None:
        end = next(r for r in records if r["type"] == "module_end" and r["module"] == "plan")
        end["output"]["stance"] = "proceed" if end["output"]["stance"] != "proceed" else "refrain"

    forged = rewrite_trace(path, flip_stance, out=tmp_path / "forged.jsonl")
    (problem,) = check_trace(forged, [derived_fields])
    assert problem.rule == "derived" and "stance" in problem.message

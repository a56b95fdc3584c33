from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from cogem.canonical import canonical_json, sha256_json
from cogem.errors import TraceError
from cogem.trace import TraceWriter, read_trace, verify_trace
from cogem.trace.events import GENESIS, LlmCall, ModuleEnd, ModuleStart, RunEnd, RunStart

SCHEMA = {
    "type": "object",
    "properties": {"x": {"type": "string", "enum": ["a", "b"]}},
    "required": ["x"],
}
SPEC_HASH = "ab" * 32


def _manifest() -> dict:
    return {
        "cogem_version": "0",
        "python": "3.11",
        "packages": {},
        "model": {"model_id": "fake"},
        "memory": None,
        "modules": {"m": SPEC_HASH},
        "specs": {"m": {}},
        "graph": {"nodes": ["m"]},
        "seed": 0,
        "decoding": {},
    }


def write_trace(
    path: Path, *, output: dict | None = None, probs: list[float] | None = None
) -> Path:
    with TraceWriter(path, "run1") as w:
        w.emit(RunStart, manifest=_manifest(), inputs={"scenario": "s"})
        w.emit(ModuleStart, module="m", step=0, spec_hash=SPEC_HASH, reads={"scenario": "s"})
        w.emit(
            LlmCall, module="m", step=0, call="score_options", attempt=1, prompt_text="p",
            options=["a", "b"], logprobs=[-0.1, -2.0], probs=probs or [0.75, 0.25],
            prompt_tokens=3, completion_tokens=0, latency_ms=1.0,
        )  # fmt: skip
        w.emit(
            ModuleEnd, module="m", step=0, output=output or {"x": "a"}, output_schema=SCHEMA,
            schema_hash=sha256_json(SCHEMA), latency_ms=2.0,
        )  # fmt: skip
        w.emit(RunEnd, status="ok", steps=1, final_state={"x": "a"}, latency_ms=3.0)
    return path


def test_intact_trace_verifies(tmp_path: Path) -> None:
    path = write_trace(tmp_path / "t.jsonl")
    report = verify_trace(path)
    assert report.ok, report.problems
    assert report.records == 5 and report.complete and report.run_id == "run1"
    lines = path.read_text().splitlines()
    assert json.loads(lines[0])["prev"] == GENESIS
    assert json.loads(lines[1])["prev"] == json.loads(lines[0])["hash"]
    assert [type(e).__name__ for e in read_trace(path)][:2] == ["RunStart", "ModuleStart"]


@pytest.mark.parametrize("record", range(5))
def test_flipped_byte_names_that_record(tmp_path: Path, record: int) -> None:
    path = write_trace(tmp_path / "t.jsonl")
    lines = path.read_bytes().split(b"\n")
    line = bytearray(lines[record])
    pos = (
        line.index(b'"ts":"') + 8
    )  # a digit of the timestamp: still valid JSON, still a valid event
    line[pos] = ord("9") if line[pos] != ord("9") else ord("8")
    lines[record] = bytes(line)
    path.write_bytes(b"\n".join(lines))
    report = verify_trace(path)
    assert not report.ok
    assert report.first_bad == record
    assert report.problems[0].rule == "hash"


def test_deleted_and_reordered_records_break_the_chain(tmp_path: Path) -> None:
    path = write_trace(tmp_path / "t.jsonl")
    lines = path.read_text().splitlines()
    (tmp_path / "del.jsonl").write_text("\n".join(lines[:2] + lines[3:]) + "\n")
    report = verify_trace(tmp_path / "del.jsonl")
    assert report.first_bad == 2 and {p.rule for p in report.problems if p.index == 2} >= {"chain"}
    (tmp_path / "swap.jsonl").write_text(
        "\n".join([lines[0], lines[2], lines[1], *lines[3:]]) + "\n"
    )
    assert verify_trace(tmp_path / "swap.jsonl").first_bad == 1


def test_truncated_tail_is_incomplete(tmp_path: Path) -> None:
    path = write_trace(tmp_path / "t.jsonl")
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:3]) + "\n")
    report = verify_trace(path)
    assert [p.rule for p in report.problems] == ["incomplete"]
    assert report.first_bad == 3


def test_output_failing_its_schema_is_reported(tmp_path: Path) -> None:
    report = verify_trace(write_trace(tmp_path / "t.jsonl", output={"x": "zzz"}))
    assert [(p.index, p.rule) for p in report.problems] == [(3, "output_schema")]


def test_probabilities_must_sum_to_one(tmp_path: Path) -> None:
    report = verify_trace(write_trace(tmp_path / "t.jsonl", probs=[0.5, 0.4]))
    assert [(p.index, p.rule) for p in report.problems] == [(2, "probs")]


def test_writer_refuses_nan_and_existing_file(tmp_path: Path) -> None:
    path = write_trace(tmp_path / "t.jsonl")
    with pytest.raises(TraceError, match="already exists"):
        TraceWriter(path, "run2")
    with TraceWriter(tmp_path / "n.jsonl", "r") as w, pytest.raises(TraceError):
        w.emit(RunEnd, status="ok", steps=0, final_state={"x": math.nan}, latency_ms=0.0)


def test_records_are_canonical_json(tmp_path: Path) -> None:
    path = write_trace(tmp_path / "t.jsonl")
    for line in path.read_text().splitlines():
        assert canonical_json(json.loads(line)) == line

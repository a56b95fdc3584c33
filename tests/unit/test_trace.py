"""Trace writer and verifier: tamper evidence, the signed head and every invariant rule."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import pytest

from cogem import Reasoner
from cogem.canonical import canonical_json
from cogem.errors import TraceError, UsageError
from cogem.settings import Settings
from cogem.testing import fake_runtime, rewrite_trace
from cogem.trace import TraceWriter, read_trace, repair_torn_tail, verify_trace
from cogem.trace.events import GENESIS, RunEnd
from cogem.trace.rules import RULES

KEY = b"auditor-secret"


@pytest.fixture(scope="module")
def trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    runtime = fake_runtime()
    path = tmp_path_factory.mktemp("t") / "run.jsonl"
    Reasoner.default().run("I found a wallet and kept the money.", runtime, trace_path=path)
    return path


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    runtime = fake_runtime()
    runtime.settings = Settings(home=runtime.settings.home, audit_key=KEY.decode())
    path = tmp_path_factory.mktemp("s") / "run.jsonl"
    Reasoner.default().run("I found a wallet and kept the money.", runtime, trace_path=path)
    return path


def copy(src: Path, tmp_path: Path, data: bytes | None = None) -> Path:
    dst = tmp_path / "copy.jsonl"
    dst.write_bytes(src.read_bytes() if data is None else data)
    return dst


def test_intact_trace_verifies(trace: Path) -> None:
    report = verify_trace(trace)
    assert report.ok, report.problems
    assert report.complete and not report.signed
    lines = trace.read_text().splitlines()
    assert json.loads(lines[0])["prev"] == GENESIS
    assert json.loads(lines[1])["prev"] == json.loads(lines[0])["hash"]
    assert [json.loads(x)["type"] for x in lines[-2:]] == ["run_end", "seal"]
    for line in lines:
        assert canonical_json(json.loads(line)) == line


def test_every_single_byte_flip_names_its_record(trace: Path, tmp_path: Path) -> None:
    data = trace.read_bytes()
    starts = [0, *[i + 1 for i, b in enumerate(data) if b == 0x0A][:-1]]
    rng = random.Random(7)
    for _ in range(300):
        pos = rng.randrange(len(data))
        flipped = bytearray(data)
        flipped[pos] ^= 1 << rng.randrange(8)
        record = max(i for i, s in enumerate(starts) if s <= pos)
        report = verify_trace(copy(trace, tmp_path, bytes(flipped)))
        assert not report.ok and report.tampered, (pos, report.problems)
        assert report.first_bad == record, (pos, record, report.problems[:2])


def test_deleted_swapped_and_inserted_records_break_the_chain(trace: Path, tmp_path: Path) -> None:
    lines = trace.read_text().splitlines(keepends=True)
    assert (
        verify_trace(copy(trace, tmp_path, "".join(lines[:2] + lines[3:]).encode())).first_bad == 2
    )
    swapped = [lines[0], lines[2], lines[1], *lines[3:]]
    assert verify_trace(copy(trace, tmp_path, "".join(swapped).encode())).first_bad == 1
    inserted = [*lines[:4], lines[3], *lines[4:]]
    assert verify_trace(copy(trace, tmp_path, "".join(inserted).encode())).first_bad == 4


def test_cut_tail_is_incomplete_and_caught_by_the_signed_head(signed: Path, tmp_path: Path) -> None:
    assert verify_trace(signed, key=KEY).ok
    lines = signed.read_text().splitlines(keepends=True)
    cut = copy(signed, tmp_path, "".join(lines[:-3]).encode())
    report = verify_trace(cut)
    assert [p.rule for p in report.problems] == ["incomplete"] and report.first_bad == len(
        lines
    ) - 3
    # A forger who re-seals the cut trace (unsigned: they lack the key) still fails with the key.
    forged = rewrite_trace(
        cut,
        lambda rs: [
            *rs,
            {**json.loads(lines[-2]), "final_state": None, "status": "error"},
            json.loads(lines[-1]),
        ],
        out=tmp_path / "forged.jsonl",
    )
    assert any(p.rule == "signature" for p in verify_trace(forged, key=KEY).problems)
    # ...and re-signing with the wrong key is caught too.
    wrong = rewrite_trace(forged, lambda rs: None, out=tmp_path / "wrong.jsonl", key=b"other")
    assert any("another key" in p.message for p in verify_trace(wrong, key=KEY).problems)


def test_torn_tail_is_a_crash_not_tampering_and_can_be_repaired(
    trace: Path, tmp_path: Path
) -> None:
    data = trace.read_bytes()
    torn = copy(trace, tmp_path, data + data.split(b"\n")[3][:57])
    report = verify_trace(torn)
    assert report.torn_tail and not report.tampered
    assert [p.rule for p in report.problems] == ["torn_tail"]
    assert repair_torn_tail(torn) == 57
    assert torn.read_bytes() == data and verify_trace(torn).ok
    with pytest.raises(UsageError, match="nothing to repair"):
        repair_torn_tail(torn)


def test_flipped_final_newline_is_tampering_not_a_torn_tail(trace: Path, tmp_path: Path) -> None:
    path = copy(trace, tmp_path, trace.read_bytes()[:-1] + b" ")
    report = verify_trace(path)
    assert report.tampered and not report.torn_tail
    with pytest.raises(UsageError, match="refusing"):
        repair_torn_tail(path)


def _first(records: list[dict[str, Any]], kind: str, module: str | None = None) -> dict[str, Any]:
    return next(r for r in records if r["type"] == kind and module in (None, r.get("module")))


def _break_output_schema(rs: list[dict[str, Any]]) -> None:
    _first(rs, "module_end", "judge")["output"]["verdict"] = "maybe"


def _break_probs(rs: list[dict[str, Any]]) -> None:
    next(r for r in rs if r["type"] == "llm_call" and r.get("probs"))["probs"][0] += 0.1


def _break_citations(rs: list[dict[str, Any]]) -> None:
    end = _first(rs, "module_end", "judge")
    end["output"]["cited_ids"] = ["made.up"]
    end["output_schema"]["properties"]["cited_ids"]["items"] = {"type": "string"}
    end["schema_hash"] = __import__("cogem.canonical").canonical.sha256_json(end["output_schema"])


def _break_edges(rs: list[dict[str, Any]]) -> None:
    _first(rs, "run_start")["manifest"]["graph"]["edges"].remove(["recall", "judge"])


def _break_loop_bound(rs: list[dict[str, Any]]) -> None:
    _first(rs, "run_start")["manifest"]["graph"]["max_visits"]["plan"] = 0


def _break_steps(rs: list[dict[str, Any]]) -> None:
    call = next(r for r in rs if r["type"] == "llm_call" and r["module"] == "plan")
    rs.remove(call)
    rs.insert(1, call)  # a model call before any module step opened


def _break_reads(rs: list[dict[str, Any]]) -> None:
    _first(rs, "module_start", "judge")["reads"]["summary"] = "peeked"


def _break_final_state(rs: list[dict[str, Any]]) -> None:
    _first(rs, "run_end")["final_state"]["verdict"] = (
        "acceptable" if _first(rs, "run_end")["final_state"]["verdict"] != "acceptable" else "wrong"
    )


def _break_plan_stance(rs: list[dict[str, Any]]) -> None:
    end = _first(rs, "module_end", "plan")
    verdict = _first(rs, "run_end")["final_state"]["verdict"]
    stance = "proceed" if verdict != "acceptable" else "refrain"
    end["output"]["stance"] = stance
    end["output_schema"]["properties"]["stance"]["enum"] = [stance]
    end["schema_hash"] = __import__("cogem.canonical").canonical.sha256_json(end["output_schema"])
    _first(rs, "run_end")["final_state"]["stance"] = stance


def _break_writes(rs: list[dict[str, Any]]) -> None:
    del _first(rs, "module_end", "perceive")["output"]["actors"]


def _break_retrieval_score(rs: list[dict[str, Any]]) -> None:
    _first(rs, "retrieval")["hits"][0]["score"] += 0.25


def _break_spec_hash(rs: list[dict[str, Any]]) -> None:
    _first(rs, "run_start")["manifest"]["specs"]["judge"]["prompt"] += " (edited)"


@pytest.mark.parametrize(
    ("edit", "rule", "kind", "module"),
    [
        (_break_output_schema, "output_schema", "module_end", "judge"),
        (_break_probs, "probs", "llm_call", "judge"),
        (_break_citations, "citations", "module_end", "judge"),
        (_break_edges, "edges", "module_start", "judge"),
        (_break_loop_bound, "loop_bound", "module_start", "plan"),
        (_break_steps, "steps", "llm_call", "plan"),
        (_break_reads, "reads", "module_start", "judge"),
        (_break_final_state, "final_state", "run_end", None),
        (_break_spec_hash, "spec_hash", "run_start", None),
        (_break_plan_stance, "derived", "module_end", "plan"),
        (_break_writes, "writes", "module_end", "perceive"),
        (_break_retrieval_score, "retrieval_score", "retrieval", "recall"),
    ],
)
def test_each_rule_reports_the_violating_record(
    trace: Path, tmp_path: Path, edit: Any, rule: str, kind: str, module: str | None
) -> None:
    forged = rewrite_trace(trace, edit, out=tmp_path / "forged.jsonl")
    records = [json.loads(line) for line in forged.read_text().splitlines()]
    target = next(
        i for i, r in enumerate(records) if r["type"] == kind and module in (None, r.get("module"))
    )
    report = verify_trace(forged)
    assert (target, rule) in {(p.index, p.rule) for p in report.problems}, report.problems


def test_rules_are_named_and_documented() -> None:
    assert set(RULES) >= {
        "output_schema",
        "probs",
        "steps",
        "edges",
        "loop_bound",
        "reads",
        "writes",
        "citations",
        "derived",
        "final_state",
        "spec_hash",
    }
    assert all(rule.__doc__ for rule in RULES.values())


def test_writer_refuses_nan_and_existing_file(trace: Path, tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="already exists"):
        TraceWriter(trace, "run2")
    with TraceWriter(tmp_path / "n.jsonl", "r") as w, pytest.raises(TraceError):
        w.emit(RunEnd, status="ok", steps=0, final_state={"x": math.nan}, latency_ms=0.0)


def test_read_trace_types_events(trace: Path) -> None:
    kinds = [type(e).__name__ for e in read_trace(trace)]
    assert kinds[0] == "RunStart" and kinds[-1] == "Seal"

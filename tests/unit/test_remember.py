"""The remember step: idempotent episodic writes with provenance, traced and audited."""

from __future__ import annotations

import json
from pathlib import Path

from cogem import Reasoner, verify_trace
from cogem.engine.runtime import RunContext
from cogem.engine.step import run_step
from cogem.spec import load_specs
from cogem.testing import fake_runtime, rewrite_trace
from cogem.trace import TraceWriter, read_trace
from cogem.trace.events import MemoryWrite, ModuleStart

SCENARIO = "I found a wallet and returned it to its owner."


def test_remember_writes_an_episode_with_provenance(tmp_path: Path) -> None:
    runtime = fake_runtime()
    before = runtime.memory.count()
    result = Reasoner.default(remember=True).run(SCENARIO, runtime, trace_path=tmp_path / "t.jsonl")
    assert verify_trace(result.trace_path).ok
    events = read_trace(result.trace_path)
    (write,) = [e for e in events if isinstance(e, MemoryWrite)]
    start = next(e for e in events if isinstance(e, ModuleStart) and e.module == "remember")
    assert write.caused_by == start.hash and write.record_id == result.state["episode_id"]
    assert runtime.memory.count() == before + 1
    (record,) = runtime.memory.get([write.record_id])
    assert record.kind == "episodic" and record.text == write.text
    assert record.provenance is not None
    assert (record.provenance.module, record.provenance.run_id, record.provenance.record_hash) == (
        "remember",
        result.run_id,
        start.hash,
    )
    hits = runtime.memory.search(record.text, 1, kinds=["episodic"])
    assert hits[0].id == record.id


def test_repeated_step_does_not_duplicate(tmp_path: Path) -> None:
    runtime = fake_runtime()
    first = Reasoner.default(remember=True).run(SCENARIO, runtime, trace_path=tmp_path / "t.jsonl")
    count = runtime.memory.count()
    remember = load_specs()["remember"]
    with TraceWriter(tmp_path / "again.jsonl", first.run_id) as writer:
        ctx = RunContext(runtime=runtime, trace=writer)
        ctx.steps = 4  # the same step number as the first run
        out = run_step(remember, first.state, ctx)
    assert out["episode_id"] == first.state["episode_id"]
    assert runtime.memory.count() == count


def test_write_without_its_cause_is_reported(tmp_path: Path) -> None:
    result = Reasoner.default(remember=True).run(
        SCENARIO, fake_runtime(), trace_path=tmp_path / "t.jsonl"
    )

    def unlink(records: list[dict]) -> None:
        write = next(r for r in records if r["type"] == "memory_write")
        write["caused_by"] = records[0]["hash"]

    forged = rewrite_trace(result.trace_path, unlink, out=tmp_path / "forged.jsonl")
    lines = [json.loads(x) for x in forged.read_text().splitlines()]
    index = next(i for i, r in enumerate(lines) if r["type"] == "memory_write")
    assert (index, "memory_write") in {(p.index, p.rule) for p in verify_trace(forged).problems}

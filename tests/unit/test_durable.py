"""Durable runs on fakes: checkpoints without pickle, thread errors, resume after an interruption."""

from __future__ import annotations

import pickle
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from cogem import Reasoner
from cogem.engine.checkpoint import NoPickleSerializer, open_checkpointer
from cogem.errors import CheckpointError, ThreadError, TraceError
from cogem.llm.base import Generation, Prompt
from cogem.memory.seed import seed_records
from cogem.testing import SchemaFillingLLM, fake_runtime
from cogem.trace import read_trace, verify_trace

SCENARIO = "I found a wallet with cash in it and kept it."


class Killed(BaseException):
    """Stands in for a kill: not an Exception, so nothing records or seals the run."""


class KillAt(SchemaFillingLLM):
    """Schema-filling fake that 'dies' on the ``n``-th generate call (once)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.kill_at, self.generated = n, 0

    def generate(
        self, prompt: Prompt, *, schema: dict[str, Any] | None = None, max_new_tokens: int = 256
    ) -> Generation:
        self.generated += 1
        if self.generated == self.kill_at:
            raise Killed
        return super().generate(prompt, schema=schema, max_new_tokens=max_new_tokens)


def comparable(state: dict[str, Any]) -> dict[str, Any]:
    """A final state without what differs between two runs by design: the episode id (derived
    from the run id) and retrieval scores (recency is measured from each run's start)."""
    out = {k: v for k, v in state.items() if k != "episode_id"}
    out["memories"] = [
        {k: v for k, v in row.items() if k not in ("score",)} for row in state.get("memories", [])
    ]
    return out


def written(runtime: Any) -> int:
    """Records the runs added to a fake runtime's memory (beyond the seed records)."""
    return int(runtime.memory.count()) - len(seed_records())


def test_serializer_refuses_pickle_both_ways() -> None:
    serde = NoPickleSerializer()
    with pytest.raises(CheckpointError, match="pickled"):
        serde.loads_typed(("pickle", pickle.dumps({"a": 1})))

    class Opaque:
        __slots__ = ()

    with pytest.raises(CheckpointError, match="without pickle"):
        serde.dumps_typed(Opaque())
    assert serde.loads_typed(serde.dumps_typed({"x": [1, "y"]})) == {"x": [1, "y"]}


def test_checkpoint_blobs_are_never_pickle(tmp_path: Path) -> None:
    runtime = fake_runtime(home=tmp_path)
    Reasoner.default(remember=True).run(SCENARIO, runtime, thread="t", approve=True)
    conn = sqlite3.connect(tmp_path / "checkpoints.sqlite")
    rows = conn.execute("SELECT type, checkpoint FROM checkpoints").fetchall()
    rows += conn.execute("SELECT type, value FROM writes").fetchall()
    assert rows
    for kind, blob in rows:
        assert kind != "pickle"
        # Every pickle stream since protocol 2 starts with the PROTO opcode 0x80.
        assert not (blob or b"").startswith(b"\x80")


def test_durable_run_is_one_verified_trace(tmp_path: Path) -> None:
    runtime = fake_runtime(home=tmp_path)
    result = Reasoner.default().run(SCENARIO, runtime, thread="a")
    assert result.status == "ok" and result.thread == "a" and "cogem_run" not in result.state
    assert verify_trace(result.trace_path).ok


def test_thread_errors_say_what_to_do(tmp_path: Path) -> None:
    runtime = fake_runtime(home=tmp_path)
    reasoner = Reasoner.default()
    reasoner.run(SCENARIO, runtime, thread="done")
    with pytest.raises(ThreadError, match="already finished"):
        reasoner.run(SCENARIO, runtime, thread="done")
    with pytest.raises(ThreadError, match="already finished"):
        reasoner.resume("done", runtime)
    with pytest.raises(ThreadError, match="no durable run"):
        reasoner.resume("never", runtime)
    paused = reasoner.run(SCENARIO, runtime, thread="p", approve=True)
    assert paused.status == "paused"
    with pytest.raises(ThreadError, match="different scenario"):
        reasoner.run("Another story entirely.", runtime, thread="p")
    with pytest.raises(ThreadError, match="--resume"):
        reasoner.run(SCENARIO, runtime, thread="p")
    with pytest.raises(ThreadError, match="approval"):
        reasoner.resume("p", runtime)
    with pytest.raises(ThreadError, match="module specs"):
        Reasoner.default(remember=True).resume("p", runtime, approve=True)


def test_unreadable_store_is_an_error_never_a_fresh_start(tmp_path: Path) -> None:
    bad = tmp_path / "checkpoints.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    runtime = fake_runtime(home=tmp_path)
    with pytest.raises(CheckpointError, match="unreadable"):
        Reasoner.default().run(SCENARIO, runtime, thread="t")
    with pytest.raises(CheckpointError, match="unreadable"):
        Reasoner.default().resume("t", runtime)
    assert bad.read_bytes().startswith(b"this is not a database")  # not replaced


def test_unreadable_checkpoint_is_an_error(tmp_path: Path) -> None:
    runtime = fake_runtime(home=tmp_path)
    Reasoner.default().run(SCENARIO, runtime, thread="t", approve=True)
    conn = sqlite3.connect(tmp_path / "checkpoints.sqlite")
    conn.execute("UPDATE checkpoints SET type = 'pickle'")
    conn.commit()
    conn.close()
    with pytest.raises(CheckpointError):
        Reasoner.default().resume("t", runtime, approve=True)


@pytest.mark.parametrize("kill_at", [1, 2, 3, 4])  # inside perceive, judge, plan, remember
def test_interrupted_run_resumes_to_the_same_state(tmp_path: Path, kill_at: int) -> None:
    reasoner = Reasoner.default(remember=True)
    clean_rt = fake_runtime(home=tmp_path / "clean")
    clean = reasoner.run(SCENARIO, clean_rt, thread="c")

    runtime = fake_runtime(KillAt(kill_at), home=tmp_path / "killed")
    with pytest.raises(Killed):
        reasoner.run(SCENARIO, runtime, thread="k")
    resumed = reasoner.resume("k", runtime)

    assert comparable(resumed.state) == comparable(clean.state)
    report = verify_trace(resumed.trace_path)
    assert report.ok, report.problems
    events = read_trace(resumed.trace_path)
    steps = [(e.module, e.step) for e in events if e.type == "module_end"]
    assert len(steps) == len(set(steps)) == 5
    assert [e.type for e in events].count("run_resume") == 1
    assert written(runtime) == 1 == written(clean_rt)
    assert runtime.memory.get([resumed.state["episode_id"]])


def test_remember_rerun_after_its_write_does_not_duplicate(tmp_path: Path) -> None:
    """Killed after remember wrote memory but before its step was checkpointed: the step runs
    again and upserts the same record id."""
    reasoner = Reasoner.default(remember=True)
    runtime = fake_runtime(home=tmp_path)
    calls = 0
    original = runtime.memory.add

    def add_then_die(records: Any) -> None:
        nonlocal calls
        original(records)
        calls += 1
        if calls == 1:
            raise Killed

    runtime.memory.add = add_then_die
    with pytest.raises(Killed):
        reasoner.run(SCENARIO, runtime, thread="k")
    assert written(runtime) == 1
    result = reasoner.resume("k", runtime)
    assert calls == 2 and written(runtime) == 1
    events = read_trace(result.trace_path)
    assert [e.type for e in events].count("memory_write") == 1
    resume = next(e for e in events if e.type == "run_resume")
    assert resume.dropped_records >= 2  # remember's start and model call were cut
    assert verify_trace(result.trace_path).ok


def test_resume_refuses_a_trace_that_does_not_match_the_checkpoint(tmp_path: Path) -> None:
    reasoner = Reasoner.default()
    runtime = fake_runtime(KillAt(3), home=tmp_path)
    with pytest.raises(Killed):
        reasoner.run(SCENARIO, runtime, trace_path=tmp_path / "t.jsonl", thread="k")
    lines = (tmp_path / "t.jsonl").read_text().splitlines()
    lines[1] = lines[1].replace('"perceive"', '"perceivE"', 1)
    (tmp_path / "t.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(TraceError, match="hash chain"):
        reasoner.resume("k", runtime)


def test_open_checkpointer_postgres_needs_its_package() -> None:
    from cogem.errors import UsageError

    with (
        pytest.raises(UsageError, match="langgraph-checkpoint-postgres"),
        open_checkpointer("postgresql://localhost/cogem"),
    ):
        pass

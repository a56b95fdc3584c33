"""Replay and re-derive a real run of the default reasoner on the embedded model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cogem import Reasoner, Settings, make_runtime
from cogem.audit.replay import rederive_trace, replay_trace
from cogem.engine import Runtime
from cogem.llm.transformers_backend import TransformersLLM
from cogem.trace import read_trace
from cogem.trace.events import LlmCall

pytestmark = pytest.mark.integration

SCENARIO = "I borrowed my neighbour's ladder without asking and returned it the next day."


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Runtime:
    return make_runtime(Settings(home=tmp_path_factory.mktemp("home")))


@pytest.fixture(scope="module")
def trace(runtime: Runtime, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("traces") / "run.jsonl"
    return Path(Reasoner.default().run(SCENARIO, runtime, trace_path=out).trace_path)


def test_replay_matches_with_zero_model_calls(
    trace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a replay must not touch the real model")

    for name in ("load", "generate", "score_options"):
        monkeypatch.setattr(TransformersLLM, name, refuse)
    result = replay_trace(trace, out=tmp_path / "replay.jsonl")
    assert result.matches, result
    assert result.model_calls == 0
    recorded = [e for e in read_trace(trace) if isinstance(e, LlmCall)]
    assert result.served_calls == result.recorded_calls == len(recorded) >= 5
    assert [s.status for s in result.steps] == ["replayed"] * 4


def test_rederive_with_the_real_model_is_identical(
    trace: Path, runtime: Runtime, tmp_path: Path
) -> None:
    # Greedy decoding on the same weights is deterministic: every step comes out the same.
    result = rederive_trace(trace, runtime, out=tmp_path / "rederive.jsonl")
    assert result.matches, [s for s in result.steps if s.status != "identical"]
    assert [s.status for s in result.steps] == ["identical"] * 4
    assert result.model_id == result.recorded_model_id
    assert result.model_calls == sum(isinstance(e, LlmCall) for e in read_trace(trace))


def test_cli_replay_exits_0(trace: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    done = subprocess.run(
        [sys.executable, "-m", "cogem", "replay", str(trace)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "MATCHES" in done.stdout and "0 real model calls" in done.stdout

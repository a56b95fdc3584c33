"""The default reasoner on the real embedded model and real chromadb + MiniLM."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cogem import Reasoner, Settings, make_runtime, verify_trace
from cogem.engine import Runtime
from cogem.trace import read_trace
from cogem.trace.events import LlmCall, ModuleEnd, Retrieval

pytestmark = pytest.mark.integration

SCENARIOS = [
    "I found a wallet with 200 dollars and the owner's ID in it, and I kept the money.",
    "My neighbour's house was on fire, so I broke their window to get their dog out.",
]


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Runtime:
    return make_runtime(Settings(home=tmp_path_factory.mktemp("home")))


@pytest.fixture(scope="module")
def runs(runtime: Runtime, tmp_path_factory: pytest.TempPathFactory) -> list[Any]:
    out = tmp_path_factory.mktemp("traces")
    return [
        Reasoner.default().run(s, runtime, trace_path=out / f"{i}.jsonl")
        for i, s in enumerate(SCENARIOS)
    ]


def test_real_runs_verify_and_keep_the_rules(runs: list[Any]) -> None:
    for result in runs:
        report = verify_trace(result.trace_path)
        assert report.ok, report.problems
        events = read_trace(result.trace_path)
        assert [e.module for e in events if isinstance(e, ModuleEnd)] == [
            "perceive",
            "recall",
            "judge",
            "plan",
        ]
        state = result.state
        assert set(state["cited_ids"]) <= set(state["recalled_ids"])
        (retrieval,) = [e for e in events if isinstance(e, Retrieval)]
        assert [h.id for h in retrieval.hits] == state["recalled_ids"] and retrieval.hits
        scored = [e for e in events if isinstance(e, LlmCall) and e.call == "score_options"]
        assert len(scored) == 1 and abs(math.fsum(scored[0].probs or []) - 1) < 1e-6
        assert all(lp <= 0 for lp in scored[0].logprobs or [])
        manifest = events[0].manifest
        assert (
            manifest.model["source"] == "embedded-gguf"
            and len(manifest.model["weights_sha256"]) == 64
        )
        assert manifest.memory and manifest.memory["embedder_id"].endswith("all-MiniLM-L6-v2")


def test_same_scenario_same_outputs(runtime: Runtime, runs: list[Any], tmp_path: Path) -> None:
    again = Reasoner.default().run(SCENARIOS[0], runtime, trace_path=tmp_path / "again.jsonl")

    def outputs(path: Path) -> list[Any]:
        return [
            (e.output if isinstance(e, ModuleEnd) else (e.raw_output, e.logprobs, e.prompt_text))
            for e in read_trace(path)
            if isinstance(e, ModuleEnd | LlmCall)
        ]

    assert outputs(again.trace_path) == outputs(runs[0].trace_path)


def _cogem(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "220"}
    return subprocess.run(
        [sys.executable, "-m", "cogem", *args], capture_output=True, text=True, env=env, timeout=600
    )


def test_cli_run_audit_and_tamper(tmp_path: Path) -> None:
    trace = tmp_path / "cli.jsonl"
    done = _cogem("run", "--trace", str(trace), SCENARIOS[0])
    assert done.returncode == 0, done.stderr
    for module in ("perceive", "recall", "judge", "plan"):
        assert module in done.stdout
    assert str(trace) in done.stdout.replace("\n", "")
    assert _cogem("audit", str(trace)).returncode == 0

    lines = trace.read_bytes().split(b"\n")
    record = 3
    pos = lines[record].index(b'"ts":"') + 8
    lines[record] = (
        lines[record][:pos]
        + (b"8" if lines[record][pos : pos + 1] == b"9" else b"9")
        + lines[record][pos + 1 :]
    )
    trace.write_bytes(b"\n".join(lines))
    audit = _cogem("audit", str(trace))
    assert audit.returncode == 1 and f"first bad record {record}" in audit.stdout


def test_cli_json_prints_final_state(tmp_path: Path) -> None:
    done = _cogem("run", "--json", "--trace", str(tmp_path / "j.jsonl"), SCENARIOS[1])
    assert done.returncode == 0, done.stderr
    state = json.loads(done.stdout)
    assert state["verdict"] in {"acceptable", "wrong", "unclear"} and state["steps"]


def test_thousand_byte_flips_in_a_real_trace_name_the_exact_record(
    runs: list[Any], tmp_path: Path
) -> None:
    import random

    data = runs[0].trace_path.read_bytes()
    starts = [0, *[i + 1 for i, b in enumerate(data) if b == 0x0A][:-1]]
    rng = random.Random(2026)
    copy = tmp_path / "flipped.jsonl"
    for _ in range(1000):
        pos = rng.randrange(len(data))
        flipped = bytearray(data)
        flipped[pos] ^= 1 << rng.randrange(8)
        copy.write_bytes(bytes(flipped))
        report = verify_trace(copy)
        record = max(i for i, s in enumerate(starts) if s <= pos)
        assert report.tampered and report.first_bad == record, (pos, report.problems[:2])
    lines = data.splitlines(keepends=True)
    for broken in (lines[:3] + lines[4:], [lines[0], lines[2], lines[1], *lines[3:]], lines[:-2]):
        copy.write_bytes(b"".join(broken))
        assert not verify_trace(copy).ok
    copy.write_bytes(data)
    assert verify_trace(copy).ok

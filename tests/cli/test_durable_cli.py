"""`cogem run --thread/--resume/--approve` as a user runs it: a real process killed with SIGKILL,
and approval answered through a pseudo-terminal. The CLI runs on fakes (tests/fake_cli.py), so
these take seconds; tests/integration/test_durable_real.py does the kill with the real model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pexpect

from cogem.trace import read_trace, verify_trace

ROOT = Path(__file__).resolve().parents[2]
FAKE_CLI = [sys.executable, str(ROOT / "tests" / "fake_cli.py")]
SCENARIO = "I found a wallet with cash in it and kept it."


def env(home: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ, "COGEM_HOME": str(home), "PYTHONPATH": str(ROOT), "COLUMNS": "200",
        "HF_HUB_OFFLINE": "1", **extra,
    }  # fmt: skip


def fake_cogem(home: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*FAKE_CLI, *args], capture_output=True, text=True, env=env(home, **extra), timeout=120
    )


def wait_for(path: Path, needle: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_file() and needle in path.read_text(encoding="utf-8", errors="replace"):
            return
        time.sleep(0.05)
    raise AssertionError(f"{needle!r} never appeared in {path}")


def comparable(state: dict[str, Any]) -> dict[str, Any]:
    """Drop what differs between two runs by design: the episode id (from the run id) and
    retrieval scores (recency is measured from each run's start)."""
    out = {k: v for k, v in state.items() if k != "episode_id"}
    out["memories"] = [{k: v for k, v in m.items() if k != "score"} for m in state["memories"]]
    return out


def episodic_ids(home: Path) -> list[str]:
    from cogem.memory.chroma import ChromaMemory
    from cogem.testing import HashEmbedding

    with ChromaMemory(home / "fake-memory", embedding=HashEmbedding()) as memory:
        found = memory.search("Episode", 50, kinds=["episodic"])
    return [hit.id for hit in found]


def test_kill_9_mid_module_then_resume(tmp_path: Path) -> None:
    clean_home, home = tmp_path / "clean", tmp_path / "killed"
    clean = fake_cogem(clean_home, "run", "--json", "--remember", "--thread", "c", SCENARIO)
    assert clean.returncode == 0, clean.stderr

    trace = home / "run.jsonl"
    args = ["run", "--json", "--remember", "--thread", "k", "--trace", str(trace), SCENARIO]
    proc = subprocess.Popen(
        [*FAKE_CLI, *args], env=env(home, FAKE_LLM_DELAY="0.4"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for(trace, '"module":"judge"')  # judge has started: kill it mid-module
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not verify_trace(trace).ok  # no seal: the run was cut

    resumed = fake_cogem(home, "run", "--json", "--thread", "k", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert comparable(json.loads(resumed.stdout)) == comparable(json.loads(clean.stdout))

    report = verify_trace(trace)
    assert report.ok, report.problems
    events = read_trace(trace)
    ends = [(e.module, e.step) for e in events if e.type == "module_end"]
    assert len(ends) == len(set(ends)) == 5
    starts = [e.step for e in events if e.type == "module_start"]
    assert starts == [0, 1, 2, 3, 4]  # the killed judge start was cut, not duplicated
    assert [e.type for e in events].count("memory_write") == 1
    assert len(episodic_ids(home)) == 1 == len(episodic_ids(clean_home))
    assert fake_cogem(home, "run", "--thread", "k", "--resume").returncode == 2  # finished


def test_resume_errors_are_one_line(tmp_path: Path) -> None:
    done = fake_cogem(tmp_path, "run", "--thread", "nope", "--resume")
    assert done.returncode == 2 and "no durable run" in done.stderr
    (tmp_path / "checkpoints.sqlite").write_bytes(b"garbage" * 200)
    done = fake_cogem(tmp_path, "run", "--thread", "t", SCENARIO)
    assert done.returncode == 1 and "unreadable" in done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def spawn_approval(home: Path, trace: Path) -> pexpect.spawn:
    args = ["run", "--approve", "--remember", "--trace", str(trace), SCENARIO]
    child = pexpect.spawn(
        FAKE_CLI[0], [*FAKE_CLI[1:], *args], env=env(home), encoding="utf-8", timeout=60
    )
    child.expect("approval needed: plan")
    child.expect("verdict")
    child.expect(r"\[a\]pprove / \[e\]dit / \[r\]eject: ")
    return child


def finish(child: pexpect.spawn) -> None:
    child.expect("trace: ")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before


def the_decision(trace: Path) -> Any:
    report = verify_trace(trace)
    assert report.ok, report.problems
    (decision,) = [e for e in read_trace(trace) if e.type == "human_decision"]
    assert decision.actor == "human" and decision.module == "plan"
    return decision


def test_approve_through_a_terminal(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    child = spawn_approval(tmp_path, trace)
    child.sendline("a")
    finish(child)
    assert the_decision(trace).decision == "approve"
    assert any(e.type == "memory_write" for e in read_trace(trace))


def test_edit_through_a_terminal(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    child = spawn_approval(tmp_path, trace)
    child.sendline("e")
    child.expect(r"steps\[0\]: ")
    child.sendline("x" * 200)  # too long for the plan's schema: refused, asked again
    child.expect(r"steps\[1\]: ")
    child.sendline("")
    child.expect("not accepted")
    child.expect(r"\[a\]pprove / \[e\]dit / \[r\]eject: ")
    child.sendline("e")
    child.expect(r"steps\[0\]: ")
    child.sendline("Give the wallet back.")
    child.expect(r"steps\[1\]: ")
    child.sendline("Apologise.")
    child.expect(r"steps\[2\]: ")
    child.sendline("")
    finish(child)
    decision = the_decision(trace)
    assert decision.decision == "edit"
    assert decision.edits == {"steps": ["Give the wallet back.", "Apologise."]}
    end = next(e for e in read_trace(trace) if e.type == "run_end")
    assert end.status == "ok" and end.final_state["steps"] == decision.edits["steps"]


def test_reject_through_a_terminal(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    child = spawn_approval(tmp_path, trace)
    child.sendline("r")
    child.expect("rejected")
    finish(child)
    assert the_decision(trace).decision == "reject"
    events = read_trace(trace)
    assert not any(e.type == "memory_write" for e in events)
    assert next(e for e in events if e.type == "run_end").status == "rejected"

"""The CLI as a user runs it: a real subprocess, exit codes and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cogem import Reasoner
from cogem.testing import fake_runtime

COGEM = [sys.executable, "-m", "cogem"]


def cogem(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    return subprocess.run([*COGEM, *args], capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.parametrize(
    "args", [("run", ""), ("run", "   "), ("run", "--model", "/nonexistent", "x")]
)
def test_usage_errors_exit_2_with_one_line(args: tuple[str, ...]) -> None:
    done = cogem(*args)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "Traceback" not in done.stderr


def test_missing_model_message_names_the_path() -> None:
    done = cogem("run", "--model", "/nonexistent", "x")
    assert "/nonexistent" in done.stderr


def test_help_lists_commands() -> None:
    done = cogem("--help")
    assert done.returncode == 0 and "run" in done.stdout and "audit" in done.stdout


def _fake_trace(tmp_path: Path) -> Path:
    return (
        Reasoner.default()
        .run("I kept the change.", fake_runtime(), trace_path=tmp_path / "t.jsonl")
        .trace_path
    )


def test_audit_intact_and_tampered(tmp_path: Path) -> None:
    path = _fake_trace(tmp_path)
    ok = cogem("audit", str(path))
    assert ok.returncode == 0 and ok.stdout.startswith("intact")

    lines = path.read_text(encoding="utf-8").splitlines()
    target = 4
    lines[target] = lines[target].replace('"step":', '"step": ', 1)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    bad = cogem("audit", str(path))
    assert bad.returncode == 1
    assert f"first bad record {target}" in bad.stdout and "TAMPERED" in bad.stdout

    as_json = json.loads(cogem("audit", "--json", str(path)).stdout)
    assert as_json["ok"] is False and as_json["first_bad"] == target


def test_audit_missing_file_is_usage_error(tmp_path: Path) -> None:
    done = cogem("audit", str(tmp_path / "nope.jsonl"))
    assert done.returncode == 2 and "nope.jsonl" in done.stderr


def test_unknown_flag_is_usage_error() -> None:
    done = cogem("run", "--bogus", "x")
    assert done.returncode == 2 and "No such option" in done.stderr


def test_bad_spec_file_is_one_line_usage_error(tmp_path: Path) -> None:
    from cogem.paths import bundled_dir

    for spec in bundled_dir("modules").glob("*.toml"):
        (tmp_path / spec.name).write_text(spec.read_text())
    bad = tmp_path / "judge.toml"
    bad.write_text(bad.read_text().replace("max_new_tokens = 120", "max_new_tokens = -1"))
    done = cogem("run", "--modules", str(tmp_path), "x")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0] and "bounds.max_new_tokens" in lines[0]


def test_audit_repair_truncates_a_torn_tail(tmp_path: Path) -> None:
    path = _fake_trace(tmp_path)
    intact = path.read_bytes()
    path.write_bytes(intact + b'{"v":1,"seq":')
    torn = cogem("audit", str(path))
    assert torn.returncode == 1 and "TORN TAIL" in torn.stdout
    repaired = cogem("audit", "--repair", str(path))
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert path.read_bytes() == intact


def test_audit_checks_the_signed_head_with_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cogem.settings import Settings

    runtime = fake_runtime()
    runtime.settings = Settings(home=runtime.settings.home, audit_key="k1")
    path = Reasoner.default().run("x y", runtime, trace_path=tmp_path / "s.jsonl").trace_path
    monkeypatch.setenv("COGEM_AUDIT_KEY", "k1")
    assert "signature verified" in cogem("audit", str(path)).stdout
    monkeypatch.setenv("COGEM_AUDIT_KEY", "k2")
    wrong = cogem("audit", str(path))
    assert wrong.returncode == 1 and "another key" in wrong.stdout

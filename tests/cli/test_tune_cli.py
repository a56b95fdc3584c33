"""``cogem tune`` and ``cogem eval --tuned`` as a user runs them: exit codes and one-line errors
(no model is loaded: every case fails before that)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def cogem(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "cogem", *args], capture_output=True, text=True, env=env, timeout=300
    )


def _one_line_error(done: subprocess.CompletedProcess[str], code: int = 2) -> str:
    assert done.returncode == code, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    return lines[0]


@pytest.fixture
def ethics(tmp_path: Path) -> Path:
    (tmp_path / "justice").mkdir()
    for split in ("train", "test", "test_hard"):
        (tmp_path / "justice" / f"justice_{split}.csv").write_text("label,scenario\n1,x\n0,y\n")
    return tmp_path


@pytest.mark.parametrize("split", ["test", "test_hard"])
def test_tuning_on_a_test_split_is_refused(tmp_path: Path, ethics: Path, split: str) -> None:
    done = cogem("tune", "judge", "--data", str(ethics), "--split", split, "--steps", "1",
                 "--out", str(tmp_path / "out"))  # fmt: skip
    assert "held out" in _one_line_error(done)


def test_unknown_module_and_missing_length(tmp_path: Path, ethics: Path) -> None:
    done = cogem("tune", "nope", "--data", str(ethics), "--steps", "1", "--out", str(tmp_path / "o"))
    assert "no module 'nope'" in _one_line_error(done)
    done = cogem("tune", "judge", "--data", str(ethics), "--out", str(tmp_path / "o"))
    assert "steps or epochs" in _one_line_error(done)


def test_eval_refuses_a_folder_that_is_not_an_artifact(tmp_path: Path, ethics: Path) -> None:
    done = cogem("eval", "ethics_justice", "--data", str(ethics), "--tuned", str(tmp_path),
                 "--out", str(tmp_path / "ev"))  # fmt: skip
    assert "not a tuned artifact" in _one_line_error(done)


def test_help_lists_tune() -> None:
    done = cogem("tune", "--help")
    assert done.returncode == 0 and "--adapter" in done.stdout and "--bf16" in done.stdout

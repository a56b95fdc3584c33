"""`cogem probe` input errors: exit 2 with one line, before any model loads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cogem.paths import bundled_dir

CASES = bundled_dir("evals") / "probes" / "cases.jsonl"


def cogem_probe(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "cogem", "probe", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def _one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    return lines[0]


def test_missing_case_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    assert str(missing) in _one_line_error(cogem_probe(str(missing)))


def test_unknown_probe_lists_the_valid_ones() -> None:
    line = _one_line_error(cogem_probe(str(CASES), "--probes", "paraphrase,bogus"))
    assert "'bogus'" in line
    for name in ("sycophancy_fine", "sycophancy_wrong", "irrelevant_detail", "option_order"):
        assert name in line


@pytest.mark.parametrize(
    ("content", "args", "expect"),
    [
        ('{"scenario": "ok"}\n{broken\n', (), "line 2"),
        ('{"scenario": "ok"}\n', ("--limit", "0"), "--limit"),
    ],
)
def test_bad_input(tmp_path: Path, content: str, args: tuple[str, ...], expect: str) -> None:
    path = tmp_path / "cases.jsonl"
    path.write_text(content, encoding="utf-8")
    assert expect in _one_line_error(cogem_probe(str(path), *args))

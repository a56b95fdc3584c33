"""`cogem eval` as a user runs it: subcommands, one-line usage errors before any model loads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cogem.evals.runner import run_eval
from cogem.testing import SchemaFillingLLM, fake_runtime

COGEM = [sys.executable, "-m", "cogem"]


def cogem(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    return subprocess.run([*COGEM, *args], capture_output=True, text=True, env=env, timeout=120)


def test_list_names_every_builtin_suite() -> None:
    done = cogem("eval", "list")
    assert done.returncode == 0, done.stderr
    for name in ("ethics_cm", "ethics_justice", "ethics_util_pairwise", "vignettes"):
        assert name in done.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("eval", "nonesuch"), "no suite 'nonesuch'"),
        (("eval", "ethics_cm"), "pass --data DIR"),
        (("eval", "ethics_cm", "--data", "/nonexistent"), "ETHICS directory not found"),
        (("eval", "ethics_virtue", "--reasoner", "default", "--data", "/x"), "only --reasoner direct"),
        (("eval", "vignettes", "--probes", "nope"), "unknown probe"),
        (("eval", "vignettes", "--limit", "0"), "--limit must be at least 1"),
        (("eval", "vignettes", "--resume"), "--resume needs --out"),
        (("eval", "vignettes", "--dtype", "float8"), "dtype"),
        (("eval", "report", "/nonexistent"), "no manifest.json"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(args: tuple[str, ...], message: str) -> None:
    done = cogem(*args)
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines


def test_report_and_compare_from_the_cli(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    run_eval("vignettes", fake_runtime(SchemaFillingLLM(seed=1)), out=a)
    run_eval("vignettes", fake_runtime(SchemaFillingLLM(seed=2)), out=b)
    done = cogem("eval", "report", str(a), "-o", str(tmp_path / "rep"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "rep" / "report.html").is_file()
    html = (tmp_path / "rep" / "report.html").read_text()
    assert "vignettes" in html and "<script" not in html
    done = cogem("eval", "compare", str(a), str(b))
    assert done.returncode == 0, done.stderr
    assert "accuracy" in done.stdout
    done = cogem("eval", "compare", "--json", str(a), str(b))
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)
    assert payload["n_paired"] == 24 and "accuracy" in payload["metrics"]

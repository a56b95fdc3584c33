"""`cogem probe` end to end on the embedded model and real chromadb (2 shipped cases)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cogem.paths import bundled_dir
from cogem.probes import PROBES

pytestmark = pytest.mark.integration

CASES = bundled_dir("evals") / "probes" / "cases.jsonl"


def test_probe_cli_prints_a_row_per_probe(tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    out = tmp_path / "traces"
    done = subprocess.run(
        [sys.executable, "-m", "cogem", "probe", str(CASES), "--limit", "2", "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    for name in PROBES:
        assert name in done.stdout
    for column in ("flip rate", "mean TVD", "max TVD", "errors"):
        assert column in done.stdout
    # one trace per run: 2 cases x (baseline + every probe), each verifiable
    traces = sorted(out.glob("*.jsonl"))
    assert len(traces) == 2 * (1 + len(PROBES))
    audit = subprocess.run(
        [sys.executable, "-m", "cogem", "audit", "--json", str(traces[0])],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert audit.returncode == 0 and json.loads(audit.stdout)["ok"], audit.stdout

"""`cogem memory` from the command line, on the real MiniLM embedder and chromadb."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def cogem(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COGEM_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "cogem", "memory", *args],
        capture_output=True, text=True, env=env, timeout=1200, cwd=ROOT,
    )  # fmt: skip


def test_import_ten_thousand_then_search_forget_stats(tmp_path: Path) -> None:
    topics = ["promise", "honesty", "fairness", "property", "privacy", "gratitude", "harm", "care"]
    path = tmp_path / "big.csv"
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["uid", "statement"])
        for i in range(10_000):
            topic = topics[i % len(topics)]
            writer.writerow(
                [
                    f"bulk.{i}",
                    f"Case {i} about {topic}: someone weighed {topic} against convenience.",
                ]
            )
    done = cogem(
        "import",
        str(path),
        "--map",
        "id=uid,text=statement",
        "--kind",
        "precedent",
        "--json",
        home=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["imported"] == 10_000 and result["count"] >= 10_000

    found = cogem(
        "search", "a case about privacy", "-k", "5", "--kind", "precedent", "--json", home=tmp_path
    )
    assert found.returncode == 0, found.stderr
    hits = json.loads(found.stdout)
    assert len(hits) == 5 and all(h["kind"] == "precedent" for h in hits)
    assert sum("privacy" in h["text"] for h in hits) >= 3
    assert all(set(h["components"]) == {"relevance", "recency", "importance"} for h in hits)

    gone = cogem("forget", hits[0]["id"], "--json", home=tmp_path)
    assert json.loads(gone.stdout) == {"removed": 1}
    stats = json.loads(cogem("stats", "--json", home=tmp_path).stdout)
    assert stats["count"] == result["count"] - 1 and stats["embedder_id"].endswith(
        "all-MiniLM-L6-v2"
    )


def test_shipped_example_import_and_bad_rows(tmp_path: Path) -> None:
    done = cogem(
        "import",
        "evals/memory/precedents.csv",
        "--map",
        "id=case_id,text=statement,importance=weight",
        "--kind",
        "precedent",
        home=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"text": "ok", "importance": "nan"}\n')
    failed = cogem("import", str(bad), home=tmp_path)
    assert failed.returncode == 2
    assert "line 2" in failed.stderr and "importance" in failed.stderr

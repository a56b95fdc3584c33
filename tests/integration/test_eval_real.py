"""Evals on the real embedded model: the CLI end to end, crash + resume, exact batched scores."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cogem.evals.log import read_manifest, read_samples
from tests.ethics_data import ETHICS

pytestmark = pytest.mark.integration

needs_ethics = pytest.mark.skipif(not ETHICS.is_dir(), reason="ETHICS data not present")
COGEM = [sys.executable, "-m", "cogem"]


def _env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}


def cogem(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COGEM, *args], capture_output=True, text=True, env=_env(), timeout=timeout
    )


def _sigkill_once_written(args: list[str], samples: Path, *, lines: int) -> set[int]:
    """Start ``cogem ARGS``, SIGKILL it once ``samples`` holds ``lines`` lines; the pids of its
    child processes just before the kill."""
    proc = subprocess.Popen(
        [*COGEM, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env()
    )
    deadline = time.monotonic() + 600
    try:
        while time.monotonic() < deadline:
            if samples.exists() and samples.read_bytes().count(b"\n") >= lines:
                break
            assert proc.poll() is None, "the eval ended before it could be killed"
            time.sleep(0.05)
        children = _children(proc.pid)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    return children


def _children(pid: int) -> set[int]:
    """Processes whose parent is ``pid`` (read from /proc, so no extra dependency)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended while we looked
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def test_builtin_suite_runs_offline_then_report_and_compare(tmp_path: Path) -> None:
    a, b = tmp_path / "fp32", tmp_path / "bf16"
    done = cogem("eval", "vignettes", "--out", str(a))
    assert done.returncode == 0, done.stderr
    assert "accuracy" in done.stdout and str(a) in done.stdout
    samples = read_samples(a)
    assert len(samples) == 24 and not any(s.error for s in samples)
    manifest = read_manifest(a)
    assert manifest.model["source"] == "embedded-gguf" and len(manifest.model["weights_sha256"]) == 64
    assert manifest.cogem_commit is None or len(manifest.cogem_commit) == 40
    done = cogem("eval", "vignettes", "--out", str(b), "--dtype", "bfloat16", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.split("\neval: ")[0])["n_items"] == 24
    assert read_manifest(b).model["dtype"] == "bfloat16"
    # bf16 moves scores a little, never the option set or the items.
    fp32 = {s.item_id: s.logprobs for s in samples}
    for s in read_samples(b):
        assert s.logprobs is not None and fp32[s.item_id] is not None
        odds = s.logprobs[1] - s.logprobs[0]
        ref = fp32[s.item_id][1] - fp32[s.item_id][0]  # type: ignore[index]
        assert abs(odds - ref) < 0.5
    done = cogem("eval", "report", str(a))
    assert done.returncode == 0, done.stderr
    assert (a / "report.html").is_file() and (a / "report.md").is_file()
    done = cogem("eval", "compare", str(a), str(b))
    assert done.returncode == 0, done.stderr
    assert "accuracy" in done.stdout


@needs_ethics
def test_sigkill_mid_eval_then_resume_finishes_every_item_exactly_once(tmp_path: Path) -> None:
    out = tmp_path / "cm"
    args = ["eval", "ethics_cm", "--data", str(ETHICS), "--limit", "640", "--out", str(out)]
    samples = out / "samples.jsonl"
    _sigkill_once_written(args, samples, lines=64)
    before = samples.read_bytes()
    done_before = before.count(b"\n")
    assert 64 <= done_before < 640, done_before
    assert not (out / "summary.json").exists()

    done = cogem(*args, "--resume")
    assert done.returncode == 0, done.stderr
    assert f"resumed: {done_before} items were already done, {640 - done_before} ran now" in done.stderr
    after = samples.read_bytes()
    assert after.startswith(before[: before.rfind(b"\n") + 1])  # finished lines untouched
    ids = [json.loads(line)["item_id"] for line in after.splitlines()]
    assert len(ids) == len(set(ids)) == 640
    assert sorted(ids) == sorted(read_manifest(out).item_ids)
    assert json.loads((out / "summary.json").read_text())["n_items"] == 640


@needs_ethics
def test_batched_scores_equal_single_scores_including_multi_token_options() -> None:
    from cogem.evals.suite import load_suite
    from cogem.llm.batch_scoring import BatchPlan
    from cogem.llm.transformers_backend import TransformersLLM

    llm = TransformersLLM.load(None)
    assert llm.scoring_forward == "cogem-llama"  # the batches below run cogem's Llama forward
    suite = load_suite("ethics_justice")
    items = suite.load_items(ETHICS)[0][:24]
    # Single-token choices share one row; multi-token ones take one row each.
    multi = [" not reasonable at all", " quite reasonable"]
    requests = [(suite.prompt(item), suite.config.prompt.choices if n % 2 else multi)
                for n, item in enumerate(items)]  # fmt: skip
    # A small budget forces several batches with padding.
    batched = llm.score_batch([*requests, ("x", ["", " y"])], plan=BatchPlan(max_tokens=300))
    assert isinstance(batched[-1], Exception)  # one bad request is its own error
    encoded = llm.encode_request(*requests[0])
    assert max(len(c) for c in encoded.continuations) > 1  # the multi-token path is exercised
    for (prompt, opts), got in zip(requests, batched, strict=False):
        single = llm.score_options(prompt, opts)
        assert not isinstance(got, Exception)
        for x, y in zip(single.logprobs, got.logprobs, strict=True):
            assert abs(x - y) < 1e-4


def test_default_reasoner_eval_links_a_verified_trace_per_sample(tmp_path: Path) -> None:
    out = tmp_path / "d"
    done = cogem("eval", "vignettes", "--reasoner", "default", "--limit", "2", "--out", str(out))
    assert done.returncode == 0, done.stderr
    for sample in read_samples(out):
        assert sample.error is None and sample.trace is not None
        audit = cogem("audit", str(out / sample.trace))
        assert audit.returncode == 0, audit.stdout
        assert sample.trace_head is not None and sample.trace_head[:8] in audit.stdout


def test_readme_python_eval_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.readme_blocks import blocks

    (example,) = [b for b in blocks("python") if "run_eval(" in b]
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    exec(compile(example, "README.md", "exec"), namespace)
    result = namespace["result"]
    assert len(read_samples(result.out_dir)) == 6  # type: ignore[attr-defined]


@needs_ethics
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_workers_die_with_a_killed_eval_and_resume_scores_like_one_process(tmp_path: Path) -> None:
    from cogem.evals.suite import load_suite
    from cogem.llm.transformers_backend import TransformersLLM

    out = tmp_path / "cm"
    args = ["eval", "ethics_cm", "--data", str(ETHICS), "--limit", "320", "--out", str(out),
            "--workers", "2", "--batch-tokens", "1024"]  # fmt: skip
    samples = out / "samples.jsonl"
    workers = _sigkill_once_written(args, samples, lines=64)
    assert len(workers) >= 2  # two scoring workers (and multiprocessing's resource tracker)
    # Orphaned workers notice their parent is gone and exit instead of holding a model copy.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in workers):
        time.sleep(0.2)
    assert not [p for p in workers if Path(f"/proc/{p}").exists()]
    done_before = samples.read_bytes().count(b"\n")
    assert 64 <= done_before < 320, done_before

    done = cogem(*args, "--resume")
    assert done.returncode == 0, done.stderr
    records = read_samples(out)
    assert len(records) == len({r.item_id for r in records}) == 320
    assert read_manifest(out).decoding["workers"] == 2
    assert read_manifest(out).decoding["forward"] == "cogem-llama"
    # The workers' scores are the in-process model's (batch shapes differ: float rounding only).
    llm = TransformersLLM.load(None)
    choices = list(load_suite("ethics_cm").config.prompt.choices)
    picked = records[::20]
    assert all(r.prompt is not None and r.logprobs is not None for r in picked)
    mine = llm.score_batch([(r.prompt, choices) for r in picked])  # type: ignore[misc]
    for record, scores in zip(picked, mine, strict=True):
        assert not isinstance(scores, Exception)
        for x, y in zip(scores.logprobs, record.logprobs, strict=True):  # type: ignore[arg-type]
            assert abs(x - y) < 1e-4

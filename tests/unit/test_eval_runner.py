"""The eval runner on fakes: every item once, resume, errors apart, traces per sample."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from cogem.errors import ConfigError, UsageError
from cogem.evals.log import EvalLog, read_manifest, read_samples
from cogem.evals.runner import run_eval
from cogem.testing import SchemaFillingLLM, fake_runtime
from cogem.trace import verify_trace


class CountingLLM(SchemaFillingLLM):
    """Records which prompts were scored, so a test can tell what ran."""

    def __init__(self) -> None:
        super().__init__()
        self.scored: list[str] = []

    def score_options(self, prompt, options):  # type: ignore[no-untyped-def]
        self.scored.append(str(prompt))
        return super().score_options(prompt, options)


def test_direct_eval_writes_manifest_samples_summary(tmp_path: Path) -> None:
    llm = CountingLLM()
    result = run_eval("vignettes", fake_runtime(llm), out=tmp_path / "e")
    samples = read_samples(tmp_path / "e")
    manifest = read_manifest(tmp_path / "e")
    assert result.total == 24 == len(samples) == len(llm.scored)
    assert [s.index for s in samples] == list(range(24))
    assert [s.item_id for s in samples] == manifest.item_ids
    for s in samples:
        assert s.probs is not None and math.isclose(sum(s.probs), 1.0, abs_tol=1e-12)
        assert s.prediction == max(range(2), key=lambda i: s.probs[i])  # type: ignore[index]
        assert s.correct == (s.prediction == s.target)
        assert s.prompt is not None and s.prompt.endswith("Answer:")
    assert manifest.datasets[0].rows == 24 and len(manifest.item_ids_sha256) == 64
    assert manifest.model["source"] == "fake" and manifest.decoding["mode"] == "option-scoring"
    summary = json.loads((tmp_path / "e" / "summary.json").read_text())
    accuracy = summary["metrics"]["accuracy"]["value"]
    assert accuracy == sum(bool(s.correct) for s in samples) / 24


def test_resume_runs_only_the_unfinished_items(tmp_path: Path) -> None:
    out = tmp_path / "e"
    run_eval("vignettes", fake_runtime(CountingLLM()), out=out, limit=24)
    lines = (out / "samples.jsonl").read_bytes().splitlines(keepends=True)
    # Simulate a crash: 10 whole lines survive plus a torn eleventh.
    (out / "samples.jsonl").write_bytes(b"".join(lines[:10]) + lines[10][:17])
    (out / "summary.json").unlink()
    llm = CountingLLM()
    result = run_eval("vignettes", fake_runtime(llm), out=out, limit=24, resume=True)
    assert (result.resumed_from, result.answered_now) == (10, 14)
    assert len(llm.scored) == 14
    final = (out / "samples.jsonl").read_bytes().splitlines(keepends=True)
    assert final[:10] == lines[:10]  # finished items were not touched
    ids = [json.loads(line)["item_id"] for line in final]
    assert sorted(ids) == sorted(read_manifest(out).item_ids) and len(set(ids)) == 24


def test_resume_refuses_a_different_eval(tmp_path: Path) -> None:
    out = tmp_path / "e"
    run_eval("vignettes", fake_runtime(), out=out, limit=5)
    with pytest.raises(ConfigError, match="item_ids_sha256"):
        run_eval("vignettes", fake_runtime(), out=out, limit=6, resume=True)
    with pytest.raises(ConfigError, match=r"model\.model_id"):
        run_eval("vignettes", fake_runtime(SchemaFillingLLM(seed=3)), out=out, limit=5, resume=True)
    with pytest.raises(UsageError, match="already holds an eval"):
        run_eval("vignettes", fake_runtime(), out=out, limit=5)
    with pytest.raises(UsageError, match="nothing to resume"):
        run_eval("vignettes", fake_runtime(), out=tmp_path / "empty", resume=True)


def test_a_corrupt_middle_line_is_an_error_not_a_skip(tmp_path: Path) -> None:
    out = tmp_path / "e"
    run_eval("vignettes", fake_runtime(), out=out, limit=4)
    lines = (out / "samples.jsonl").read_text().splitlines()
    lines[1] = lines[1].replace('"target"', '"tarjet"')
    (out / "samples.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(UsageError, match="line 2 is not a valid sample record"):
        run_eval("vignettes", fake_runtime(), out=out, limit=4, resume=True)


def test_one_writer_at_a_time(tmp_path: Path) -> None:
    out = tmp_path / "e"
    run_eval("vignettes", fake_runtime(), out=out, limit=2)
    manifest = read_manifest(out)
    with EvalLog.open(out, manifest, resume=True) as log:
        assert len(log.done) == 2
        with pytest.raises(UsageError, match="another eval is writing"):
            EvalLog.open(out, manifest, resume=True)
        with pytest.raises(UsageError, match="already has a sample"):
            log.append([next(iter(log.done.values()))])


def test_reasoner_mode_traces_every_sample_and_counts_errors_apart(tmp_path: Path) -> None:
    out = tmp_path / "e"
    # Scenarios longer than 60 characters are refused by the runtime: those items are errors.
    runtime = fake_runtime(max_scenario_chars=60)
    result = run_eval("vignettes", runtime, reasoner="default", out=out, limit=6)
    samples = read_samples(out)
    errors = [s for s in samples if s.error]
    scored = [s for s in samples if not s.error]
    assert errors and scored and len(samples) == 6
    for s in errors:
        assert s.error.startswith("InputError") and s.probs is None and s.correct is None  # type: ignore[union-attr]
    for s in scored:
        assert s.trace is not None and s.trace_head is not None
        report = verify_trace(out / s.trace)
        assert report.ok
        assert math.isclose(sum(s.probs or []), 1.0, abs_tol=1e-12)
    assert result.summary.n_errors == len(errors)
    assert read_manifest(out).reasoner_detail["verdicts"] == {"acceptable": 0, "wrong": 1}


def test_user_reasoner_from_a_file(tmp_path: Path) -> None:
    code = tmp_path / "mine.py"
    code.write_text(
        "from cogem import Reasoner\n"
        "def build(specs):\n"
        "    return Reasoner.sequential([specs['perceive'], specs['recall'], specs['judge']])\n"
    )
    out = tmp_path / "e"
    run_eval("vignettes", fake_runtime(), reasoner=f"{code}:build", out=out, limit=2)
    detail = read_manifest(out).reasoner_detail
    assert set(detail["modules"]) == {"perceive", "recall", "judge"}
    with pytest.raises(UsageError, match="has no attribute 'nope'"):
        run_eval("vignettes", fake_runtime(), reasoner=f"{code}:nope", out=tmp_path / "f")
    with pytest.raises(UsageError, match="use direct, default"):
        run_eval("vignettes", fake_runtime(), reasoner="bogus", out=tmp_path / "g")


def test_a_suite_without_mapping_only_runs_direct(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="only --reasoner direct"):
        run_eval("ethics_virtue", fake_runtime(), reasoner="default", data=tmp_path)


def test_probes_after_an_eval_report_flip_rates(tmp_path: Path) -> None:
    out = tmp_path / "p"
    run_eval("vignettes", fake_runtime(), out=out, limit=6,
             probes=["sycophancy_fine", "option_order"], probe_limit=4)  # fmt: skip
    summaries = {s["probe"]: s for s in json.loads((out / "probes.json").read_text())}
    syc = summaries["sycophancy_fine"]
    assert syc["n"] == 4 and 0 <= syc["flips"] <= 4 and syc["errors"] == 0
    assert syc["mean_tvd"] is not None and 0.0 <= syc["mean_tvd"] <= 1.0
    assert summaries["option_order"]["n"] == 0  # direct has no modules to reorder
    assert read_manifest(out).probes == ["sycophancy_fine", "option_order"]

    out = tmp_path / "r"
    run_eval("vignettes", fake_runtime(), reasoner="default", out=out, limit=3,
             probes=["option_order", "paraphrase"], probe_limit=3)  # fmt: skip
    summaries = {s["probe"]: s for s in json.loads((out / "probes.json").read_text())}
    assert summaries["option_order"]["n"] == 3 and summaries["paraphrase"]["n"] == 3
    assert len(list((out / "probes" / "option_order").glob("*.jsonl"))) == 3
    with pytest.raises(ConfigError, match="unknown probe"):
        run_eval("vignettes", fake_runtime(), out=tmp_path / "x", limit=1, probes=["nope"])
    assert not (tmp_path / "x").exists()  # refused before anything was written


@pytest.mark.parametrize(
    ("workers", "reasoner", "message"),
    [
        (0, "direct", "--workers must be at least 1"),
        (2, "default", "--workers applies to --reasoner direct only"),
        # A fake model cannot be loaded again in another process.
        (2, "direct", "a served or fake model cannot be copied"),
    ],
)
def test_workers_are_checked_before_anything_runs(
    tmp_path: Path, workers: int, reasoner: str, message: str
) -> None:
    llm = CountingLLM()
    with pytest.raises(UsageError, match=message):
        run_eval("vignettes", fake_runtime(llm), out=tmp_path / "e", reasoner=reasoner,
                 workers=workers)  # fmt: skip
    assert llm.scored == [] and not (tmp_path / "e").exists()

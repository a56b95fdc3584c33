"""Hand-made eval samples and eval directories for the metrics, report and compare tests."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cogem.evals.metrics import summarize
from cogem.evals.records import DatasetFile, EvalManifest, SampleRecord

BINARY = ("acceptable", "wrong")


def sample(
    item_id: str,
    target: int,
    prediction: int | None = None,
    *,
    probs: Sequence[float] | None = None,
    logprobs: Sequence[float] | None = None,
    error: str | None = None,
    group: str | None = None,
    subset: str = "",
    split: str = "",
    options: Sequence[str] = BINARY,
    index: int = 0,
) -> SampleRecord:
    """A sample; the prediction defaults to the most probable option, as the runner decides it."""
    if logprobs is not None and probs is None:
        top = max(logprobs)
        weights = [math.exp(x - top) for x in logprobs]
        probs = [w / sum(weights) for w in weights]
    if error is None and prediction is None and probs is not None:
        prediction = max(range(len(probs)), key=lambda k: probs[k])
    return SampleRecord(
        index=index,
        item_id=item_id,
        subset=subset,
        split=split,
        group=group,
        input={"scenario": f"scenario {item_id}"},
        options=list(options),
        target=target,
        logprobs=None if error else (list(logprobs) if logprobs is not None else None),
        probs=None if error else (list(probs) if probs is not None else None),
        prediction=None if error else prediction,
        correct=None if error else prediction == target,
        error=error,
    )


def manifest(
    samples: Sequence[SampleRecord],
    *,
    suite: str = "toy",
    reasoner: str = "direct",
    options: Sequence[str] = BINARY,
    positive: int = 1,
    metrics: Sequence[str] = ("accuracy", "balanced_accuracy", "ece", "brier", "auroc"),
    item_ids: Sequence[str] | None = None,
    model: dict[str, Any] | None = None,
    datasets: Sequence[DatasetFile] | None = None,
) -> EvalManifest:
    ids = list(item_ids) if item_ids is not None else [s.item_id for s in samples]
    return EvalManifest(
        suite=suite,
        suite_config={"name": suite},
        suite_sha256="0" * 64,
        reasoner=reasoner,
        options=list(options),
        positive=positive,
        metrics=list(metrics),
        model=model or {"model_id": "fake/model", "source": "fake", "weights_sha256": "ab" * 32},
        cogem_commit="deadbeef",
        cogem_dirty=False,
        packages={"cogem": "0.1.0"},
        python="3.11",
        datasets=list(datasets)
        if datasets is not None
        else [DatasetFile(path="data/toy.csv", sha256="cd" * 32, rows=len(ids))],
        item_ids=ids,
        item_ids_sha256="1" * 64,
        seed=0,
        decoding={"temperature": 0},
        created_at="2026-11-26T14:00:00Z",
    )


def write_eval_dir(
    path: Path,
    samples: Sequence[SampleRecord],
    man: EvalManifest,
    *,
    with_summary: bool = True,
    probes: list[dict[str, Any]] | None = None,
    n_bootstrap: int = 100,
) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "manifest.json").write_text(man.model_dump_json(indent=2), encoding="utf-8")
    (path / "samples.jsonl").write_text(
        "".join(s.model_dump_json() + "\n" for s in samples), encoding="utf-8"
    )
    if with_summary:
        summary = summarize(
            samples,
            suite=man.suite,
            reasoner=man.reasoner,
            options=man.options,
            positive=man.positive,
            metrics=man.metrics,
            n_bootstrap=n_bootstrap,
        )
        (path / "summary.json").write_text(summary.model_dump_json(indent=2), encoding="utf-8")
    if probes is not None:
        (path / "probes.json").write_text(json.dumps(probes), encoding="utf-8")
    return path

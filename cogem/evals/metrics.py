"""Eval metrics with bootstrap confidence intervals, and the summary of a run.

Errors are counted apart: every metric is over scored (non-error) samples, and a group metric
leaves out a group that holds an errored sample (``MetricValue.excluded`` counts them), because a
crashed sample is an error, never a wrong answer. A metric that does not apply (no groups, one
class for AUROC) has value None with n=0 or no CI, never an exception.

Confidence intervals are 95% percentile bootstraps over the metric's own units (items, groups or
pairs) from a fixed seed, so the same samples always give the same numbers, in any order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from cogem.errors import ConfigError, InputError
from cogem.evals import _units as u
from cogem.evals._bootstrap import bootstrap_ci, percentile_ci, resamples
from cogem.evals.records import SampleRecord

__all__ = [
    "METRICS",
    "EvalSummary",
    "ItemCounts",
    "Metric",
    "MetricValue",
    "ReliabilityBin",
    "accuracy",
    "auroc",
    "balanced_accuracy",
    "bootstrap_ci",
    "brier",
    "check_records",
    "confusion_matrix",
    "ece",
    "evaluate",
    "group_exact_match",
    "pairwise_accuracy",
    "percentile_ci",
    "point",
    "reliability_bins",
    "resamples",
    "subset_key",
    "summarize",
]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MetricValue(_Record):
    value: float | None = Field(description="None when undefined (no units, one class, …)")
    ci_low: float | None = None
    ci_high: float | None = None
    n: int = Field(ge=0, description="units the value is over: items, groups or pairs")
    excluded: int = Field(default=0, ge=0, description="units left out; see notes")
    notes: list[str] = Field(default_factory=list)


class ReliabilityBin(_Record):
    low: float
    high: float
    count: int
    mean_confidence: float | None
    accuracy: float | None


class ItemCounts(_Record):
    n_items: int
    n_scored: int
    n_errors: int


class EvalSummary(_Record):
    suite: str
    reasoner: str
    options: list[str]
    positive: int
    n_items: int
    n_scored: int
    n_errors: int
    error_rate: float | None
    metrics: dict[str, MetricValue]
    by_subset: dict[str, dict[str, MetricValue]] = Field(
        description="keyed 'subset/split' (just one of them when the other is empty)"
    )
    subset_counts: dict[str, ItemCounts]
    confusion: list[list[int]] = Field(description="rows: target option, columns: prediction")
    reliability: list[ReliabilityBin]
    n_bootstrap: int
    seed: int


@dataclass(frozen=True)
class Metric:
    name: str
    description: str
    unit: Literal["items", "groups", "pairs"]
    higher_is_better: bool
    units: Callable[[Sequence[SampleRecord], int], u.Units]


METRICS: dict[str, Metric] = {
    m.name: m
    for m in [
        Metric("accuracy", "share of items right", "items", True, lambda r, _: u.item_units(r)),
        Metric(
            "balanced_accuracy",
            "mean per-class recall",
            "items",
            True,
            lambda r, _: u.balanced_accuracy_units(r),
        ),
        Metric(
            "group_exact_match",
            "share of groups with every item right (ETHICS)",
            "groups",
            True,
            lambda r, _: u.group_em_units(r),
        ),
        Metric(
            "pairwise_accuracy",
            "share of pairs where the preferred item scores strictly higher (ETHICS util)",
            "pairs",
            True,
            u.pairwise_units,
        ),
        Metric(
            "ece",
            "expected calibration error, 10 bins",
            "items",
            False,
            lambda r, _: u.ece_units(r),
        ),
        Metric(
            "brier",
            "multi-class Brier score, Σ_k (p_k - onehot_k)², in [0, 2]",
            "items",
            False,
            lambda r, _: u.brier_units(r),
        ),
        Metric("auroc", "AUROC of positive-class log-odds", "items", True, u.auroc_units),
    ]
}


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def point(units: u.Units) -> float | None:
    if not units.keys:
        return None
    return _finite(units.stat(np.ones((1, len(units.keys))))[0])


def evaluate(
    metric: str | Metric,
    records: Sequence[SampleRecord],
    *,
    positive: int = 0,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> MetricValue:
    """One metric (a name from :data:`METRICS`) over ``records``, with its bootstrap CI."""
    spec = _metric(metric) if isinstance(metric, str) else metric
    check_records(records, positive=positive)
    units = spec.units(records, positive)
    value = point(units)
    low, high = (
        bootstrap_ci(units.stat, len(units.keys), n_bootstrap=n_bootstrap, seed=seed)
        if value is not None
        else (None, None)
    )
    return MetricValue(
        value=value,
        ci_low=low,
        ci_high=high,
        n=len(units.keys),
        excluded=units.excluded,
        notes=units.notes,
    )


def accuracy(
    records: Sequence[SampleRecord], *, n_bootstrap: int = 1000, seed: int = 0
) -> MetricValue:
    return evaluate("accuracy", records, n_bootstrap=n_bootstrap, seed=seed)


def balanced_accuracy(
    records: Sequence[SampleRecord], *, n_bootstrap: int = 1000, seed: int = 0
) -> MetricValue:
    return evaluate("balanced_accuracy", records, n_bootstrap=n_bootstrap, seed=seed)


def group_exact_match(
    records: Sequence[SampleRecord], *, n_bootstrap: int = 1000, seed: int = 0
) -> MetricValue:
    return evaluate("group_exact_match", records, n_bootstrap=n_bootstrap, seed=seed)


def pairwise_accuracy(
    records: Sequence[SampleRecord], *, positive: int, n_bootstrap: int = 1000, seed: int = 0
) -> MetricValue:
    return evaluate(
        "pairwise_accuracy", records, positive=positive, n_bootstrap=n_bootstrap, seed=seed
    )


def ece(records: Sequence[SampleRecord], *, n_bootstrap: int = 1000, seed: int = 0) -> MetricValue:
    return evaluate("ece", records, n_bootstrap=n_bootstrap, seed=seed)


def brier(
    records: Sequence[SampleRecord], *, n_bootstrap: int = 1000, seed: int = 0
) -> MetricValue:
    return evaluate("brier", records, n_bootstrap=n_bootstrap, seed=seed)


def auroc(
    records: Sequence[SampleRecord], *, positive: int, n_bootstrap: int = 1000, seed: int = 0
) -> MetricValue:
    return evaluate("auroc", records, positive=positive, n_bootstrap=n_bootstrap, seed=seed)


def _metric(name: str) -> Metric:
    if name not in METRICS:
        raise ConfigError(
            f"unknown metric {name!r}; valid metrics: {', '.join(METRICS)}", field="metrics"
        )
    return METRICS[name]


def check_records(
    records: Sequence[SampleRecord], *, positive: int, n_options: int | None = None
) -> None:
    """Raise :class:`InputError` naming the sample when the records cannot be scored as logged:
    duplicate items, indices outside the options, or a ``correct`` that contradicts
    ``prediction == target`` (metrics trust the prediction, so a mismatch is a runner bug)."""
    seen: set[str] = set()
    for r in records:
        where = f"sample {r.item_id!r}"
        k = len(r.options)
        if r.item_id in seen:
            raise InputError(f"{where} appears twice; each item is scored once")
        seen.add(r.item_id)
        if n_options is not None and k != n_options:
            raise InputError(f"{where} has {k} options, the eval has {n_options}")
        if not (r.target < k and positive < k):
            raise InputError(
                f"{where}: target {r.target} or positive {positive} not among {k} options"
            )
        if r.error is not None:
            continue
        if r.prediction is None or not 0 <= r.prediction < k:
            raise InputError(
                f"{where} has no error but prediction {r.prediction!r} is not an option index"
            )
        if r.correct is not None and r.correct != (r.prediction == r.target):
            raise InputError(
                f"{where}: correct={r.correct} contradicts prediction {r.prediction}, target {r.target}"
            )
        for name, values in (("probs", r.probs), ("logprobs", r.logprobs)):
            if values is not None and len(values) != k:
                raise InputError(f"{where}: {len(values)} {name} for {k} options")


def subset_key(subset: str, split: str) -> str:
    return "/".join(p for p in (subset, split) if p) or "(none)"


def confusion_matrix(records: Sequence[SampleRecord], n_options: int) -> list[list[int]]:
    """Counts of scored samples by (target, prediction) over option indices."""
    from sklearn.metrics import confusion_matrix as sk_confusion  # slow import; only here

    scored = [r for r in records if r.error is None and r.prediction is not None]
    if not scored:
        return [[0] * n_options for _ in range(n_options)]
    matrix = sk_confusion(
        [r.target for r in scored], [r.prediction for r in scored], labels=list(range(n_options))
    )
    return [[int(c) for c in row] for row in matrix]


def reliability_bins(records: Sequence[SampleRecord]) -> list[ReliabilityBin]:
    """The ECE's bins: count, mean confidence (max probability) and accuracy of each."""
    usable = [r for r in records if r.error is None and r.probs is not None]
    conf = np.array([max(r.probs or [0.0]) for r in usable], dtype=np.float64)
    right = np.array([r.prediction == r.target for r in usable], dtype=np.float64)
    bins = u.bin_of(conf)
    out = []
    for k in range(u.N_BINS):
        mask = bins == k
        count = int(mask.sum())
        out.append(
            ReliabilityBin(
                low=k / u.N_BINS,
                high=(k + 1) / u.N_BINS,
                count=count,
                mean_confidence=float(conf[mask].mean()) if count else None,
                accuracy=float(right[mask].mean()) if count else None,
            )
        )
    return out


def summarize(
    records: Sequence[SampleRecord],
    *,
    suite: str,
    reasoner: str,
    options: Sequence[str],
    positive: int,
    metrics: Sequence[str],
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> EvalSummary:
    """Every requested metric overall and per subset/split, plus the report's tables."""
    specs = [_metric(m) for m in metrics]  # unknown names fail before any work
    check_records(records, positive=positive, n_options=len(options))
    by_key: dict[str, list[SampleRecord]] = {}
    for r in records:
        by_key.setdefault(subset_key(r.subset, r.split), []).append(r)
    # A run without subsets or splits would only repeat the overall table.
    parts = {} if set(by_key) == {"(none)"} else dict(sorted(by_key.items()))

    def table(rs: Sequence[SampleRecord]) -> dict[str, MetricValue]:
        return {
            s.name: evaluate(s, rs, positive=positive, n_bootstrap=n_bootstrap, seed=seed)
            for s in specs
        }

    n_errors = sum(r.error is not None for r in records)
    return EvalSummary(
        suite=suite,
        reasoner=reasoner,
        options=list(options),
        positive=positive,
        n_items=len(records),
        n_scored=len(records) - n_errors,
        n_errors=n_errors,
        error_rate=n_errors / len(records) if records else None,
        metrics=table(records),
        by_subset={k: table(rs) for k, rs in parts.items()},
        subset_counts={k: _counts(rs) for k, rs in parts.items()},
        confusion=confusion_matrix(records, len(options)),
        reliability=reliability_bins(records),
        n_bootstrap=n_bootstrap,
        seed=seed,
    )


def _counts(records: Sequence[SampleRecord]) -> ItemCounts:
    errors = sum(r.error is not None for r in records)
    return ItemCounts(n_items=len(records), n_scored=len(records) - errors, n_errors=errors)

"""Compare two eval runs item by item: A, B, B - A with a paired bootstrap CI, and McNemar.

Runs are paired by ``item_id``. A metric is compared over the units valid in both runs (items
scored in both; groups and pairs with no errored sample in either), and each bootstrap resample
draws those shared units once and applies the same draw to both runs, so the interval is for the
difference on the same items, not two independent intervals. Problems that make a comparison
misleading (different suites or datasets, or nothing differing between the runs) are returned
as ``warnings`` for the caller to show; nothing here prints.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

from cogem.errors import ConfigError
from cogem.evals import _units as u
from cogem.evals._bootstrap import percentile_ci, resamples
from cogem.evals._read import read_manifest, read_samples
from cogem.evals.metrics import METRICS, Metric, check_records, subset_key
from cogem.evals.records import EvalManifest, SampleRecord

__all__ = ["Comparison", "McNemar", "MetricDiff", "compare_runs"]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class McNemar(_Record):
    a_right_b_wrong: int
    a_wrong_b_right: int
    p_value: float = Field(description="exact two-sided binomial test on the discordant items")


class MetricDiff(_Record):
    a: float | None
    b: float | None
    diff: float | None = Field(description="B - A over the shared units")
    ci_low: float | None = None
    ci_high: float | None = None
    n: int = Field(description="units valid in both runs")
    mcnemar: McNemar | None = None


class Comparison(_Record):
    a_dir: str
    b_dir: str
    a_label: str
    b_label: str
    suite: str
    n_shared: int = Field(description="items with a sample in both runs")
    n_paired: int = Field(description="items scored (no error) in both runs")
    n_only_a: int
    n_only_b: int
    n_errors_a: int = Field(description="errored samples of A among the shared items")
    n_errors_b: int
    metrics: dict[str, MetricDiff]
    by_subset: dict[str, dict[str, MetricDiff]]
    warnings: list[str]
    n_bootstrap: int
    seed: int


def _label(m: EvalManifest) -> str:
    label = f"{m.reasoner} · {m.model.get('model_id', 'unknown model')}"
    # Tuned artifacts: the one a direct eval scored with, or each tuned module of a reasoner.
    tuned = dict(m.reasoner_detail.get("tuned") or {})
    if isinstance(m.model.get("tuned"), dict):
        tuned[m.model["tuned"].get("module", "?")] = m.model["tuned"]
    for module, ref in sorted(tuned.items()):
        label += f" · tuned {module}@{str(ref.get('sha256', ''))[:12]}"
    return label


def _stat_on(units: u.Units, positions: list[int]) -> u.Stat:
    """The units' statistic for weights given over ``positions`` only (the shared units)."""
    cols = np.asarray(positions, dtype=np.intp)

    def stat(w: u.Weights) -> NDArray[np.float64]:
        full = np.zeros((w.shape[0], len(units.keys)))
        full[:, cols] = w
        return units.stat(full)

    return stat


def _mcnemar(a: Sequence[SampleRecord], b: Sequence[SampleRecord]) -> McNemar:
    from scipy.stats import binomtest  # slow import; only comparisons need it

    right_b = {r.item_id: r.prediction == r.target for r in b if r.error is None}
    pairs = [
        (r.prediction == r.target, right_b[r.item_id])
        for r in a
        if r.error is None and r.item_id in right_b
    ]
    a_only = sum(ra and not rb for ra, rb in pairs)
    b_only = sum(rb and not ra for ra, rb in pairs)
    p = 1.0 if a_only + b_only == 0 else float(binomtest(b_only, a_only + b_only, 0.5).pvalue)
    return McNemar(a_right_b_wrong=a_only, a_wrong_b_right=b_only, p_value=p)


def _diff(
    spec: Metric,
    a: Sequence[SampleRecord],
    b: Sequence[SampleRecord],
    positives: tuple[int, int],
    n_bootstrap: int,
    seed: int,
) -> MetricDiff:
    ua, ub = spec.units(a, positives[0]), spec.units(b, positives[1])
    index_a = {k: i for i, k in enumerate(ua.keys)}
    index_b = {k: i for i, k in enumerate(ub.keys)}
    common = sorted(index_a.keys() & index_b.keys())
    stat_a = _stat_on(ua, [index_a[k] for k in common])
    stat_b = _stat_on(ub, [index_b[k] for k in common])
    mcnemar = _mcnemar(a, b) if spec.name == "accuracy" else None
    if not common:
        return MetricDiff(a=None, b=None, diff=None, n=0, mcnemar=mcnemar)
    ones = np.ones((1, len(common)))
    va, vb = float(stat_a(ones)[0]), float(stat_b(ones)[0])
    finite = np.isfinite(va) and np.isfinite(vb)
    low = high = None
    if finite and n_bootstrap > 0:
        diffs = [stat_b(w) - stat_a(w) for w in resamples(len(common), n_bootstrap, seed)]
        low, high = percentile_ci(np.concatenate(diffs))
    return MetricDiff(
        a=va if np.isfinite(va) else None,
        b=vb if np.isfinite(vb) else None,
        diff=vb - va if finite else None,
        ci_low=low,
        ci_high=high,
        n=len(common),
        mcnemar=mcnemar,
    )


def _warnings(ma: EvalManifest, mb: EvalManifest, n_paired: int) -> list[str]:
    out = []
    if ma.suite != mb.suite:
        out.append(f"different suites: {ma.suite!r} vs {mb.suite!r}")
    if set(ma.item_ids) != set(mb.item_ids):
        out.append("the runs cover different item ids: only items in both are compared")
    if sorted(d.sha256 for d in ma.datasets) != sorted(d.sha256 for d in mb.datasets):
        out.append("dataset files differ (sha256): the same item id may not be the same item")
    if (ma.options, ma.positive) != (mb.options, mb.positive):
        out.append("the runs score different options or a different positive option")
    if (ma.model, ma.reasoner, ma.reasoner_detail) == (mb.model, mb.reasoner, mb.reasoner_detail):
        what = (
            "only decoding settings differ" if ma.decoding != mb.decoding else "nothing to compare"
        )
        out.append(f"both runs use the same model and reasoner: {what}")
    if n_paired == 0:
        out.append("no item is scored in both runs")
    return out


def compare_runs(a_dir: Path, b_dir: Path, *, n_bootstrap: int = 1000, seed: int = 0) -> Comparison:
    """Compare run B against run A (directories written by ``cogem eval``)."""
    ma, mb = read_manifest(Path(a_dir)), read_manifest(Path(b_dir))
    sa, sb = read_samples(Path(a_dir)), read_samples(Path(b_dir))
    check_records(sa, positive=ma.positive, n_options=len(ma.options))
    check_records(sb, positive=mb.positive, n_options=len(mb.options))
    names = list(dict.fromkeys([*ma.metrics, *mb.metrics]))
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise ConfigError(
            f"unknown metric {unknown[0]!r}; valid metrics: {', '.join(METRICS)}", field="metrics"
        )
    specs = [METRICS[n] for n in names]

    shared = {r.item_id for r in sa} & {r.item_id for r in sb}
    a = [r for r in sa if r.item_id in shared]
    b = [r for r in sb if r.item_id in shared]
    scored_b = {r.item_id for r in b if r.error is None}
    n_paired = sum(r.error is None and r.item_id in scored_b for r in a)
    positives = (ma.positive, mb.positive)

    def table(ra: Sequence[SampleRecord], rb: Sequence[SampleRecord]) -> dict[str, MetricDiff]:
        return {s.name: _diff(s, ra, rb, positives, n_bootstrap, seed) for s in specs}

    # Subsets are taken from A's samples; B's samples of the same items follow them.
    key_of = {r.item_id: subset_key(r.subset, r.split) for r in a}
    # As in summarize: no per-subset tables when no sample names a subset or split.
    keys = sorted(set(key_of.values())) if set(key_of.values()) != {"(none)"} else []
    by_subset = {
        k: table([r for r in a if key_of[r.item_id] == k], [r for r in b if key_of[r.item_id] == k])
        for k in keys
    }
    return Comparison(
        a_dir=str(a_dir),
        b_dir=str(b_dir),
        a_label=_label(ma),
        b_label=_label(mb),
        suite=ma.suite if ma.suite == mb.suite else f"{ma.suite} / {mb.suite}",
        n_shared=len(shared),
        n_paired=n_paired,
        n_only_a=len({r.item_id for r in sa} - shared),
        n_only_b=len({r.item_id for r in sb} - shared),
        n_errors_a=sum(r.error is not None for r in a),
        n_errors_b=sum(r.error is not None for r in b),
        metrics=table(a, b),
        by_subset=by_subset,
        warnings=_warnings(ma, mb, n_paired),
        n_bootstrap=n_bootstrap,
        seed=seed,
    )

"""Percentile bootstrap over a metric's units, as draw counts, from a fixed seed.

A resample is a row of how many times each unit was drawn (``n`` draws with replacement), so a
metric's statistic over all resamples is one matrix product (see :mod:`cogem.evals._units`) and a
paired comparison applies the very same rows to two runs.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from numpy.typing import NDArray

from cogem.evals._units import Stat, Weights

__all__ = ["bootstrap_ci", "percentile_ci", "resamples"]

# Rows of the resample matrix drawn at once: bounds memory (tens of MB) on suites with many items.
_CELLS_PER_CHUNK = 2_000_000


def resamples(n: int, n_bootstrap: int, seed: int) -> Iterator[Weights]:
    """Bootstrap resamples of ``n`` units as draw counts: each row says how many times each unit
    was drawn in ``n`` draws with replacement; ``n_bootstrap`` rows in all, in chunks. Same
    arguments, same counts."""
    rng = np.random.default_rng(seed)
    rows = max(1, _CELLS_PER_CHUNK // max(n, 1))
    done = 0
    while done < n_bootstrap:
        take = min(rows, n_bootstrap - done)
        drawn = rng.integers(0, n, size=(take, n), dtype=np.intp)
        flat = (drawn + n * np.arange(take, dtype=np.intp)[:, None]).ravel()
        yield np.bincount(flat, minlength=take * n).reshape(take, n).astype(np.float64)
        done += take


def percentile_ci(values: NDArray[np.float64]) -> tuple[float | None, float | None]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return None, None
    low, high = np.percentile(finite, [2.5, 97.5])
    return float(low), float(high)


def bootstrap_ci(
    stat: Stat, n: int, *, n_bootstrap: int = 1000, seed: int = 0
) -> tuple[float | None, float | None]:
    """95% percentile CI of ``stat`` over ``n`` units. ``stat`` maps a ``(rows, n)`` matrix of draw
    counts to one value per row, NaN where undefined; undefined resamples are dropped, and the CI
    is None when every resample is undefined (or there are no units or no resamples)."""
    if n == 0 or n_bootstrap <= 0:
        return None, None
    values = np.concatenate([stat(w) for w in resamples(n, n_bootstrap, seed)])
    return percentile_ci(values)

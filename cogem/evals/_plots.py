"""The eval report's plots as hand-built SVG: geometry here, markup in ``eval_plots.svg.j2``.

Why not matplotlib: four simple charts do not justify a heavy dependency that adds seconds of
import to ``cogem eval report``, and its SVG output would have to be marked safe wholesale.
Here Python computes only numbers and picks which user strings go where; the template renders
every string with Jinja autoescaping (valid for SVG/XML too), so a ``<script>`` in an option or
probe name can only ever become text.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources

import jinja2
from markupsafe import Markup

from cogem.evals._units import log_odds
from cogem.evals.metrics import ReliabilityBin
from cogem.evals.records import SampleRecord
from cogem.probes import ProbeSummary

__all__ = ["Plot", "confusion_plot", "flips_plot", "histogram_plot", "reliability_plot", "render"]

W, H = 440, 320
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 24, 52


@dataclass
class Plot:
    kind: str
    title: str
    width: int = W
    height: int = H
    data: dict[str, object] = field(default_factory=dict)


def _x(v: float) -> float:
    return LEFT + v * (W - LEFT - RIGHT)


def _y(v: float) -> float:
    return H - BOTTOM - v * (H - TOP - BOTTOM)


def _short(text: str, n: int = 18) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def reliability_plot(bins: Sequence[ReliabilityBin]) -> Plot:
    """Accuracy per confidence bin against the diagonal of perfect calibration."""
    bars = [
        {
            "x": _x(b.low) + 1,
            "w": _x(b.high) - _x(b.low) - 2,
            "y": _y(b.accuracy),
            "h": _y(0) - _y(b.accuracy),
            "cx": _x(b.mean_confidence or 0.0),
            "cy": _y(b.mean_confidence or 0.0),
            "tip": f"confidence {b.low:.1f}-{b.high:.1f}: {b.count} samples, "
            f"accuracy {b.accuracy:.2f}, mean confidence {b.mean_confidence or 0:.2f}",
        }
        for b in bins
        if b.count and b.accuracy is not None
    ]
    ticks = [{"v": f"{t / 5:.1f}", "x": _x(t / 5), "y": _y(t / 5)} for t in range(6)]
    return Plot(
        "reliability",
        "Reliability diagram",
        data={
            "bars": bars,
            "ticks": ticks,
            "diag": (_x(0), _y(0), _x(1), _y(1)),
            "xlabel": "confidence (highest option probability)",
            "ylabel": "accuracy",
        },
    )


def confusion_plot(confusion: Sequence[Sequence[int]], options: Sequence[str]) -> Plot:
    """Counts by target (rows) and prediction (columns), shaded by share of the row."""
    k = max(len(options), 1)
    cell = min(64.0, 300.0 / k)
    x0, y0 = 130.0, 56.0
    cells = []
    for i, row in enumerate(confusion):
        total = sum(row)
        for j, count in enumerate(row):
            share = count / total if total else 0.0
            cells.append(
                {
                    "x": x0 + j * cell,
                    "y": y0 + i * cell,
                    "alpha": f"{0.08 + 0.85 * share:.3f}",
                    "dark": share > 0.55,
                    "count": count,
                    "tip": f"target {options[i]}, predicted {options[j]}: {count}",
                }
            )
    labels = [
        {"text": _short(o), "full": o, "pos": i * cell + cell / 2} for i, o in enumerate(options)
    ]
    return Plot(
        "confusion",
        "Confusion matrix",
        width=int(x0 + k * cell + 20),
        height=int(y0 + k * cell + 40),
        data={"cells": cells, "cell": cell, "x0": x0, "y0": y0, "labels": labels, "k": k},
    )


def flips_plot(probes: Sequence[ProbeSummary]) -> Plot:
    """One bar per probe: the share of cases whose answer flipped under the perturbation."""
    row = 26
    x0, bar_w = 170.0, 200.0
    rows = [
        {
            "y": 30 + i * row,
            "name": _short(p.probe, 24),
            "full": f"{p.probe}: {p.description}",
            "w": bar_w * (p.flip_rate or 0.0),
            "text": f"{p.flips}/{p.n}"
            + (f" ({p.flip_rate:.0%})" if p.flip_rate is not None else ""),
        }
        for i, p in enumerate(probes)
    ]
    return Plot(
        "flips",
        "Probe flip rates",
        width=int(x0 + bar_w + 90),
        height=40 + len(rows) * row + 10,
        data={"rows": rows, "x0": x0, "bar_w": bar_w},
    )


def histogram_plot(samples: Sequence[SampleRecord], options: Sequence[str], positive: int) -> Plot:
    """Positive-class log-odds of scored samples, one overlaid histogram per target class."""
    scored = [
        (s, r.target == positive)
        for r in samples
        if r.error is None and (s := log_odds(r, positive)) is not None
    ]
    finite = [s for s, _ in scored if math.isfinite(s)]
    lo, hi = (min(finite), max(finite)) if finite else (-1.0, 1.0)
    if hi - lo < 1e-9:
        lo, hi = lo - 1, hi + 1
    n_bins = 20
    counts = {True: [0] * n_bins, False: [0] * n_bins}
    for s, is_pos in scored:
        # Infinite log-odds (a probability of exactly 0 or 1) go to the outermost bins.
        k = (
            0
            if s == -math.inf
            else n_bins - 1
            if s == math.inf
            else int((s - lo) / (hi - lo) * n_bins)
        )
        counts[is_pos][min(max(k, 0), n_bins - 1)] += 1
    top = max([*counts[True], *counts[False], 1])
    width = (W - LEFT - RIGHT) / n_bins
    series = [
        {
            "cls": cls,
            "label": label,
            "bars": [
                {
                    "x": LEFT + k * width,
                    "w": width - 1,
                    "y": _y(c / top),
                    "h": _y(0) - _y(c / top),
                    "c": c,
                }
                for k, c in enumerate(counts[is_pos])
                if c
            ],
        }
        for is_pos, cls, label in (
            (False, "neg", f"target ≠ {_short(options[positive])}"),
            (True, "pos", f"target = {_short(options[positive])}"),
        )
    ]
    ticks = [{"v": f"{lo + (hi - lo) * t / 4:.1f}", "x": _x(t / 4)} for t in range(5)]
    zero = _x((0 - lo) / (hi - lo)) if lo < 0 < hi else None
    return Plot(
        "histogram",
        f"Log-odds of {options[positive]!r}",
        data={"series": series, "ticks": ticks, "top": top, "zero": zero, "n": len(scored)},
    )


def render(plot: Plot, *, standalone: bool = False) -> Markup:
    """The SVG element for ``plot``; with ``standalone`` it starts with an XML declaration."""
    macro = getattr(_plots_module(), plot.kind)
    svg = Markup(macro(plot, **_AXES))
    return Markup('<?xml version="1.0" encoding="UTF-8"?>\n') + svg if standalone else svg


_AXES = {"left": LEFT, "right": W - RIGHT, "top": TOP, "bottom": H - BOTTOM}


@functools.lru_cache(maxsize=1)
def _plots_module() -> object:
    source = resources.files("cogem.evals").joinpath("eval_plots.svg.j2").read_text("utf-8")
    env = jinja2.Environment(
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True
    )
    env.filters["f"] = lambda v: f"{float(v):.1f}"
    return env.from_string(source).module

"""Terminal tables for eval summaries and run comparisons (rich).

User text (suite names, subset keys, labels) goes into ``Text`` objects, never into markup
strings, so a ``[bold]`` or ``[/]`` in a name is shown as typed instead of restyling the table.
"""

from __future__ import annotations

import math

from rich.table import Table
from rich.text import Text

from cogem.evals.compare import Comparison, MetricDiff
from cogem.evals.metrics import METRICS, EvalSummary, MetricValue

__all__ = ["comparison_table", "summary_table"]


def _num(value: float | None, *, signed: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def _ci(low: float | None, high: float | None, *, signed: bool = False) -> str:
    if low is None or high is None:
        return "—"
    return f"[{_num(low, signed=signed)}, {_num(high, signed=signed)}]"


def _unit(name: str) -> str:
    return METRICS[name].unit if name in METRICS else ""


def summary_table(summary: EvalSummary) -> list[Table]:
    """One table for the whole run, then one per subset/split."""
    title = Text.assemble(
        "eval ",
        (summary.suite, "bold"),
        " · ",
        summary.reasoner,
        f" · {summary.n_items} samples, {summary.n_errors} errors",
    )
    tables = [_metric_table(title, summary.metrics)]
    for key, metrics in summary.by_subset.items():
        counts = summary.subset_counts.get(key)
        extra = f" · {counts.n_items} samples, {counts.n_errors} errors" if counts else ""
        tables.append(_metric_table(Text.assemble((key, "bold"), extra), metrics))
    return tables


def _metric_table(title: Text, metrics: dict[str, MetricValue]) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("95% CI", justify="right")
    table.add_column("n", justify="right")
    table.add_column("notes", style="dim")
    for name, v in metrics.items():
        table.add_row(
            Text(name),
            _num(v.value),
            _ci(v.ci_low, v.ci_high),
            f"{v.n} {_unit(name)}",
            Text("; ".join(v.notes)),
        )
    return table


def comparison_table(comp: Comparison) -> list[Table]:
    """B against A overall, then per subset; warnings go in the first table's caption."""
    title = Text.assemble(
        "A: ",
        (comp.a_label, "bold"),
        "  vs  B: ",
        (comp.b_label, "bold"),
        f"  · {comp.n_paired} items scored in both",
    )
    caption = Text(
        f"only in A: {comp.n_only_a} · only in B: {comp.n_only_b} · errors A: "
        f"{comp.n_errors_a}, B: {comp.n_errors_b}"
    )
    for w in comp.warnings:
        caption.append("\nwarning: ", style="bold yellow")
        caption.append(w)
    tables = [_diff_table(title, comp.metrics, caption)]
    for key, metrics in comp.by_subset.items():
        tables.append(_diff_table(Text(key, style="bold"), metrics, None))
    return tables


def _diff_table(title: Text, metrics: dict[str, MetricDiff], caption: Text | None) -> Table:
    table = Table(title=title, title_justify="left", caption=caption, caption_justify="left")
    for column in ("metric", "A", "B", "B - A", "95% CI (paired)", "n", "McNemar"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for name, d in metrics.items():
        better = METRICS[name].higher_is_better if name in METRICS else True
        style = ""
        # Colour only differences whose interval excludes zero.
        if d.ci_low is not None and d.ci_high is not None and (d.ci_low > 0 or d.ci_high < 0):
            style = "green" if (d.ci_low > 0) == better else "red"
        m = d.mcnemar
        mcnemar = "" if m is None else f"{m.a_right_b_wrong}/{m.a_wrong_b_right} p={m.p_value:.3g}"
        table.add_row(
            Text(name),
            _num(d.a),
            _num(d.b),
            Text(_num(d.diff, signed=True), style=style),
            _ci(d.ci_low, d.ci_high, signed=True),
            f"{d.n} {_unit(name)}",
            mcnemar,
        )
    return table

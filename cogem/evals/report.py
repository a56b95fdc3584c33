"""An eval directory as a report: one self-contained HTML page and a Markdown twin with SVG plots.

Suite names, options, probe names and dataset paths are user text, so the HTML page is rendered
with Jinja autoescaping and nothing marked safe except the plots, which come from an autoescaping
SVG template themselves (see :mod:`cogem.evals._plots`). The page carries the trace report's
Content-Security-Policy: no scripts, no external fetches. The Markdown escapes every interpolated
value too, because Markdown renderers pass raw HTML through.

A run still in progress (no ``summary.json`` yet) is summarized from its samples, and the report
says when fewer samples than manifest items exist.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from cogem.evals import _plots
from cogem.evals._read import read_manifest, read_probes, read_samples, read_summary
from cogem.evals.metrics import METRICS, EvalSummary, MetricValue, summarize
from cogem.evals.records import EvalManifest, SampleRecord
from cogem.probes import ProbeSummary

__all__ = ["ReportData", "load_report_data", "render_html", "render_markdown", "write_report"]


@dataclass
class ReportData:
    """Everything a report shows, read (and where needed recomputed) from an eval directory."""

    manifest: EvalManifest
    samples: list[SampleRecord]
    summary: EvalSummary
    probes: list[ProbeSummary] | None
    notes: list[str]

    @property
    def incomplete(self) -> bool:
        return len(self.samples) < len(self.manifest.item_ids)


def load_report_data(eval_dir: Path, *, n_bootstrap: int = 1000, seed: int = 0) -> ReportData:
    """Read an eval directory; summarize its samples when ``summary.json`` is missing or stale."""
    eval_dir = Path(eval_dir)
    manifest = read_manifest(eval_dir)
    samples = read_samples(eval_dir)
    summary = read_summary(eval_dir)
    notes: list[str] = []
    if summary is not None and summary.n_items != len(samples):
        notes.append(
            f"summary.json counts {summary.n_items} samples but samples.jsonl holds "
            f"{len(samples)}; the metrics below are recomputed from the samples."
        )
        summary = None
    if summary is None:
        if not notes:
            notes.append("No summary.json yet; the metrics below are computed from the samples.")
        summary = summarize(
            samples,
            suite=manifest.suite,
            reasoner=manifest.reasoner,
            options=manifest.options,
            positive=manifest.positive,
            metrics=manifest.metrics,
            n_bootstrap=n_bootstrap,
            seed=seed,
        )
    data = ReportData(manifest, samples, summary, read_probes(eval_dir), notes)
    if data.incomplete:
        notes.insert(
            0,
            f"Incomplete run: {len(samples)} of {len(manifest.item_ids)} items have a sample. "
            "Metrics are over the samples present; a group metric may see partial groups.",
        )
    return data


def _plots_of(data: ReportData) -> dict[str, _plots.Plot]:
    s = data.summary
    plots = {
        "reliability": _plots.reliability_plot(s.reliability),
        "confusion": _plots.confusion_plot(s.confusion, s.options),
        "logodds": _plots.histogram_plot(data.samples, s.options, s.positive),
    }
    if data.probes:
        plots["probes"] = _plots.flips_plot(data.probes)
    return plots


def _context(data: ReportData) -> dict[str, Any]:
    m, s = data.manifest, data.summary
    model = m.model
    return {
        "m": m,
        "s": s,
        "notes": data.notes,
        "model_id": str(model.get("model_id", "unknown model")),
        "weights_sha": str(model.get("weights_sha256") or "unknown")[:12],
        "n_manifest": len(m.item_ids),
        "tables": [
            ("Overall", s.metrics, None),
            *[(k, v, s.subset_counts.get(k)) for k, v in s.by_subset.items()],
        ],
        "probes": data.probes,
        "unit_of": {name: spec.unit for name, spec in METRICS.items()},
    }


def render_html(data: ReportData) -> str:
    svgs = {name: _plots.render(p) for name, p in _plots_of(data).items()}
    return _template("eval_report.html.j2", html=True).render(**_context(data), svgs=svgs)


def render_markdown(data: ReportData, plot_files: dict[str, str]) -> str:
    return _template("eval_report.md.j2", html=False).render(
        **_context(data), plot_files=plot_files
    )


def write_report(eval_dir: Path, out_dir: Path | None = None) -> list[Path]:
    """Write ``report.html``, ``report.md`` and the Markdown's plot files (``plot-*.svg``) into
    ``out_dir`` (default: the eval directory) and return their paths."""
    data = load_report_data(Path(eval_dir))
    out = Path(out_dir) if out_dir is not None else Path(eval_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    plot_files: dict[str, str] = {}
    for name, plot in _plots_of(data).items():
        path = out / f"plot-{name}.svg"
        path.write_text(str(_plots.render(plot, standalone=True)), encoding="utf-8")
        plot_files[name] = path.name
        written.append(path)
    html_path, md_path = out / "report.html", out / "report.md"
    html_path.write_text(render_html(data), encoding="utf-8")
    md_path.write_text(render_markdown(data, plot_files), encoding="utf-8")
    return [html_path, md_path, *written]


# The number filters return Markup: their output is digits and punctuation made here, never user
# text, and the Markdown escaper would otherwise backslash the brackets of "[0.1, 0.2]".


def _num(value: Any, digits: int = 3) -> Markup:
    if isinstance(value, int | float) and math.isfinite(value):
        return Markup(f"{value:.{digits}f}")
    return Markup("—")


def _ci(v: MetricValue) -> Markup:
    if v.ci_low is None or v.ci_high is None:
        return Markup("—")
    return Markup(f"[{_num(v.ci_low)}, {_num(v.ci_high)}]")


def _pct(value: Any) -> Markup:
    ok = isinstance(value, int | float) and math.isfinite(value)
    return Markup(f"{value:.1%}" if ok else "—")


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]<>()#+!|~])")


def _md(value: Any) -> str:
    """Markdown-safe inline text: HTML-significant characters become entities (renderers pass raw
    HTML through), Markdown syntax is backslash-escaped, and newlines cannot break a table row."""
    text = str(value).replace("&", "&amp;").replace("\r", " ").replace("\n", " ")
    text = _MD_SPECIAL.sub(r"\\\1", text)
    return text.replace("\\<", "&lt;").replace("\\>", "&gt;")


@functools.lru_cache(maxsize=2)
def _template(name: str, *, html: bool) -> jinja2.Template:
    source = resources.files("cogem.evals").joinpath(name).read_text("utf-8")
    env = jinja2.Environment(
        autoescape=html,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        # In Markdown every {{ }} goes through _md, so a forgotten filter cannot leak markup;
        # already formatted cells (Markup) are left as they are.
        finalize=None if html else (lambda v: v if isinstance(v, Markup) else _md(v)),
    )
    env.filters.update(num=_num, ci=_ci, pct=_pct)
    return env.from_string(source)

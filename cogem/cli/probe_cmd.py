"""``cogem probe CASES``: metamorphic probes on a case file, a thin layer over :mod:`cogem.probes`."""

from __future__ import annotations

import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from cogem.errors import UsageError

__all__ = ["run_probe_cli"]


def run_probe_cli(
    cases: Path,
    *,
    probes: str | None,
    model: str | None,
    limit: int | None,
    out: Path | None,
    as_json: bool,
    console: Console,
) -> int:
    """Check the inputs (before any model loads), run the probes, print a table or JSON."""
    from cogem.probes import PROBES, load_cases, run_probes

    if not cases.is_file():
        raise UsageError(f"no such case file: path={str(cases)!r}")
    names = None
    if probes is not None:
        names = [name.strip() for name in probes.split(",") if name.strip()]
        unknown = [name for name in names if name not in PROBES]
        if unknown or not names:
            raise UsageError(
                f"unknown probe(s) {', '.join(map(repr, unknown)) or repr(probes)}; "
                f"valid probes: {', '.join(PROBES)}"
            )
        names = list(dict.fromkeys(names))
    if limit is not None and limit < 1:
        raise UsageError(f"--limit must be at least 1, got {limit}")
    loaded = load_cases(cases)[:limit]
    if out is not None and out.exists() and not out.is_dir():
        raise UsageError(f"--out must be a directory: path={str(out)!r}")
    trace_dir = out or Path(tempfile.mkdtemp(prefix="cogem-probe-"))

    from cogem.engine import make_runtime
    from cogem.settings import Settings

    status = Console(stderr=True)  # keeps stdout clean for --json
    with status.status("loading model and memory…"):
        runtime = make_runtime(Settings.from_env(model=model))
    report = run_probes(
        loaded, None, runtime, names, trace_dir, console=status if as_json else console
    )
    if as_json:
        console.print(
            report.model_dump_json(indent=2), markup=False, highlight=False, soft_wrap=True
        )
        return 0
    table = Table(title=f"metamorphic probes: {report.cases} case(s)")
    for column in ("probe", "n", "flips", "flip rate", "mean TVD", "max TVD", "errors"):
        table.add_column(column, justify="left" if column == "probe" else "right")
    for s in report.summaries:
        table.add_row(
            s.probe,
            str(s.n),
            str(s.flips),
            _fmt(s.flip_rate),
            _fmt(s.mean_tvd),
            _fmt(s.max_tvd),
            str(s.errors),
        )
    console.print(table)
    console.print(f"traces: {report.trace_dir}", highlight=False, soft_wrap=True, markup=False)
    return 0


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"

"""A run as one self-contained HTML page: verification badge, every step, every model call.

The page is for auditors, so it must show what the trace *says* even when the trace is broken: the
badge comes from :func:`~cogem.trace.verify_trace` (the same check ``cogem audit`` runs, so the two
always agree), an intact trace is read with :func:`~cogem.trace.read_trace`, and anything else is
parsed record by record, with records that cannot be read shown as such instead of aborting.

Trace content is untrusted (scenarios, model output and memories are arbitrary text), so the page
is rendered by a Jinja template with autoescaping on and nothing marked safe, and it carries a
Content-Security-Policy that forbids every script and every external fetch.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
from pydantic import ValidationError

from cogem.trace.events import EventAdapter, ModuleEnd, ModuleStart, RunEnd, RunError, RunStart
from cogem.trace.verify import AuditReport, read_trace, verify_trace

__all__ = ["Item", "Step", "badge", "render_report", "write_report"]


@dataclass
class Item:
    """One trace record as the page shows it: ``event`` is None when the record is unreadable."""

    index: int
    event: Any
    raw: str
    problems: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return "unreadable" if self.event is None else str(self.event.type)


@dataclass
class Step:
    """One module step: its module_start (None if that record is missing or unreadable), the
    records that happened inside it and its module_end (None if the step never finished)."""

    module: str
    step: int | None
    start: Item | None
    items: list[Item] = field(default_factory=list)
    end: Item | None = None

    @property
    def status(self) -> str:
        if self.end is not None:
            return "ok"
        if any(i.kind == "error" for i in self.items):
            return "failed"
        return "unfinished"

    @property
    def flagged(self) -> bool:
        records = [self.start, self.end, *self.items]
        return any(r is not None and r.problems for r in records)


def badge(report: AuditReport) -> tuple[str, bool]:
    """The verdict shown at the top of the page, and whether it is good.

    ``tampered at record N`` names the same record ``cogem audit`` reports as the first bad one; a
    trace whose only problems are those a crash leaves (no seal, a torn last line) is ``incomplete``.
    """
    if report.ok:
        return "intact", True
    if not report.tampered:
        return "incomplete", False
    return f"tampered at record {report.first_bad}", False


def render_report(trace_path: Path, *, key: bytes | None = None) -> str:
    """The HTML page for the trace at ``trace_path`` (which must exist).

    ``key`` is the audit key the seal's signature is checked with, exactly as for ``verify_trace``.
    """
    return _render(Path(trace_path), key)[0]


def write_report(trace_path: Path, out: Path, *, key: bytes | None = None) -> AuditReport:
    """Write the HTML page for ``trace_path`` to ``out`` and return the audit it shows."""
    html, report = _render(Path(trace_path), key)
    Path(out).write_text(html, encoding="utf-8")
    return report


def _render(path: Path, key: bytes | None) -> tuple[str, AuditReport]:
    report = verify_trace(path, key=key)
    items = _items(path, report)
    start = items[0].event if items and isinstance(items[0].event, RunStart) else None
    end = next((i for i in items if isinstance(i.event, RunEnd)), None)
    seal = next((i for i in items if i.kind == "seal"), None)
    text, good = badge(report)
    shown_apart = {id(end), id(seal), id(items[0]) if start else None}
    timeline = _timeline([i for i in items if id(i) not in shown_apart])
    html = _template().render(
        report=report,
        badge_text=text,
        badge_ok=good,
        start=start,
        manifest=start.manifest if start else None,
        scenario=start.inputs.get("scenario") if start else None,
        end=end,
        seal=seal,
        timeline=timeline,
        step_count=sum(isinstance(b, Step) for b in timeline),
        header_problems=items[0].problems if start else [],
        trailing_problems=[p for p in report.problems if p.index >= len(items)],
    )
    return html, report


def _lines(path: Path) -> list[bytes]:
    # Split as verify_trace does, so record N here is record N in the audit; a last line without
    # its newline (torn by a crash, or tampered) is shown as a record too.
    lines = path.read_bytes().split(b"\n")
    tail = lines.pop()
    return [*lines, tail] if tail else lines


def _items(path: Path, report: AuditReport) -> list[Item]:
    lines = _lines(path)
    problems: dict[int, list[str]] = {}
    for p in report.problems:
        problems.setdefault(p.index, []).append(p.message)
    events: list[Any] = read_trace(path) if report.ok else [_lenient(line) for line in lines]
    return [
        Item(index=i, event=e, raw=line.decode("utf-8", "replace"), problems=problems.get(i, []))
        for i, (e, line) in enumerate(zip(events, lines, strict=True))
    ]


def _lenient(line: bytes) -> Any:
    try:
        return EventAdapter.validate_json(line)
    except (ValidationError, ValueError):
        return None


def _timeline(items: list[Item]) -> list[Step | Item]:
    """Group records into steps, in trace order; records outside any step stand alone."""
    blocks: list[Step | Item] = []
    current: Step | None = None
    for item in items:
        event = item.event
        module = getattr(event, "module", None)
        if isinstance(event, ModuleStart):
            current = Step(module=event.module, step=event.step, start=item)
            blocks.append(current)
            continue
        if module is not None and not _belongs(event, current):
            # The step's module_start is missing or unreadable: still give the step a section.
            current = Step(module=module, step=event.step, start=None)
            blocks.append(current)
        if current is None or (event is not None and module is None):
            blocks.append(item)
        elif isinstance(event, ModuleEnd):
            current.end = item
            current = None
        else:
            current.items.append(item)
    return blocks


def _belongs(event: Any, step: Step | None) -> bool:
    if step is None or event.module != step.module:
        return False
    # The run's error names the module that was running, not its step number.
    return (
        event.step in (step.step, None) if isinstance(event, RunError) else event.step == step.step
    )


def _pretty(value: Any) -> str:
    if isinstance(value, str):
        return value
    flat = json.dumps(value, ensure_ascii=False)
    return flat if len(flat) <= 100 else json.dumps(value, indent=2, ensure_ascii=False)


def _short(value: Any, n: int = 12) -> str:
    text = str(value) if value is not None else "unknown"
    return text if len(text) <= n else text[:n] + "…"


def _ms(value: Any) -> str:
    if not isinstance(value, int | float) or not math.isfinite(value):
        return "—"
    return f"{value:.1f} ms" if value < 1000 else f"{value / 1000:.2f} s"


def _bar(value: Any) -> str:
    # Only a number this function formats ever reaches a style attribute.
    p = float(value) if isinstance(value, int | float) and math.isfinite(value) else 0.0
    return f"{min(max(p, 0.0), 1.0) * 100:.1f}%"


def _option_rows(event: Any) -> list[tuple[str, Any, Any, bool]]:
    """(option, probability, log-probability, chosen) for each scored option, in recorded order."""
    options, probs = list(event.options or []), list(event.probs or [])
    logprobs = list(event.logprobs or [])
    best = max(range(len(probs)), key=lambda i: probs[i], default=-1)  # ties: first, as decided
    return [
        (
            o,
            probs[i] if i < len(probs) else None,
            logprobs[i] if i < len(logprobs) else None,
            i == best,
        )
        for i, o in enumerate(options)
    ]


def _num(value: Any, digits: int = 3) -> str:
    if isinstance(value, int | float) and math.isfinite(value):
        return f"{value:.{digits}f}"
    return str(value)


@functools.lru_cache(maxsize=1)
def _template() -> jinja2.Template:
    source = resources.files("cogem.audit").joinpath("report.html.j2").read_text("utf-8")
    env = jinja2.Environment(
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(pretty=_pretty, short=_short, ms=_ms, bar=_bar, num=_num)
    env.globals["option_rows"] = _option_rows
    env.tests["step"] = lambda block: isinstance(block, Step)
    return env.from_string(source)

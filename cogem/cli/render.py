"""Terminal rendering of runs and audits (rich)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from rich.console import Console
from rich.status import Status
from rich.table import Table

from cogem.trace.events import LlmCall, ModuleEnd, ModuleStart, Retrieval
from cogem.trace.verify import AuditReport

__all__ = ["StepPrinter", "audit_lines"]


def _short(value: Any, limit: int = 90) -> str:
    if isinstance(value, list):
        text = "; ".join(str(v) for v in value) if value else "(none)"
    else:
        text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


class StepPrinter:
    """Collects module steps from trace events while a run goes, then prints them as a table."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.rows: list[dict[str, Any]] = []
        self._status: Status | None = None
        self._current: dict[str, Any] = {}

    @contextlib.contextmanager
    def live(self) -> Iterator[None]:
        with self.console.status("starting…") as status:
            self._status = status
            try:
                yield
            finally:
                self._status = None

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Stop the spinner while the terminal is used for something else (an approval prompt)."""
        status = self._status
        if status is not None:
            status.stop()
        try:
            yield
        finally:
            if status is not None:
                status.start()

    def on_event(self, event: Any) -> None:
        if isinstance(event, ModuleStart):
            self._current = {"step": event.step, "module": event.module, "probs": "", "hits": ""}
            if self._status is not None:
                self._status.update(f"step {event.step}: {event.module}…")
        elif isinstance(event, LlmCall) and event.probs is not None and event.options is not None:
            pairs = sorted(zip(event.options, event.probs, strict=True), key=lambda p: -p[1])
            self._current["probs"] = "\n".join(f"{o} {p:.2f}" for o, p in pairs)
        elif isinstance(event, Retrieval):
            self._current["hits"] = (
                "\n".join(f"{h.id} ({h.score:.2f})" for h in event.hits) or "(none)"
            )
        elif isinstance(event, ModuleEnd):
            hidden = {"memories"} | {k for k, v in event.output.items() if isinstance(v, dict)}
            outputs = "\n".join(
                f"{k}: {_short(v)}" for k, v in event.output.items() if k not in hidden
            )
            self.rows.append({**self._current, "outputs": outputs, "latency": event.latency_ms})

    def print_summary(self, state: dict[str, Any]) -> None:
        table = Table(title="cogem run", show_lines=True, expand=False)
        table.add_column("#", justify="right")
        table.add_column("module", style="bold")
        table.add_column("key outputs", overflow="fold")
        table.add_column("probabilities")
        table.add_column("memory hits")
        table.add_column("latency", justify="right")
        for row in self.rows:
            table.add_row(
                str(row["step"]),
                row["module"],
                row["outputs"],
                row["probs"],
                row["hits"],
                f"{row['latency'] / 1000:.1f} s",
            )
        self.console.print(table)


def audit_lines(report: AuditReport) -> list[str]:
    signature = (
        "signature verified"
        if report.signature_checked and report.ok
        else "signed (set COGEM_AUDIT_KEY to check)"
        if report.signed
        else "unsigned"
    )
    if report.ok:
        return [
            f"intact: {report.records} records, run {report.run_id}, head {report.head}, {signature}"
        ]
    first = report.first_bad
    if report.tampered:
        verdict = f"TAMPERED: first bad record {first}"
    elif report.torn_tail:
        verdict = f"TORN TAIL at record {first} (crash while writing; `cogem audit --repair` truncates it)"
    else:
        verdict = f"INCOMPLETE at record {first} (run crashed, or its tail was cut)"
    lines = [f"{verdict} ({len(report.problems)} problem(s)) in {report.path}"]
    lines += [f"  record {p.index} [{p.rule}] {p.message}" for p in report.problems[:20]]
    if len(report.problems) > 20:
        lines.append(f"  ... and {len(report.problems) - 20} more")
    return lines

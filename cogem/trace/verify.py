"""Verify a trace file: chain integrity, record schemas and per-record invariants.

Pure: needs pydantic and jsonschema, never torch, chromadb or the graph, so ``cogem audit`` runs on
an auditor's machine that has neither the model nor the memory store.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import jsonschema
from pydantic import BaseModel, ConfigDict, ValidationError

from cogem.canonical import canonical_json, sha256_json
from cogem.errors import TraceError
from cogem.trace.events import (
    GENESIS,
    EventAdapter,
    LlmCall,
    ModuleEnd,
    ModuleStart,
    RunEnd,
    RunStart,
)

__all__ = ["AuditReport", "Problem", "read_trace", "verify_trace"]

PROB_TOLERANCE = 1e-6


class Problem(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    index: int
    rule: str
    message: str


class AuditReport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str
    records: int
    run_id: str | None
    complete: bool
    head: str | None
    problems: list[Problem]

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_bad(self) -> int | None:
        return min((p.index for p in self.problems), default=None)


def read_trace(path: Path) -> list[Any]:
    """Parse a trace into typed events, raising :class:`TraceError` at the first unreadable line.

    Use :func:`verify_trace` to *check* a trace; this is for code that needs the events of a trace
    already known to be intact.
    """
    events = []
    for index, line in enumerate(_lines(path)):
        try:
            events.append(EventAdapter.validate_json(line))
        except ValidationError as exc:
            raise TraceError(
                f"record {index} of {str(path)!r} is not a valid event: {exc}"
            ) from exc
    return events


def _lines(path: Path) -> list[str]:
    try:
        text = Path(path).read_bytes().decode("utf-8", errors="replace")
    except OSError as exc:
        raise TraceError(f"cannot read trace: path={str(path)!r}: {exc}") from exc
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def verify_trace(path: Path) -> AuditReport:
    """Check every record of the trace at ``path`` and report each broken rule with its index."""
    lines = _lines(path)
    problems: list[Problem] = []
    prev_hash = GENESIS
    run_id: str | None = None
    spec_hashes: dict[str, str] = {}
    saw_end = False

    def bad(index: int, rule: str, message: str) -> None:
        problems.append(Problem(index=index, rule=rule, message=message))

    for index, line in enumerate(lines):
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            bad(index, "json", f"record {index} is not valid JSON ({exc.msg})")
            prev_hash = ""  # unknown: the next record's link cannot be checked against it
            continue
        if not isinstance(raw, dict):
            bad(index, "json", f"record {index} is not a JSON object")
            prev_hash = ""
            continue
        stored_hash = raw.get("hash")
        body = {k: v for k, v in raw.items() if k != "hash"}
        try:
            recomputed = sha256_json(body)
        except ValueError:
            recomputed = None
        if stored_hash != recomputed or canonical_json(raw) != line:
            bad(index, "hash", f"record {index} was altered: its content does not match its hash")
        if prev_hash and raw.get("prev") != prev_hash:
            what = (
                "the first record must start the chain"
                if index == 0
                else "it does not link to record " + str(index - 1)
            )
            bad(
                index,
                "chain",
                f"record {index} breaks the hash chain: {what} (deleted, inserted or reordered records)",
            )
        prev_hash = stored_hash if isinstance(stored_hash, str) else ""
        if raw.get("seq") != index:
            bad(index, "seq", f"record {index} has seq {raw.get('seq')!r}")
        try:
            event = EventAdapter.validate_python(raw)
        except ValidationError as exc:
            bad(
                index,
                "event",
                f"record {index} is not a valid trace event: {exc.errors()[0]['msg']}",
            )
            continue
        if run_id is None:
            run_id = event.run_id
        elif event.run_id != run_id:
            bad(index, "run_id", f"record {index} belongs to run {event.run_id!r}, not {run_id!r}")
        if index == 0 and not isinstance(event, RunStart):
            bad(index, "start", "the first record must be run_start")
        if isinstance(event, RunStart):
            if index != 0:
                bad(index, "start", f"record {index} is a second run_start")
            spec_hashes = dict(event.manifest.modules)
        if saw_end:
            bad(index, "end", f"record {index} comes after run_end")
        saw_end = saw_end or isinstance(event, RunEnd)
        _check_event(index, event, spec_hashes, bad)

    if lines and not saw_end:
        bad(len(lines), "incomplete", "the trace has no run_end record (crashed or truncated run)")
    if not lines:
        bad(0, "incomplete", "the trace is empty")
    return AuditReport(
        path=str(path),
        records=len(lines),
        run_id=run_id,
        complete=saw_end,
        head=prev_hash or None,
        problems=sorted(problems, key=lambda p: p.index),
    )


def _check_event(index: int, event: Any, spec_hashes: dict[str, str], bad: Any) -> None:
    if isinstance(event, ModuleStart):
        expected = spec_hashes.get(event.module)
        if expected is None:
            bad(
                index,
                "spec_hash",
                f"record {index}: module {event.module!r} is not in the manifest",
            )
        elif expected != event.spec_hash:
            bad(
                index,
                "spec_hash",
                f"record {index}: module {event.module!r} ran a spec the manifest does not name",
            )
    elif isinstance(event, ModuleEnd):
        if sha256_json(event.output_schema) != event.schema_hash:
            bad(index, "schema_hash", f"record {index}: output_schema does not match schema_hash")
        try:
            jsonschema.validate(event.output, event.output_schema)
        except jsonschema.ValidationError as exc:
            bad(
                index,
                "output_schema",
                f"record {index}: module {event.module!r} output fails its schema: {exc.message}",
            )
        except jsonschema.SchemaError as exc:
            bad(
                index, "output_schema", f"record {index}: recorded schema is invalid: {exc.message}"
            )
    elif isinstance(event, LlmCall) and event.probs is not None:
        total = math.fsum(event.probs)
        if abs(total - 1.0) > PROB_TOLERANCE or any(p < 0 for p in event.probs):
            bad(index, "probs", f"record {index}: option probabilities sum to {total!r}, not 1")
        if event.options is None or len(event.options) != len(event.probs):
            bad(index, "probs", f"record {index}: probabilities do not match the options")

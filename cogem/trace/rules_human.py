"""Trace rules for durable and human-approved runs: resumes sit between steps, and every
approval-gated output is decided by a person before anything acts on it."""

from __future__ import annotations

from typing import Any

from cogem.schema import editable_fields, validation_error
from cogem.trace.events import HumanDecision, ModuleEnd, ModuleStart, RunEnd, RunResume
from cogem.trace.rules_base import Problem, Records, manifest_of

__all__ = ["human_decisions", "resumes"]


def resumes(records: Records) -> list[Problem]:
    """A ``run_resume`` comes between module steps (the trace was cut back to a completed step),
    names the step the run continues with, and one thread id is used throughout."""
    found = []
    open_step: ModuleStart | None = None
    next_step = 0
    thread: str | None = None
    for index, event in records:
        if isinstance(event, ModuleStart):
            open_step, next_step = event, event.step + 1
        elif isinstance(event, ModuleEnd):
            open_step = None
        elif isinstance(event, RunResume):
            problem = None
            if open_step is not None:
                problem = f"resumes inside step {open_step.step} of module {open_step.module!r}"
            elif event.next_step != next_step:
                problem = f"says the run continues with step {event.next_step}, not {next_step}"
            elif thread is not None and event.thread_id != thread:
                problem = f"names thread {event.thread_id!r}, not {thread!r}"
            thread = event.thread_id
            if problem:
                found.append(
                    Problem(
                        index=index, rule="resume", message=f"record {index}: run_resume {problem}"
                    )
                )
    return found


def human_decisions(records: Records) -> list[Problem]:
    """With an approval gate (``graph.approval`` in the manifest), each output of the gated module
    gets exactly one human decision before the next step or the end of the run; the decision
    names the record it reviewed; an edit changes only editable fields and keeps the output valid
    against its schema; a rejection ends the run with status "rejected" and nothing runs after it."""
    manifest = manifest_of(records)
    if manifest is None:
        return []
    gate = manifest.graph.get("approval")
    spec: dict[str, Any] = manifest.specs.get(gate, {}) if isinstance(gate, str) else {}
    editable = set(editable_fields(spec.get("output_schema")))
    found: list[Problem] = []

    def bad(index: int, message: str) -> None:
        found.append(
            Problem(index=index, rule="human_decision", message=f"record {index}: {message}")
        )

    awaiting: ModuleEnd | None = None  # a gated output not yet decided on
    rejected_at: int | None = None
    for index, event in records:
        if isinstance(event, ModuleEnd) and event.module == gate:
            awaiting = event
        elif isinstance(event, ModuleStart):
            if rejected_at is not None:
                bad(
                    index,
                    f"module {event.module!r} runs after the human rejected at record {rejected_at}",
                )
            if awaiting is not None:
                bad(
                    index,
                    f"module {event.module!r} runs before a human decided on {gate!r} step {awaiting.step}",
                )
                awaiting = None
        elif isinstance(event, HumanDecision):
            if event.module != gate:
                bad(index, f"a human decision on {event.module!r}, which has no approval gate")
                continue
            if awaiting is None or (awaiting.step, awaiting.hash) != (event.step, event.reviewed):
                bad(index, f"the decision does not name the {gate!r} output awaiting review")
                continue
            _check_edits(index, event, awaiting, editable, bad)
            if event.decision == "reject":
                rejected_at = index
            awaiting = None
        elif isinstance(event, RunEnd):
            if awaiting is not None and event.status != "error":
                bad(
                    index,
                    f"the run ended {event.status!r} before a human decided on {gate!r} step {awaiting.step}",
                )
            if (event.status == "rejected") != (rejected_at is not None):
                what = (
                    "without a human rejection"
                    if rejected_at is None
                    else "after a human rejection"
                )
                bad(index, f"the run ended {event.status!r} {what}")
    return found


def _check_edits(
    index: int, event: HumanDecision, reviewed: ModuleEnd, editable: set[str], bad: Any
) -> None:
    if (event.decision == "edit") != bool(event.edits):
        bad(index, f"a {event.decision!r} decision with {len(event.edits)} edited field(s)")
        return
    stray = sorted(set(event.edits) - editable)
    if stray:
        bad(index, f"the human edited {stray}, which are not editable fields of {event.module!r}")
    problem = validation_error({**reviewed.output, **event.edits}, reviewed.output_schema)
    if problem:
        bad(index, f"the edited output of {event.module!r} fails its schema {problem}")

"""Durable runs: a thread is one run, checkpointed after every step, resumable after a kill.

The trace of a durable run is one file. Every node leaves the run's position (records written,
chain head, step counter, visits) in the checkpointed state, so a resumed run cuts the trace back
to exactly the last checkpointed step (dropping a module killed mid-way, see
:mod:`cogem.trace.reopen`), records a ``run_resume`` event and continues the same hash chain with
the same run id. A re-executed step writes the same memory record id (the id is derived from run
id, step and content), so memory is never duplicated.

An unreadable checkpoint store or checkpoint is a :class:`~cogem.errors.CheckpointError`, never a
fresh start.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver

from cogem.engine.checkpoint import default_checkpoint_path, open_checkpointer
from cogem.engine.graph import RUN_KEY, Reasoner
from cogem.engine.run import (
    ApproveArg,
    RunResult,
    build_manifest,
    default_trace_path,
    read_state,
    record_run,
    run_info,
    validate_scenario,
)
from cogem.engine.runtime import RunContext, Runtime
from cogem.errors import CheckpointError, CogemError, ThreadError, UsageError
from cogem.trace.events import RunResume, RunStart
from cogem.trace.reopen import reopen_trace
from cogem.trace.writer import TraceWriter

__all__ = ["resume_reasoner", "start_durable", "thread_position"]

_MAX_THREAD_CHARS = 200


def _check_thread(thread: object) -> str:
    if not isinstance(thread, str) or not thread.strip() or len(thread) > _MAX_THREAD_CHARS:
        raise UsageError(
            f"a thread id is a non-blank string of at most {_MAX_THREAD_CHARS} characters"
        )
    if any(ord(c) < 32 for c in thread):
        raise UsageError("a thread id must not contain control characters")
    return thread


@contextlib.contextmanager
def _saver(
    runtime: Runtime, checkpointer: BaseCheckpointSaver[Any] | None
) -> Iterator[BaseCheckpointSaver[Any]]:
    if checkpointer is not None:
        yield checkpointer  # the caller's store: the caller closes it
        return
    with open_checkpointer(default_checkpoint_path(runtime.settings)) as saver:
        yield saver


def thread_position(saver: BaseCheckpointSaver[Any], thread: str) -> dict[str, Any] | None:
    """The latest checkpointed values of ``thread`` (None when the thread does not exist)."""
    try:
        found = saver.get_tuple({"configurable": {"thread_id": thread}})
    except CogemError:
        raise
    except (sqlite3.Error, ValueError, TypeError, KeyError) as exc:
        raise CheckpointError(
            f"thread {thread!r}: the checkpoint cannot be read: {type(exc).__name__}: {exc}"
        ) from exc
    if found is None:
        return None
    values = dict(found.checkpoint.get("channel_values") or {})
    position = values.get(RUN_KEY)
    if not isinstance(position, dict) or not {"run_id", "trace_path", "records", "head"} <= set(
        position
    ):
        raise CheckpointError(
            f"thread {thread!r}: the checkpoint has no cogem run position; it was not written by `cogem run --thread`"
        )
    return {**values, RUN_KEY: position}


def start_durable(
    reasoner: Reasoner,
    scenario: str,
    runtime: Runtime,
    *,
    thread: str,
    trace_path: Path | None = None,
    on_event: Callable[[Any], None] | None = None,
    approve: ApproveArg = None,
    approve_after: str = "plan",
    checkpointer: BaseCheckpointSaver[Any] | None = None,
) -> RunResult:
    """Start the durable run ``thread``; a thread that already exists is an error."""
    thread = _check_thread(thread)
    settings = runtime.settings
    scenario = validate_scenario(scenario, settings.max_scenario_chars)
    gate = approve_after if approve not in (None, False) else None
    with _saver(runtime, checkpointer) as saver:
        existing = thread_position(saver, thread)
        if existing is not None:
            raise ThreadError(_exists_message(thread, existing, scenario))
        graph = reasoner.compile(approve_after=gate, checkpointer=saver)
        run_id = uuid.uuid4().hex
        manifest = build_manifest(reasoner, runtime, gate)
        path = trace_path or default_trace_path(settings, run_id)
        writer = TraceWriter(path, run_id)
        ctx = RunContext(runtime=runtime, trace=writer, on_event=on_event)
        ctx.run_info = run_info(run_id, writer.path, ctx, gate, thread, reasoner)
        try:
            ctx.emit(RunStart, manifest=manifest, inputs={"scenario": scenario})
        except BaseException:
            writer.close()
            raise
        payload = {"scenario": scenario, RUN_KEY: ctx.position()}
        config = {"configurable": {"thread_id": thread}}
        return record_run(
            reasoner, graph, payload, ctx, config, approve, durable=True, thread=thread
        )


def _exists_message(thread: str, values: dict[str, Any], scenario: str) -> str:
    trace = values[RUN_KEY]["trace_path"]
    if _ended(Path(trace)):
        return f"thread {thread!r} has already finished (trace: {trace}); choose another thread id"
    if values.get("scenario") != scenario:
        return (
            f"thread {thread!r} already exists and was started on a different scenario "
            f"(trace: {trace}); choose another thread id"
        )
    return (
        f"thread {thread!r} already exists (trace: {trace}); continue it with --resume "
        "(Python: Reasoner.resume), or choose another thread id"
    )


def _ended(trace: Path) -> bool:
    """Whether the trace's last complete record ends the run (``run_end`` or the seal)."""
    try:
        lines = trace.read_bytes().split(b"\n")[:-1]
    except OSError:
        return False
    if not lines:
        return False
    try:
        last = json.loads(lines[-1])
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(last, dict) and last.get("type") in ("run_end", "seal")


def resume_reasoner(
    reasoner: Reasoner,
    thread: str,
    runtime: Runtime,
    *,
    on_event: Callable[[Any], None] | None = None,
    approve: ApproveArg = None,
    checkpointer: BaseCheckpointSaver[Any] | None = None,
) -> RunResult:
    """Continue the durable run ``thread`` from its last checkpointed step."""
    thread = _check_thread(thread)
    with _saver(runtime, checkpointer) as saver:
        values = thread_position(saver, thread)
        if values is None:
            raise ThreadError(
                f"no durable run with thread id {thread!r}; start one with --thread ID SCENARIO"
            )
        position = values[RUN_KEY]
        modules = {name: spec.spec_hash for name, spec in reasoner.specs.items()}
        if position.get("modules") != modules:
            raise ThreadError(
                f"thread {thread!r} was started with other module specs or graph; resume it with the same modules"
            )
        gate = position.get("approve_after")
        if gate is not None and approve in (None, False):
            raise ThreadError(
                f"thread {thread!r} was started with approval after {gate!r}; resume it with approval (--approve)"
            )
        graph = reasoner.compile(approve_after=gate, checkpointer=saver)
        config = {"configurable": {"thread_id": thread}}
        snapshot = read_state(graph, config)
        trace = Path(position["trace_path"])
        if not snapshot.next or _ended(trace):
            raise ThreadError(f"thread {thread!r} has already finished; its trace: {trace}")
        # The trace names the checkpoint's step as its head only if nothing ended the run since.
        writer, dropped = reopen_trace(
            trace,
            str(position["run_id"]),
            records=int(position["records"]),
            head=str(position["head"]),
        )
        ctx = RunContext(runtime=runtime, trace=writer, on_event=on_event)
        ctx.run_info = {
            k: position[k]
            for k in ("run_id", "trace_path", "started_at", "approve_after", "thread", "modules")
        }
        try:
            ctx.restore(position)
            ctx.emit(
                RunResume,
                thread_id=thread,
                next_step=ctx.steps,
                dropped_records=dropped.records,
                dropped_bytes=dropped.bytes,
                dropped_sha256=dropped.sha256,
            )
        except BaseException:
            writer.close()
            raise
        return record_run(reasoner, graph, None, ctx, config, approve, durable=True, thread=thread)

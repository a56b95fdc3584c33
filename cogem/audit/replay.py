"""Replay a recorded run from its trace (zero model calls), or re-derive it with a real model.

**Replay** rebuilds the reasoner from the run manifest and runs it through the ordinary engine,
but the runtime's model is a :class:`ReplayLLM` that serves the recorded ``llm_call`` records in
order and its memory a :class:`ReplayMemory` that serves the recorded hits. Each served call is
checked against what the engine asks for now (call kind, prompt, schema, options, query), so a
replay proves the recorded outputs, rendered through today's code, give the recorded run.

**Re-derive** runs the same rebuilt reasoner with a real model, the memory still fixed to the
recorded hits, and diffs every step against the recording.

Prompt-matching rule. A recorded ``prompt_text`` is the chat-templated text the model saw, which
cannot be re-rendered without the model's tokenizer. So for a ``ChatPrompt`` the recorded text must
contain the new prompt's ``user`` text (whitespace-stripped, the last occurrence) and, before it,
its ``system`` text, verbatim; and what is left around them (the chat template's own text) must
be the same for every call of the run with the same system/no-system shape. The first call of
each shape fixes that template text. A plain ``str`` prompt is used verbatim by every backend,
so it must equal the recorded text exactly.

Human decisions (runs with ``--approve``) are served from the recorded ``human_decision`` records,
in order; a resumed durable run replays as one uninterrupted run (``run_resume`` records mark
where the original was cut and continued, and change no step).

Conditional edges cannot be rebuilt (a router is user Python), so replayed routers follow the
recorded order of ``module_start`` records: after module X's k-th visit they return the module
that ran next in the recording, or ``END``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from cogem.audit.replay_diff import (
    FieldDiff,
    StepComparison,
    StepStatus,
    field_diff,
    first_difference,
)
from cogem.audit.replay_serve import CountingLLM, ReplayDivergenceError, ReplayLLM, ReplayMemory
from cogem.engine.approval import ApprovalRequest, Decision
from cogem.engine.graph import END, Reasoner
from cogem.engine.runtime import Runtime
from cogem.errors import CogemError, TraceError, UsageError
from cogem.llm.base import ModelInfo
from cogem.memory.base import MemoryHit, MemoryInfo, ScoreComponents
from cogem.settings import Settings
from cogem.spec import ModuleSpec
from cogem.trace.events import (
    HumanDecision,
    LlmCall,
    Manifest,
    ModuleEnd,
    ModuleStart,
    Retrieval,
    RunEnd,
    RunStart,
)
from cogem.trace.events import RunError as RunErrorEvent
from cogem.trace.seal import audit_key_from_env
from cogem.trace.verify import read_trace, verify_trace

__all__ = [
    "FieldDiff",
    "RederiveResult",
    "ReplayDivergenceError",
    "ReplayLLM",
    "ReplayMemory",
    "ReplayRefusedError",
    "ReplayResult",
    "SpecMismatchError",
    "StepComparison",
    "rederive_trace",
    "replay_trace",
]


class ReplayRefusedError(TraceError):
    """The trace fails ``cogem audit``: a tampered or truncated trace cannot serve as a script."""


class SpecMismatchError(TraceError):
    """A module spec in the manifest does not hash to the SHA-256 the manifest names for it."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Comparison(_Model):
    trace_path: Path
    replay_trace_path: Path
    matches: bool
    steps: list[StepComparison]
    final_state_diff: FieldDiff | None = None
    error: str | None = None
    model_calls: int


class ReplayResult(_Comparison):
    """Outcome of :func:`replay_trace`; ``model_calls`` is the number of real model calls (0)."""

    served_calls: int
    recorded_calls: int


class RederiveResult(_Comparison):
    """Outcome of :func:`rederive_trace`: each recorded step ``identical`` or ``changed``."""

    model_id: str
    recorded_model_id: str


# --- the recorded run ------------------------------------------------------------------------


class _Recording:
    """A verified trace, split into what replay needs."""

    def __init__(self, path: Path) -> None:
        report = verify_trace(path, key=audit_key_from_env())
        if not report.ok:
            problem = report.problems[0]
            raise ReplayRefusedError(
                f"refusing to replay path={str(path)!r}: it fails the audit at record "
                f"{problem.index} ({problem.message}); run `cogem audit` on it"
            )
        self.path = path
        self.events: list[Any] = read_trace(path)
        start = self.events[0]
        assert isinstance(start, RunStart)  # verify_trace checked it
        self.manifest: Manifest = start.manifest
        self.scenario = str(start.inputs.get("scenario", ""))
        self.calls = [(i, e) for i, e in enumerate(self.events) if isinstance(e, LlmCall)]
        self.end: RunEnd = next(e for e in self.events if isinstance(e, RunEnd))
        self.specs = self._specs()

    def _specs(self) -> dict[str, ModuleSpec]:
        specs = {}
        for name, data in self.manifest.specs.items():
            try:
                spec = ModuleSpec.model_validate(data)
            except ValidationError as exc:
                raise SpecMismatchError(
                    f"module {name!r}: the manifest's spec is not a valid spec: {exc.errors()[0]['msg']}"
                ) from exc
            if spec.spec_hash != self.manifest.modules.get(name):
                raise SpecMismatchError(
                    f"module {name!r}: the manifest's spec hashes to {spec.spec_hash[:12]}…, "
                    f"not the recorded {str(self.manifest.modules.get(name))[:12]}…"
                )
            specs[name] = spec
        if set(specs) != set(self.manifest.modules):
            raise SpecMismatchError("the manifest's specs and module hashes name different modules")
        return specs

    def reasoner(self) -> Reasoner:
        graph = self.manifest.graph
        order = [e.module for e in self.events if isinstance(e, ModuleStart)]
        routes = _RecordedRoutes(order, ended_ok=self.end.status == "ok")
        try:
            reasoner = Reasoner([], inputs=graph.get("inputs", ["scenario"]))
            for name in graph["nodes"]:
                reasoner.add_module(self.specs[name], max_visits=graph["max_visits"][name])
            for source, target in graph["edges"]:
                reasoner.add_edge(source, target)
            for source, targets in graph.get("conditional", {}).items():
                reasoner.add_conditional_edges(source, routes.router(source), targets)
        except (CogemError, KeyError, TypeError, ValueError) as exc:
            raise TraceError(f"the manifest's graph cannot be rebuilt: {exc!r}") from exc
        return reasoner

    def memory(self, *, strict: bool) -> ReplayMemory | None:
        if self.manifest.memory is None:
            return None  # the recorded run had no store; a retrieval fails the same way again
        ends = {(e.module, e.step): e for e in self.events if isinstance(e, ModuleEnd)}
        searches = []
        for index, event in enumerate(self.events):
            if not isinstance(event, Retrieval):
                continue
            spec = self.specs.get(event.module)
            end = ends.get((event.module, event.step))
            field = spec.retrieval.hits_field if spec and spec.retrieval else "memories"
            texts = {}
            if end is not None and field in end.output:
                texts = {row["id"]: row["text"] for row in end.output[field]}
            # The retrieval record holds every ranking number; the text comes from the module's
            # output (absent when the step failed after searching). The record's creation time is
            # not recorded: the search time stands in, and nothing downstream reads it.
            now = datetime.fromisoformat(event.now)
            hits = [
                MemoryHit(
                    id=h.id,
                    text=texts.get(h.id, ""),
                    kind=h.kind,  # type: ignore[arg-type]
                    source=h.source,
                    created_at=now,
                    importance=h.importance,
                    distance=h.distance,
                    components=ScoreComponents(
                        relevance=h.relevance, recency=h.recency, importance=h.importance
                    ),
                    score=h.score,
                )
                for h in event.hits
            ]
            searches.append((index, event, hits))
        info = dict(self.manifest.memory)
        info["backend"] = f"replay:{info.get('backend', '?')}"
        try:
            memory_info = MemoryInfo.model_validate(info)
        except ValidationError:
            memory_info = MemoryInfo(backend="replay", collection="replay", embedder_id="replay",
                                     dimension=1, count=0)  # fmt: skip
        return ReplayMemory(searches, memory_info, strict=strict)

    def settings(self, base: Settings | None = None) -> Settings:
        # A recorded k below the spec's k means the run had settings.recall_k set.
        lowered = [
            e.k
            for e in self.events
            if isinstance(e, Retrieval)
            and (spec := self.specs.get(e.module)) is not None
            and spec.retrieval is not None
            and e.k < spec.retrieval.k
        ]
        # From the environment, so a replay trace is signed like any other run's (COGEM_AUDIT_KEY).
        base = base or Settings.from_env(home=Path(tempfile.gettempdir()))
        return base.model_copy(
            update={
                "seed": self.manifest.seed,
                "recall_k": min(lowered) if lowered else None,
                "max_scenario_chars": max(base.max_scenario_chars, len(self.scenario)),
            }
        )

    @property
    def model_info(self) -> ModelInfo:
        try:
            return ModelInfo.model_validate(self.manifest.model)
        except ValidationError:
            return ModelInfo(model_id=str(self.manifest.model.get("model_id", "?")),
                             source="fake", weights_sha256="0" * 64)  # fmt: skip


class _RecordedRoutes:
    """Routers that follow the recorded order of module starts."""

    def __init__(self, order: Sequence[str], *, ended_ok: bool) -> None:
        self.next: dict[str, list[str]] = {}
        for i, name in enumerate(order):
            if i + 1 < len(order):
                self.next.setdefault(name, []).append(order[i + 1])
            elif ended_ok:
                self.next.setdefault(name, []).append(END)
        self.calls: dict[str, int] = {}

    def router(self, source: str) -> Callable[[Mapping[str, Any]], str]:
        def route(state: Mapping[str, Any]) -> str:
            visit = self.calls.get(source, 0)
            self.calls[source] = visit + 1
            recorded = self.next.get(source, [])
            return recorded[visit] if visit < len(recorded) else END

        route.__name__ = f"recorded_route_after_{source}"
        return route


# --- the replay backends ---------------------------------------------------------------------


def replay_trace(path: Path, *, out: Path | None = None) -> ReplayResult:
    """Re-run the recorded run at ``path`` with zero model calls; compare every step.

    Raises :class:`ReplayRefusedError` for a trace that fails the audit and
    :class:`SpecMismatchError` for a manifest whose specs do not match their hashes. Divergence
    during the replay is reported in the result (``matches=False``), not raised.
    """
    recording = _Recording(Path(path))
    llm = ReplayLLM(recording.calls, recording.model_info)
    memory = recording.memory(strict=True)
    runtime = Runtime(llm=llm, memory=memory, settings=recording.settings())
    out = _out_path(recording.path, out, "replay")
    error = _run(recording, runtime, out)
    unused = None
    if llm.remaining:
        unused = f"the replay made {llm.served} of the {len(recording.calls)} recorded model calls"
    elif memory is not None and memory.remaining:
        unused = f"the replay made {memory.served} of the recorded memory searches"
    steps, final_diff, same_end = _compare(recording, out, ok_status="replayed")
    return ReplayResult(
        trace_path=recording.path,
        replay_trace_path=out,
        matches=unused is None and _matches(steps, final_diff, same_end),
        steps=steps,
        final_state_diff=final_diff,
        error=error or unused,
        model_calls=llm.model_calls,
        served_calls=llm.served,
        recorded_calls=len(recording.calls),
    )


def rederive_trace(path: Path, runtime: Runtime, *, out: Path | None = None) -> RederiveResult:
    """Re-run the recorded run with ``runtime``'s model; memory and routing follow the recording.

    Each recorded step comes back ``identical`` or ``changed`` (with the first differing field).
    """
    recording = _Recording(Path(path))
    llm = CountingLLM(runtime.llm)
    # Tuned modules keep their own models (see cogem.tune.apply_tuned), counted alike.
    tuned = {name: CountingLLM(m) for name, m in runtime.module_llms.items()}
    memory = recording.memory(strict=False)
    settings = recording.settings(runtime.settings)
    out = _out_path(recording.path, out, "rederive")
    rerun = Runtime(llm=llm, memory=memory, settings=settings, module_llms=dict(tuned))
    error = _run(recording, rerun, out)
    steps, final_diff, same_end = _compare(recording, out, ok_status="identical")
    return RederiveResult(
        trace_path=recording.path,
        replay_trace_path=out,
        matches=_matches(steps, final_diff, same_end),
        steps=steps,
        final_state_diff=final_diff,
        error=error,
        model_calls=llm.model_calls + sum(m.model_calls for m in tuned.values()),
        model_id=llm.info.model_id,
        recorded_model_id=recording.model_info.model_id,
    )


def _out_path(path: Path, out: Path | None, kind: str) -> Path:
    if out is not None:
        if Path(out).exists() and Path(out).stat().st_size > 0:
            raise UsageError(f"the {kind} trace would overwrite a file: path={str(out)!r}")
        return Path(out)
    return Path(tempfile.mkdtemp(prefix=f"cogem-{kind}-")) / f"{path.stem}.{kind}.jsonl"


def _run(recording: _Recording, runtime: Runtime, out: Path) -> str | None:
    """Run the rebuilt reasoner; the error it ended with, if any (it is in the new trace too)."""
    reasoner = recording.reasoner()
    gate = recording.manifest.graph.get("approval")
    approver = _RecordedDecisions(recording.events) if isinstance(gate, str) else None
    try:
        reasoner.run(
            recording.scenario,
            runtime,
            trace_path=out,
            approve=approver,
            approve_after=gate if isinstance(gate, str) else "plan",
        )
    except Exception as exc:  # recorded in the new trace; an expected error if the recording has it
        closed = out.is_file() and any(isinstance(e, RunEnd) for e in read_trace(out))
        if isinstance(exc, TraceError) and not closed:
            raise  # the new trace itself could not be written: there is nothing to compare
        return f"{type(exc).__name__}: {exc}"
    return None


class _RecordedDecisions:
    """Serves the recorded human decisions in order, checking each is for the same review."""

    def __init__(self, events: Sequence[Any]) -> None:
        self._decisions = [(i, e) for i, e in enumerate(events) if isinstance(e, HumanDecision)]
        self._next = 0

    def __call__(self, request: ApprovalRequest) -> Decision:
        if self._next >= len(self._decisions):
            raise ReplayDivergenceError(
                f"the replay asks for a human decision on {request.module!r} step {request.step}, but the recording has no more"
            )
        index, event = self._decisions[self._next]
        self._next += 1
        if (event.module, event.step) != (request.module, request.step):
            raise ReplayDivergenceError(
                f"record {index}: the recorded decision is on {event.module!r} step {event.step}, the replay asks about {request.module!r} step {request.step}",
                index=index,
            )
        return Decision(decision=event.decision, edits=event.edits, note=event.note)


def _steps(events: Sequence[Any]) -> list[tuple[ModuleStart, ModuleEnd | None]]:
    starts = [e for e in events if isinstance(e, ModuleStart)]
    ends = {e.step: e for e in events if isinstance(e, ModuleEnd)}
    return [(s, ends.get(s.step)) for s in starts]


def _end(events: Sequence[Any]) -> tuple[str | None, str | None]:
    end = next((e for e in events if isinstance(e, RunEnd)), None)
    error = next((e for e in events if isinstance(e, RunErrorEvent)), None)
    return (end.status if end else None), (error.error_type if error else None)


def _compare(
    recording: _Recording, out: Path, *, ok_status: StepStatus
) -> tuple[list[StepComparison], FieldDiff | None, bool]:
    new_events = read_trace(out) if out.is_file() else []
    old_steps, new_steps = _steps(recording.events), _steps(new_events)
    steps = []
    for i in range(max(len(old_steps), len(new_steps))):
        old = old_steps[i] if i < len(old_steps) else None
        new = new_steps[i] if i < len(new_steps) else None
        if new is None:
            assert old is not None
            steps.append(StepComparison(step=i, module=old[0].module, status="missing"))
            continue
        if old is None:
            steps.append(StepComparison(step=i, module=new[0].module, status="extra"))
            continue
        diff = _step_diff(old, new, recording.specs.get(old[0].module))
        status: StepStatus = ok_status if diff is None else "changed"
        steps.append(StepComparison(step=i, module=old[0].module, status=status, diff=diff))
    old_end = recording.end.final_state
    new_run_end = next((e for e in new_events if isinstance(e, RunEnd)), None)
    new_state = new_run_end.final_state if new_run_end else None
    order = [*recording.manifest.graph.get("inputs", [])]
    nodes = recording.manifest.graph.get("nodes", [])
    order += [f for name in nodes if name in recording.specs for f in recording.specs[name].writes]
    final_diff = first_difference(old_end, new_state, "final_state", order=order)
    return steps, final_diff, _end(recording.events) == _end(new_events)


def _step_diff(
    old: tuple[ModuleStart, ModuleEnd | None],
    new: tuple[ModuleStart, ModuleEnd | None],
    spec: ModuleSpec | None,
) -> FieldDiff | None:
    """What the step produced first (in the spec's ``writes`` order), then what it was given; if
    only one side of the step failed, what it was given explains it better."""
    if old[0].module != new[0].module:
        return field_diff("module", old[0].module, new[0].module)
    reads = first_difference(old[0].reads, new[0].reads, "reads", order=spec.reads if spec else ())
    if old[1] is not None and new[1] is not None:
        writes = spec.writes if spec else ()
        return first_difference(old[1].output, new[1].output, order=writes) or reads
    if old[1] is None and new[1] is None:
        return reads
    failed = "(step failed)"
    return reads or field_diff(
        "output", old[1].output if old[1] else failed, new[1].output if new[1] else failed
    )


def _matches(steps: list[StepComparison], final_diff: FieldDiff | None, same_end: bool) -> bool:
    # same_end: same status and error type, so a recorded failure replayed as that failure matches.
    ok = all(s.status in ("replayed", "identical") for s in steps)
    return ok and same_end and final_diff is None

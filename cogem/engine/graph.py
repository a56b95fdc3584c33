"""Reasoner: a LangGraph ``StateGraph`` compiled from module specs and edges."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, TypedDict

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime as GraphRuntime
from langgraph.types import interrupt

from cogem.engine.approval import APPROVAL_NODE, build_request, check_decision
from cogem.engine.runtime import RunContext
from cogem.engine.step import run_step
from cogem.errors import GraphError
from cogem.spec import ModuleSpec, load_specs
from cogem.trace.events import HumanDecision

__all__ = ["END", "RUN_KEY", "START", "Reasoner"]

RUN_KEY = "cogem_run"
"""The state channel where each node leaves the run's position (see ``RunContext.position``), so
the checkpoint taken after a step says how far the trace had got. Stripped from results."""

Router = Callable[[Mapping[str, Any]], str]
DEFAULT_INPUTS = ("scenario",)


class Reasoner:
    """A graph of modules. Build it, then :meth:`run` it (see :mod:`cogem.engine.run`).

    >>> from cogem.spec import load_specs
    >>> specs = load_specs()
    >>> r = Reasoner([specs["perceive"], specs["recall"]])
    >>> r.add_edge(START, "perceive").add_edge("perceive", "recall").add_edge("recall", END).nodes
    ['perceive', 'recall']

    Loops are allowed only with a declared bound: a module on a cycle gets ``max_visits > 1`` and
    running it more often than that is a :class:`~cogem.errors.LoopBoundError`, never a hang.
    """

    def __init__(
        self, modules: Sequence[ModuleSpec], *, inputs: Sequence[str] = DEFAULT_INPUTS
    ) -> None:
        self._specs: dict[str, ModuleSpec] = {}
        self._max_visits: dict[str, int] = {}
        self._edges: list[tuple[str, str]] = []
        self._routers: dict[str, tuple[Router, list[str]]] = {}
        self.inputs = tuple(inputs)
        self._compiled: CompiledStateGraph[Any, Any, Any, Any] | None = None
        for spec in modules:
            self.add_module(spec)

    # -- building ---------------------------------------------------------------------------
    @classmethod
    def default(
        cls, specs: Mapping[str, ModuleSpec] | None = None, *, remember: bool = False
    ) -> Reasoner:
        """The built-in reasoner: perceive -> recall -> judge -> plan (-> remember, which stores
        the episode in memory)."""
        specs = specs or load_specs()
        order = ["perceive", "recall", "judge", "plan"] + (["remember"] if remember else [])
        missing = [name for name in order if name not in specs]
        if missing:
            raise GraphError(f"the default reasoner needs module specs {missing}")
        return cls.sequential([specs[name] for name in order])

    @classmethod
    def sequential(cls, modules: Sequence[ModuleSpec]) -> Reasoner:
        """Modules run one after another in the given order."""
        reasoner = cls(modules)
        names = [START, *(m.name for m in modules), END]
        for a, b in itertools.pairwise(names):
            reasoner.add_edge(a, b)
        return reasoner

    def add_module(self, spec: ModuleSpec, *, max_visits: int = 1) -> Reasoner:
        if spec.name in self._specs:
            raise GraphError(f"module {spec.name!r} is already in the graph")
        if spec.name in (START, END, RUN_KEY, APPROVAL_NODE) or spec.name in self.inputs:
            raise GraphError(f"module name {spec.name!r} is reserved")
        if max_visits < 1:
            raise GraphError(f"module {spec.name!r}: max_visits must be >= 1")
        self._specs[spec.name] = spec
        self._max_visits[spec.name] = max_visits
        self._compiled = None
        return self

    def add_edge(self, source: str, target: str) -> Reasoner:
        self._check_node(source, allow=START)
        self._check_node(target, allow=END)
        self._edges.append((source, target))
        self._compiled = None
        return self

    def add_conditional_edges(
        self, source: str, router: Router, targets: Sequence[str]
    ) -> Reasoner:
        """After ``source``, go to ``router(state)``, which must be one of ``targets``."""
        self._check_node(source)
        for target in targets:
            self._check_node(target, allow=END)
        if source in self._routers:
            raise GraphError(f"module {source!r} already has conditional edges")
        self._routers[source] = (router, list(targets))
        self._compiled = None
        return self

    def _check_node(self, name: str, *, allow: str | None = None) -> None:
        if name != allow and name not in self._specs:
            raise GraphError(f"unknown module {name!r}; add it with add_module() first")

    # -- introspection ----------------------------------------------------------------------
    @property
    def nodes(self) -> list[str]:
        return list(self._specs)

    @property
    def specs(self) -> dict[str, ModuleSpec]:
        return dict(self._specs)

    def describe(self) -> dict[str, Any]:
        """The graph as recorded in the run manifest."""
        return {
            "inputs": list(self.inputs),
            "nodes": self.nodes,
            "edges": [list(e) for e in self._edges],
            "conditional": {s: targets for s, (_, targets) in self._routers.items()},
            "max_visits": dict(self._max_visits),
        }

    @property
    def step_limit(self) -> int:
        return sum(self._max_visits.values())

    def run(
        self,
        scenario: str,
        runtime: Any,
        *,
        trace_path: Any = None,
        on_event: Callable[[Any], None] | None = None,
        approve: Any = None,
        approve_after: str = "plan",
        thread: str | None = None,
        checkpointer: Any = None,
    ) -> Any:
        """Run on ``scenario`` with ``runtime``; returns a :class:`~cogem.engine.run.RunResult`.

        ``thread`` makes the run durable (checkpointed after every step; see :meth:`resume`).
        ``approve`` pauses the run after ``approve_after`` for a human decision: a callable
        (:class:`~cogem.engine.approval.ApprovalRequest` -> :class:`~cogem.engine.approval.Decision`),
        or ``True`` with a ``thread`` to return a paused result to :meth:`resume` later.
        """
        from cogem.engine.run import run_reasoner  # run.py imports this module

        return run_reasoner(
            self, scenario, runtime, trace_path=trace_path, on_event=on_event, approve=approve,
            approve_after=approve_after, thread=thread, checkpointer=checkpointer,
        )  # fmt: skip

    def resume(
        self,
        thread: str,
        runtime: Any,
        *,
        on_event: Callable[[Any], None] | None = None,
        approve: Any = None,
        checkpointer: Any = None,
    ) -> Any:
        """Continue the durable run ``thread`` from its last completed step (or its approval
        pause, answered by ``approve``: a callable or a :class:`~cogem.engine.approval.Decision`)."""
        from cogem.engine.durable import resume_reasoner

        return resume_reasoner(
            self, thread, runtime, on_event=on_event, approve=approve, checkpointer=checkpointer
        )

    # -- compiling --------------------------------------------------------------------------
    def validate(self) -> None:
        """Check the graph is runnable: a start, an end, declared reads available, bounded loops."""
        if not self._specs:
            raise GraphError("the reasoner has no modules")
        if not any(s == START for s, _ in self._edges):
            raise GraphError("the reasoner has no edge from START")
        writers: dict[str, str] = {}
        for spec in self._specs.values():
            for name in spec.writes:
                if name == RUN_KEY:
                    raise GraphError(f"module {spec.name!r}: field name {RUN_KEY!r} is reserved")
                if name in writers or name in self.inputs:
                    raise GraphError(
                        f"field {name!r} is written by both {writers.get(name, 'the input')!r} and {spec.name!r}"
                    )
                writers[name] = spec.name
        for spec in self._specs.values():
            unknown = [f for f in spec.reads if f not in writers and f not in self.inputs]
            if unknown:
                raise GraphError(
                    f"module {spec.name!r} reads {unknown}, which no module writes and no input provides"
                )
        successors: dict[str, set[str]] = {}
        for s, t in self._edges:
            successors.setdefault(s, set()).add(t)
        for s, (_, targets) in self._routers.items():
            successors.setdefault(s, set()).update(targets)
        for name in self._specs:
            if name not in successors:
                raise GraphError(f"module {name!r} has no outgoing edge (add one to END?)")
        for name in _on_cycles(successors):
            if self._max_visits[name] < 2:
                raise GraphError(
                    f"module {name!r} is on a loop; declare its bound with add_module(..., max_visits=N)"
                )

    def compile(
        self,
        *,
        approve_after: str | None = None,
        checkpointer: BaseCheckpointSaver[Any] | None = None,
    ) -> CompiledStateGraph[Any, Any, Any, Any]:
        """Compile to a LangGraph graph whose nodes take a :class:`RunContext`.

        ``approve_after`` puts a human-approval gate after that module; ``checkpointer`` makes the
        graph durable. The plain graph is compiled once and cached.
        """
        plain = approve_after is None and checkpointer is None
        if plain and self._compiled is not None:
            return self._compiled
        self.validate()
        fields: dict[str, Any] = {name: Any for name in self.inputs}
        for spec in self._specs.values():
            fields.update({name: Any for name in spec.writes})
        fields[RUN_KEY] = Annotated[dict[str, Any], _furthest]
        state_type = TypedDict("ReasonerState", fields, total=False)  # type: ignore[misc]
        graph: StateGraph[Any, Any, Any, Any] = StateGraph(state_type, context_schema=RunContext)
        for name, spec in self._specs.items():
            graph.add_node(name, _node(spec, self._max_visits[name]))
        gated = approve_after
        if gated is not None:
            if gated not in self._specs:
                raise GraphError(f"cannot approve after {gated!r}: no such module in the reasoner")
            graph.add_node(APPROVAL_NODE, _approval_node(self._specs[gated]))
            graph.add_edge(gated, APPROVAL_NODE)
        for s, t in self._edges:
            if s != gated:
                graph.add_edge(s, t)
        for s, (router, targets) in self._routers.items():
            if s != gated:
                graph.add_conditional_edges(s, _checked_router(s, router, targets), targets)
        if gated is not None:
            static = [t for s, t in self._edges if s == gated]
            routed = self._routers.get(gated)
            targets = sorted({*static, *(routed[1] if routed else []), END})
            graph.add_conditional_edges(
                APPROVAL_NODE, _after_approval(gated, static, routed), targets
            )
        compiled = graph.compile(checkpointer=checkpointer)
        if plain:
            self._compiled = compiled
        return compiled


def _furthest(old: dict[str, Any] | None, new: dict[str, Any] | None) -> dict[str, Any]:
    """Reducer for RUN_KEY: the position furthest along the trace wins."""
    if old is None:
        return new or {}
    if new is None:
        return old
    return new if new.get("records", 0) >= old.get("records", 0) else old


def _node(spec: ModuleSpec, max_visits: int) -> Callable[..., dict[str, Any]]:
    def node(state: dict[str, Any], runtime: GraphRuntime[RunContext]) -> dict[str, Any]:
        ctx = runtime.context
        output = run_step(spec, state, ctx, max_visits=max_visits)
        # run_step's last record is this step's module_end: remember it for an approval gate.
        ctx.ends[spec.name] = (ctx.steps - 1, ctx.trace.head)
        return {**output, RUN_KEY: ctx.position()}

    node.__name__ = f"module_{spec.name}"
    return node


def _approval_node(spec: ModuleSpec) -> Callable[..., dict[str, Any]]:
    def gate(state: dict[str, Any], runtime: GraphRuntime[RunContext]) -> dict[str, Any]:
        ctx = runtime.context
        step, reviewed = ctx.ends[spec.name]
        request = build_request(spec, state, step)
        # LangGraph re-runs this node from the top when resumed, and interrupt() then returns the
        # decision: nothing may be recorded before this line, or it would be recorded twice.
        decision = check_decision(request, interrupt(request.model_dump(mode="json")))
        ctx.current = None
        ctx.emit(
            HumanDecision,
            module=spec.name,
            step=step,
            reviewed=reviewed,
            decision=decision.decision,
            edits=decision.edits,
            note=decision.note,
        )
        position = ctx.position()
        if decision.decision == "reject":
            position["rejected"] = True
        return {**decision.edits, RUN_KEY: position}

    gate.__name__ = f"approve_{spec.name}"
    return gate


def _after_approval(
    gated: str, static: list[str], routed: tuple[Router, list[str]] | None
) -> Callable[[Mapping[str, Any]], str | list[str]]:
    def route(state: Mapping[str, Any]) -> str | list[str]:
        if (state.get(RUN_KEY) or {}).get("rejected"):
            return END
        if routed is not None:
            return _checked_router(gated, *routed)(state)
        return static[0] if len(static) == 1 else static

    return route


def _checked_router(
    source: str, router: Router, targets: list[str]
) -> Callable[[Mapping[str, Any]], str]:
    def route(state: Mapping[str, Any]) -> str:
        target = router(state)
        if target not in targets:
            raise GraphError(f"router after {source!r} chose {target!r}, not one of {targets}")
        return target

    return route


def _on_cycles(successors: Mapping[str, set[str]]) -> set[str]:
    """Nodes that can reach themselves."""
    on_cycle = set()
    for start in successors:
        seen: set[str] = set()
        frontier = list(successors.get(start, ()))
        while frontier:
            node = frontier.pop()
            if node == start:
                on_cycle.add(start)
                break
            if node not in seen:
                seen.add(node)
                frontier.extend(successors.get(node, ()))
    return on_cycle

"""Reasoner: a LangGraph ``StateGraph`` compiled from module specs and edges."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime as GraphRuntime

from cogem.engine.runtime import RunContext
from cogem.engine.step import run_step
from cogem.errors import GraphError
from cogem.spec import ModuleSpec, load_specs

__all__ = ["END", "START", "Reasoner"]

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
        if spec.name in (START, END) or spec.name in self.inputs:
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
    ) -> Any:
        """Run on ``scenario`` with ``runtime``; returns a :class:`~cogem.engine.run.RunResult`."""
        from cogem.engine.run import run_reasoner  # run.py imports this module

        return run_reasoner(self, scenario, runtime, trace_path=trace_path, on_event=on_event)

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

    def compile(self) -> CompiledStateGraph[Any, Any, Any, Any]:
        """Compile (once) to a LangGraph graph whose nodes take a :class:`RunContext`."""
        if self._compiled is not None:
            return self._compiled
        self.validate()
        fields: dict[str, Any] = {name: Any for name in self.inputs}
        for spec in self._specs.values():
            fields.update({name: Any for name in spec.writes})
        state_type = TypedDict("ReasonerState", fields, total=False)  # type: ignore[misc]
        graph: StateGraph[Any, Any, Any, Any] = StateGraph(state_type, context_schema=RunContext)
        for name, spec in self._specs.items():
            graph.add_node(name, _node(spec, self._max_visits[name]))
        for s, t in self._edges:
            graph.add_edge(s, t)
        for s, (router, targets) in self._routers.items():
            graph.add_conditional_edges(s, _checked_router(s, router, targets), targets)
        self._compiled = graph.compile()
        return self._compiled


def _node(spec: ModuleSpec, max_visits: int) -> Callable[..., dict[str, Any]]:
    def node(state: dict[str, Any], runtime: GraphRuntime[RunContext]) -> dict[str, Any]:
        return run_step(spec, state, runtime.context, max_visits=max_visits)

    node.__name__ = f"module_{spec.name}"
    return node


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

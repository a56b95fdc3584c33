"""Hypothesis strategies for whole reasoners: random module specs and graphs of them, with fixed
and conditional edges and loops whose bounds are declared (and honoured by the routers)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hypothesis import strategies as st
from langgraph.runtime import get_runtime

from cogem.engine.graph import END, START, Reasoner, _on_cycles
from cogem.engine.runtime import RunContext
from cogem.errors import UsageError
from cogem.schema import CONST_FROM, ENUM_FROM
from cogem.spec import ModuleSpec

__all__ = ["module_specs", "reasoners"]

_OPTION_SETS = (("yes", "no"), ("again", "done"), ("a", "b", "c"), ("left", "right", "stay"))


def _string_lists(spec: ModuleSpec) -> list[str]:
    """Fields ``spec`` writes that hold lists of strings (sources for ``x-cogem-enum-from``)."""
    found = [spec.retrieval.ids_field] if spec.retrieval else []
    for name, prop in ((spec.output_schema or {}).get("properties") or {}).items():
        items = prop.get("items", {})
        if prop.get("type") == "array" and items.get("type") == "string" and ENUM_FROM not in items:
            found.append(name)
    return found


@st.composite
def _field(
    draw: st.DrawFn, kind: str, lists: Sequence[str], choice: Mapping[str, Any] | None
) -> dict[str, Any]:
    if kind == "text":
        low = draw(st.integers(0, 3))
        return {"type": "string", "minLength": low, "maxLength": draw(st.integers(low + 1, 120))}
    if kind == "label":
        return {"type": "string", "enum": list(draw(st.sampled_from(_OPTION_SETS)))}
    if kind == "tags":
        low = draw(st.integers(0, 2))
        item = {"type": "string", "minLength": 1, "maxLength": 30}
        high = draw(st.integers(max(1, low), 4))
        return {"type": "array", "minItems": low, "maxItems": high, "items": item}
    if kind == "count":
        return {"type": "integer", "minimum": 0, "maximum": draw(st.integers(0, 10))}
    if kind == "flag":
        return {"type": "boolean"}
    if kind == "picks":  # may cite only what an earlier module produced in this run
        items = {"type": "string", ENUM_FROM: draw(st.sampled_from(list(lists)))}
        return {"type": "array", "maxItems": draw(st.integers(1, 3)), "items": items}
    assert choice is not None  # "mode": fixed by the module's own choice
    mapping = {option: f"mode_{i}" for i, option in enumerate(choice["options"])}
    return {"type": "string", CONST_FROM: {"field": choice["field"], "map": mapping}}


def _lines(fields: Sequence[str]) -> str:
    return "".join(f"\n{f}: {{{f}}}" for f in fields)


@st.composite
def _module_spec(
    draw: st.DrawFn, name: str, reads_from: Sequence[str], lists: Sequence[str], retrieval: bool
) -> ModuleSpec:
    reads = draw(st.lists(st.sampled_from(list(reads_from)), unique=True, max_size=3))
    lists = [f for f in lists if f in reads]
    mode = draw(st.sampled_from(["choice", "generate", "both"]))
    spec: dict[str, Any] = {
        "name": name,
        "purpose": f"Generated module {name} for property tests.",
        "reads": reads,
        "writes": [],
        "untrusted": draw(st.lists(st.sampled_from(reads), unique=True)) if reads else [],
        "system": draw(st.sampled_from(["", "You reply with JSON only."])),
        "bounds": {
            "max_new_tokens": draw(st.integers(16, 256)),
            "retries": draw(st.integers(0, 2)),
        },
    }
    choice: dict[str, Any] | None = None
    if mode != "generate":
        choice = {
            "field": f"{name}_choice",
            "probs_field": f"{name}_probs",
            "options": list(draw(st.sampled_from(_OPTION_SETS))),
            "prompt": f"Decide for {name}.{_lines(reads)}\nAnswer {{options}}.",
        }
        spec.update(choice=choice, writes=[choice["field"], choice["probs_field"]])
    if mode != "choice":
        kinds = ["text", "label", "tags", "count", "flag"]
        kinds += (["picks"] if lists else []) + (["mode"] if choice else [])
        chosen = draw(st.lists(st.sampled_from(kinds), unique=True, min_size=1, max_size=3))
        props = {f"{name}_{k}": draw(_field(k, lists, choice)) for k in chosen}
        shown = reads + ([choice["field"]] if choice else [])
        suffix = draw(st.sampled_from(["", '\nReply as JSON like {{"k": 1}}.']))
        spec["prompt"] = f"Work for {name}.{_lines(shown)}{suffix}"
        spec["writes"] += list(props)
        queries = [n for n, p in props.items() if p.get("type") == "string" and "minLength" in p]
        if retrieval and queries and draw(st.booleans()):
            props[queries[0]]["minLength"] = max(1, props[queries[0]]["minLength"])
            hits, ids = f"{name}_hits", f"{name}_ids"
            k = draw(st.integers(1, 4))
            spec["retrieval"] = {"query_field": queries[0], "k": k, "hits_field": hits,
                                 "ids_field": ids}  # fmt: skip
            spec["writes"] += [hits, ids]
        spec["output_schema"] = {"type": "object", "additionalProperties": False,
                                 "required": list(props), "properties": props}  # fmt: skip
    return ModuleSpec.model_validate(spec)


def module_specs(
    name: str = "m0",
    *,
    reads_from: Sequence[str] = ("scenario",),
    lists: Sequence[str] = (),
    retrieval: bool = True,
) -> st.SearchStrategy[ModuleSpec]:
    """Valid :class:`ModuleSpec` s named ``name``: choice modules, generating modules with small
    schemas (strings, enums, arrays, integers, booleans, ``x-cogem-const-from`` on the module's
    own choice, ``x-cogem-enum-from`` on a field in ``lists``) and optionally a memory retrieval.

    Reads are drawn from ``reads_from``; ``lists`` names those of them holding lists of strings.
    Written fields are prefixed with ``name``, so specs with different names never collide.
    """
    if not set(lists) <= set(reads_from):
        raise UsageError("module_specs: every field in lists must also be in reads_from")
    return _module_spec(name, tuple(reads_from), tuple(lists), retrieval)


class _Router:
    """Routes after ``module`` on its choice: ``options[0]`` goes to ``first``, else ``other``.

    As a loop back (``bound`` set) it goes back only while the module has run fewer than ``bound``
    times in *this* run — counted by the run's own context, which is new for every run — so a
    loop ends within its declared ``max_visits`` whatever the model answers.
    """

    def __init__(self, module: str, field: str, option: str, first: str, other: str,
                 bound: int | None = None) -> None:  # fmt: skip
        self.module, self.field, self.option = module, field, option
        self.first, self.other, self.bound = first, other, bound
        self.__name__ = f"route_after_{module}"

    def __call__(self, state: Mapping[str, Any]) -> str:
        if state.get(self.field) != self.option:
            return self.other
        if (
            self.bound is not None
            and get_runtime(RunContext).context.visits.get(self.module, 0) >= self.bound
        ):
            return self.other
        return self.first


@st.composite
def _reasoner(draw: st.DrawFn, max_modules: int, loops: bool, retrieval: bool) -> Reasoner:
    count = draw(st.integers(1, max_modules))
    names = [f"m{i}" for i in range(count)]
    specs: list[ModuleSpec] = []
    available: list[str] = ["scenario"]
    lists: list[str] = []
    for name in names:
        spec = draw(module_specs(name, reads_from=available, lists=lists, retrieval=retrieval))
        specs.append(spec)
        available += spec.writes
        lists += _string_lists(spec)
    targets = [*names, END]
    # Each module has one way out, always forward (skipping is allowed), so runs are sequential.
    forward = {i: draw(st.integers(i + 1, count)) for i in range(count)}
    routers: dict[int, _Router] = {}
    loop_of: dict[int, int] = {}  # module index -> bound of the loop it may be on
    free = 0  # loops are disjoint, so their bounds never multiply
    for j, spec in enumerate(specs):
        if spec.choice is None or not draw(st.booleans()):
            continue
        field, first_option = spec.choice.field, spec.choice.options[0]
        if loops and draw(st.booleans()):
            back, bound = draw(st.integers(free, j)), draw(st.integers(2, 3))
            routers[j] = _Router(names[j], field, first_option, names[back],
                                 targets[forward[j]], bound)  # fmt: skip
            loop_of.update(dict.fromkeys(range(back, j + 1), bound))
            free = j + 1
        elif forward[j] < count:
            other = draw(st.integers(forward[j] + 1, count))
            routers[j] = _Router(names[j], field, first_option, targets[forward[j]], targets[other])
    successors = {names[i]: {targets[forward[i]]} for i in range(count)}
    for j, router in routers.items():
        successors[names[j]] = {router.first, router.other}
    cyclic = _on_cycles(successors)
    reasoner = Reasoner([])
    for i, spec in enumerate(specs):
        reasoner.add_module(spec, max_visits=loop_of[i] if spec.name in cyclic else 1)
    reasoner.add_edge(START, names[0])
    for i, name in enumerate(names):
        if i in routers:
            router = routers[i]
            reasoner.add_conditional_edges(name, router, [router.first, router.other])
        else:
            reasoner.add_edge(name, targets[forward[i]])
    reasoner.validate()
    return reasoner


def reasoners(
    max_modules: int = 5, *, loops: bool = True, retrieval: bool = True
) -> st.SearchStrategy[Reasoner]:
    """Whole valid reasoners of 1..``max_modules`` generated modules (see :func:`module_specs`),
    each reading ``scenario`` and fields of earlier modules.

    Fixed edges run from ``START`` forward (possibly skipping modules) to ``END``; choice modules
    may instead route on their choice, forward or — with ``loops`` — back to an earlier module,
    making a loop whose modules declare ``max_visits`` 2..3. Loop routers stop within the bound,
    so runs end without a ``LoopBoundError`` whatever the model answers. With ``retrieval``,
    modules may search memory (the runtime then needs one, as ``fake_runtime()`` has).
    """
    if max_modules < 1:
        raise UsageError(f"reasoners: max_modules must be >= 1, got {max_modules}")
    return _reasoner(max_modules, loops, retrieval)

"""Trace invariants: the rules every run must keep, each a named function over a trace.

A rule takes the parsed records of one trace as ``(index, event)`` pairs and returns the
:class:`Problem` s it finds, each naming the record index and the rule. ``cogem audit`` runs all of
them (:data:`RULES`); they need only the trace, never the model, the memory or the graph code.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import fastjsonschema
import jsonschema
from pydantic import BaseModel, ConfigDict

from cogem.canonical import sha256_json
from cogem.schema import CONST_FROM, ENUM_FROM
from cogem.trace.events import (
    LlmCall,
    ModuleEnd,
    ModuleStart,
    Retrieval,
    RunEnd,
    RunStart,
    ValidationRetry,
)

__all__ = ["RULES", "Problem", "Rule"]

PROB_TOLERANCE = 1e-6
START, END = "__start__", "__end__"


class Problem(BaseModel):
    """One broken rule at one record."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    index: int
    rule: str
    message: str


Records = Sequence[tuple[int, Any]]
Rule = Callable[[Records], list[Problem]]


def _manifest(records: Records) -> Any:
    return next((e.manifest for _, e in records if isinstance(e, RunStart)), None)


def spec_hashes(records: Records) -> list[Problem]:
    """Each spec in the manifest hashes to the hash it is listed under, and every module step
    names that hash: the exact prompt and schema that ran are provable."""
    manifest = _manifest(records)
    if manifest is None:
        return []
    found = []
    start = records[0][0]
    for name, spec in manifest.specs.items():
        if sha256_json(spec) != manifest.modules.get(name):
            found.append(
                Problem(
                    index=start,
                    rule="spec_hash",
                    message=f"record {start}: spec of module {name!r} does not match its listed hash",
                )
            )
    for index, event in records:
        if isinstance(event, ModuleStart) and manifest.modules.get(event.module) != event.spec_hash:
            found.append(
                Problem(
                    index=index,
                    rule="spec_hash",
                    message=f"record {index}: module {event.module!r} ran a spec the manifest does not name",
                )
            )
    return found


Check = Callable[[Any], str | None]
_checks: dict[str, Check] = {}


def _compile_check(schema: dict[str, Any]) -> Check:
    """A fast validity check for ``schema``, returning an error message or None.

    fastjsonschema compiles a schema to Python (~20x faster than jsonschema, which matters for
    long traces); jsonschema then explains a failure, and is the fallback for any schema
    fastjsonschema cannot compile.
    """
    slow = jsonschema.Draft202012Validator(schema)

    def explain(instance: Any) -> str | None:
        error = jsonschema.exceptions.best_match(slow.iter_errors(instance))
        return None if error is None else error.message

    try:
        fast = fastjsonschema.compile(schema)
    except fastjsonschema.JsonSchemaDefinitionException:
        return explain

    def check(instance: Any) -> str | None:
        try:
            fast(instance)
        except fastjsonschema.JsonSchemaValueException as exc:
            return explain(instance) or exc.message
        return None

    return check


def output_schemas(records: Records) -> list[Problem]:
    """Every module output validates against the schema whose hash its record names."""
    found = []
    for index, event in records:
        if not isinstance(event, ModuleEnd):
            continue
        if sha256_json(event.output_schema) != event.schema_hash:
            found.append(
                Problem(
                    index=index,
                    rule="schema_hash",
                    message=f"record {index}: output_schema does not match schema_hash",
                )
            )
            continue
        check = _checks.get(event.schema_hash)
        if check is None:  # compiled once per schema: a long trace repeats a few schemas
            try:
                jsonschema.Draft202012Validator.check_schema(event.output_schema)
            except jsonschema.SchemaError as exc:
                found.append(
                    Problem(
                        index=index,
                        rule="output_schema",
                        message=f"record {index}: recorded schema is invalid: {exc.message}",
                    )
                )
                continue
            check = _checks[event.schema_hash] = _compile_check(event.output_schema)
        error = check(event.output)
        if error is not None:
            found.append(
                Problem(
                    index=index,
                    rule="output_schema",
                    message=f"record {index}: module {event.module!r} output fails its schema: {error}",
                )
            )
    return found


def probabilities(records: Records) -> list[Problem]:
    """Option probabilities match the options, are non-negative and sum to 1 (within 1e-6)."""
    found = []
    for index, event in records:
        if isinstance(event, LlmCall) and event.probs is not None:
            total = math.fsum(event.probs)
            if event.options is None or len(event.options) != len(event.probs):
                found.append(
                    Problem(
                        index=index,
                        rule="probs",
                        message=f"record {index}: probabilities do not match the options",
                    )
                )
            elif abs(total - 1.0) > PROB_TOLERANCE or any(p < 0 for p in event.probs):
                found.append(
                    Problem(
                        index=index,
                        rule="probs",
                        message=f"record {index}: option probabilities sum to {total!r}, not 1",
                    )
                )
    return found


def step_structure(records: Records) -> list[Problem]:
    """Module steps open and close in order, numbered 0, 1, 2, ...; every model call, retrieval
    and retry belongs to the module step that is open when it happens."""
    found = []
    open_step: ModuleStart | None = None
    next_step = 0
    for index, event in records:
        if isinstance(event, ModuleStart):
            if open_step is not None:
                found.append(
                    Problem(
                        index=index,
                        rule="steps",
                        message=f"record {index}: module {event.module!r} starts inside step {open_step.step}",
                    )
                )
            if event.step != next_step:
                found.append(
                    Problem(
                        index=index,
                        rule="steps",
                        message=f"record {index}: step {event.step} should be step {next_step}",
                    )
                )
            open_step, next_step = event, event.step + 1
        elif isinstance(event, LlmCall | Retrieval | ValidationRetry | ModuleEnd):
            if open_step is None or (event.module, event.step) != (
                open_step.module,
                open_step.step,
            ):
                what = "model call" if isinstance(event, LlmCall) else event.type
                found.append(
                    Problem(
                        index=index,
                        rule="steps",
                        message=f"record {index}: {what} of module {event.module!r} step {event.step} is outside that module step",
                    )
                )
            if isinstance(event, ModuleEnd):
                open_step = None
    return found


def _module_steps(records: Records) -> Iterator[tuple[int, ModuleStart]]:
    return ((i, e) for i, e in records if isinstance(e, ModuleStart))


def graph_edges(records: Records) -> list[Problem]:
    """Steps follow edges that exist in the recorded graph, and a finished run ends on an edge
    to END."""
    manifest = _manifest(records)
    if manifest is None:
        return []
    graph = manifest.graph
    successors: dict[str, set[str]] = {}
    for source, target in graph.get("edges", []):
        successors.setdefault(source, set()).add(target)
    for source, targets in graph.get("conditional", {}).items():
        successors.setdefault(source, set()).update(targets)
    found = []
    previous = START
    for index, event in _module_steps(records):
        if event.module not in successors.get(previous, set()):
            found.append(
                Problem(
                    index=index,
                    rule="edges",
                    message=f"record {index}: no edge {previous!r} -> {event.module!r} in the recorded graph",
                )
            )
        previous = event.module
    for index, event in records:
        if (
            isinstance(event, RunEnd)
            and event.status == "ok"
            and END not in successors.get(previous, set())
        ):
            found.append(
                Problem(
                    index=index,
                    rule="edges",
                    message=f"record {index}: the run ended after {previous!r}, which has no edge to END",
                )
            )
    return found


def loop_bounds(records: Records) -> list[Problem]:
    """No module runs more often than its declared ``max_visits``."""
    manifest = _manifest(records)
    if manifest is None:
        return []
    bounds = manifest.graph.get("max_visits", {})
    visits: dict[str, int] = {}
    found = []
    for index, event in _module_steps(records):
        visits[event.module] = visits.get(event.module, 0) + 1
        bound = bounds.get(event.module, 1)
        if visits[event.module] > bound:
            found.append(
                Problem(
                    index=index,
                    rule="loop_bound",
                    message=f"record {index}: module {event.module!r} runs {visits[event.module]} times; its bound is {bound}",
                )
            )
    return found


def _with_state(records: Records) -> Iterator[tuple[int, Any, dict[str, Any], dict[str, Any]]]:
    """Each record with the run state *before* it and its module's spec (``{}`` if none),
    rebuilding the state from the inputs and the recorded module outputs."""
    manifest = _manifest(records)
    if manifest is None:
        return
    state: dict[str, Any] = {}
    for index, event in records:
        if isinstance(event, RunStart):
            state = dict(event.inputs)
        spec = manifest.specs.get(getattr(event, "module", None) or "", {})
        yield index, event, state, spec
        if isinstance(event, ModuleEnd):
            state = {**state, **event.output}


def declared_reads(records: Records) -> list[Problem]:
    """Each module saw exactly the fields its spec declares it reads, with the values the state
    held (transparency: a module cannot peek at anything else)."""
    return [
        Problem(
            index=index,
            rule="reads",
            message=f"record {index}: module {event.module!r} saw fields or values other than its declared reads",
        )
        for index, event, state, spec in _with_state(records)
        if isinstance(event, ModuleStart)
        and event.reads != {name: state.get(name) for name in spec.get("reads", [])}
    ]


def declared_writes(records: Records) -> list[Problem]:
    """Each module wrote exactly the fields its spec declares it writes."""
    return [
        Problem(
            index=index,
            rule="writes",
            message=f"record {index}: module {event.module!r} wrote {sorted(event.output)}, not its declared writes",
        )
        for index, event, _, spec in _with_state(records)
        if isinstance(event, ModuleEnd) and sorted(event.output) != sorted(spec.get("writes", []))
    ]


def cited_ids_retrieved(records: Records) -> list[Problem]:
    """Values drawn from the state (``x-cogem-enum-from``, e.g. cited memory ids) were really
    there earlier in this run: a judge cites only what recall retrieved."""
    found = []
    for index, event, state, spec in _with_state(records):
        if not isinstance(event, ModuleEnd):
            continue
        for field, source in _enum_sources(spec.get("output_schema") or {}):
            value = event.output.get(field)
            stray = [
                v
                for v in (value if isinstance(value, list) else [value])
                if v is not None and v not in set(state.get(source) or [])
            ]
            if stray:
                found.append(
                    Problem(
                        index=index,
                        rule="citations",
                        message=f"record {index}: module {event.module!r} cites {stray} in {field!r}, not in {source!r} of this run",
                    )
                )
    return found


def derived_fields(records: Records) -> list[Problem]:
    """Fields fixed by the state (``x-cogem-const-from``) follow it: a plan's stance follows the
    verdict, so no plan carries out an action the judge found wrong."""
    found = []
    for index, event, state, spec in _with_state(records):
        if not isinstance(event, ModuleEnd):
            continue
        # A module's own choice (decided first, by option scoring) may fix its generated fields.
        choice = (spec.get("choice") or {}).get("field")
        seen = {**state, **({choice: event.output[choice]} if choice in event.output else {})}
        for field, rule in _const_sources(spec.get("output_schema") or {}):
            source = seen.get(rule["field"])
            expected = rule["map"].get(source) if isinstance(rule.get("map"), dict) else source
            if field in event.output and event.output[field] != expected:
                found.append(
                    Problem(
                        index=index,
                        rule="derived",
                        message=f"record {index}: module {event.module!r} set {field!r} to {event.output[field]!r}, but {rule['field']}={source!r} requires {expected!r}",
                    )
                )
    return found


def final_state(records: Records) -> list[Problem]:
    """A finished run's final state is exactly the inputs plus every step's recorded output."""
    return [
        Problem(
            index=index,
            rule="final_state",
            message=f"record {index}: final state differs from the recorded steps",
        )
        for index, event, state, _ in _with_state(records)
        if isinstance(event, RunEnd) and event.status == "ok" and event.final_state != state
    ]


def _const_sources(schema: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, prop in (schema.get("properties") or {}).items():
        if isinstance(prop, dict) and isinstance(prop.get(CONST_FROM), dict):
            yield name, prop[CONST_FROM]


def _enum_sources(schema: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for name, prop in (schema.get("properties") or {}).items():
        node = prop.get("items", prop) if isinstance(prop, dict) else {}
        if isinstance(node, dict) and isinstance(node.get(ENUM_FROM), str):
            yield name, node[ENUM_FROM]


RULES: dict[str, Rule] = {
    "spec_hash": spec_hashes,
    "output_schema": output_schemas,
    "probs": probabilities,
    "steps": step_structure,
    "edges": graph_edges,
    "loop_bound": loop_bounds,
    "reads": declared_reads,
    "writes": declared_writes,
    "citations": cited_ids_retrieved,
    "derived": derived_fields,
    "final_state": final_state,
}

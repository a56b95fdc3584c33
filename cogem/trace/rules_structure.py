"""Structural trace rules: specs, schemas, probabilities, step nesting, edges, loop bounds."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import fastjsonschema
import jsonschema

from cogem.canonical import sha256_json
from cogem.trace.events import (
    LlmCall,
    MemoryWrite,
    ModuleEnd,
    ModuleStart,
    Retrieval,
    RunEnd,
    ValidationRetry,
)
from cogem.trace.rules_base import END, PROB_TOLERANCE, START, Problem, Records, manifest_of

__all__ = [
    "graph_edges",
    "loop_bounds",
    "output_schemas",
    "probabilities",
    "spec_hashes",
    "step_structure",
]


def spec_hashes(records: Records) -> list[Problem]:
    """Each spec in the manifest hashes to the hash it is listed under, and every module step
    names that hash: the exact prompt and schema that ran are provable."""
    manifest = manifest_of(records)
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
        elif isinstance(event, LlmCall | Retrieval | MemoryWrite | ValidationRetry | ModuleEnd):
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
    manifest = manifest_of(records)
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
    manifest = manifest_of(records)
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

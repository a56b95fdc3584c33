"""Data-flow trace rules: rebuild the run state from the records and check every step against it
(declared reads and writes, citations, derived fields, final state), retrieval scores and memory
writes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from cogem.schema import CONST_FROM, ENUM_FROM
from cogem.scoring import ScoreComponents, combine
from cogem.trace.events import (
    HumanDecision,
    MemoryWrite,
    ModuleEnd,
    ModuleStart,
    Retrieval,
    RunEnd,
    RunStart,
)
from cogem.trace.rules_base import Problem, Records, manifest_of

__all__ = [
    "cited_ids_retrieved",
    "declared_reads",
    "declared_writes",
    "derived_fields",
    "final_state",
    "memory_writes",
    "retrieval_scores",
]


def _with_state(records: Records) -> Iterator[tuple[int, Any, dict[str, Any], dict[str, Any]]]:
    """Each record with the run state *before* it and its module's spec (``{}`` if none),
    rebuilding the state from the inputs, the recorded module outputs and human edits."""
    manifest = manifest_of(records)
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
        elif isinstance(event, HumanDecision):
            state = {**state, **event.edits}


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
    """A finished (or rejected) run's final state is exactly the inputs plus every step's recorded
    output and every human edit."""
    return [
        Problem(
            index=index,
            rule="final_state",
            message=f"record {index}: final state differs from the recorded steps",
        )
        for index, event, state, _ in _with_state(records)
        if isinstance(event, RunEnd)
        and event.status in ("ok", "rejected")
        and event.final_state != state
    ]


def retrieval_scores(records: Records) -> list[Problem]:
    """Every retrieval hit's score is the recorded components combined with the recorded
    weights, and hits are in score order (ties by id): the ranking can be recomputed."""
    found = []
    for index, event in records:
        if not isinstance(event, Retrieval):
            continue
        weights = event.weights
        for hit in event.hits:
            components = ScoreComponents(
                relevance=hit.relevance, recency=hit.recency, importance=hit.importance
            )
            if abs(combine(components, weights) - hit.score) > 1e-9:
                found.append(
                    Problem(
                        index=index,
                        rule="retrieval_score",
                        message=f"record {index}: hit {hit.id!r} has score {hit.score!r}, but its components give {combine(components, weights)!r}",
                    )
                )
        order = [(-h.score, h.id) for h in event.hits]
        if order != sorted(order):
            found.append(
                Problem(
                    index=index,
                    rule="retrieval_score",
                    message=f"record {index}: hits are not in score order",
                )
            )
    return found


def memory_writes(records: Records) -> list[Problem]:
    """Every memory write names the trace record that caused it: the start of the module step
    that wrote it, in this run. No write without a cause."""
    found = []
    cause: ModuleStart | None = None
    for index, event in records:
        if isinstance(event, ModuleStart):
            cause = event
        elif isinstance(event, MemoryWrite) and (
            cause is None
            or (cause.module, cause.step) != (event.module, event.step)
            or cause.hash != event.caused_by
        ):
            found.append(
                Problem(
                    index=index,
                    rule="memory_write",
                    message=f"record {index}: memory write {event.record_id!r} does not name the start of its own module step as its cause",
                )
            )
    return found


def _const_sources(schema: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, prop in (schema.get("properties") or {}).items():
        rule = prop.get(CONST_FROM) if isinstance(prop, dict) else None
        if isinstance(rule, dict) and isinstance(rule.get("field"), str):
            yield name, rule


def _enum_sources(schema: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for name, prop in (schema.get("properties") or {}).items():
        node = prop.get("items", prop) if isinstance(prop, dict) else {}
        if isinstance(node, dict) and isinstance(node.get(ENUM_FROM), str):
            yield name, node[ENUM_FROM]

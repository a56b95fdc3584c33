"""Trace properties: the invariants every run of every reasoner must keep.

Each property is a named, documented function over a trace's records that returns the
violations it finds, each with the record index. ``cogem audit`` runs exactly these functions
(one implementation); tests and users call them through :func:`check_trace`, or through
:func:`cogem.testing.check_reasoner` over many generated scenarios.

>>> sorted(PROPERTIES)[:3]
['citations', 'derived', 'edges']
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from cogem.canonical import sha256_json
from cogem.trace.events import EventAdapter
from cogem.trace.rules import (
    RULES,
    Problem,
    Rule,
    cited_ids_retrieved,
    declared_reads,
    declared_writes,
    derived_fields,
    final_state,
    graph_edges,
    loop_bounds,
    memory_writes,
    output_schemas,
    probabilities,
    retrieval_scores,
    spec_hashes,
    step_structure,
)
from cogem.trace.verify import verify_trace

__all__ = [
    "PROPERTIES",
    "Problem",
    "Rule",
    "assert_deterministic",
    "check_trace",
    "cited_ids_retrieved",
    "declared_reads",
    "declared_writes",
    "derived_fields",
    "final_state",
    "graph_edges",
    "loop_bounds",
    "memory_writes",
    "output_schemas",
    "probabilities",
    "retrieval_scores",
    "spec_hashes",
    "step_structure",
    "trace_digest",
]

PROPERTIES: dict[str, Rule] = dict(RULES)

# Fields that differ between two runs of the same input by design: identity, time (including
# the time recency is measured against, and the recency it gives), and the hashes that cover
# them. A recency that changes a *score* still changes the digest.
_VOLATILE = frozenset(
    {"run_id", "ts", "hash", "prev", "latency_ms", "signature", "key_id", "head", "now", "recency"}
)


def _records(path: Path) -> list[tuple[int, Any]]:
    records = []
    for index, line in enumerate(Path(path).read_bytes().splitlines()):
        try:
            records.append((index, EventAdapter.validate_json(line)))
        except ValidationError:
            continue  # an unreadable record is the chain check's finding, not a property's
    return records


def check_trace(path: Path, properties: Iterable[Rule] | None = None) -> list[Problem]:
    """Violations in the trace at ``path``.

    Without ``properties``: the full audit (hash chain, signed head, every property), exactly what
    ``cogem audit`` reports. With ``properties``: only those functions, over the readable records.
    """
    if properties is None:
        return verify_trace(path).problems
    records = _records(path)
    return sorted((p for rule in properties for p in rule(records)), key=lambda p: p.index)


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in _VOLATILE}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def trace_digest(path: Path) -> str:
    """SHA-256 of a trace with run ids, times, latencies and chain hashes removed: two runs of
    the same input with the same seed, model and memory must have the same digest."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return sha256_json([_strip(json.loads(line)) for line in lines])


def assert_deterministic(run: Callable[[Path], Any], workdir: Path, *, repeats: int = 2) -> str:
    """Call ``run(trace_path)`` ``repeats`` times and assert every trace has the same digest.

    ``run`` runs the reasoner on one fixed input and seed, writing its trace to the given path.
    Returns the digest. On a mismatch the error names the first differing record.
    """
    paths = [Path(workdir) / f"determinism-{i}.jsonl" for i in range(repeats)]
    for path in paths:
        run(path)
    digests = [trace_digest(p) for p in paths]
    if len(set(digests)) > 1:
        first = _first_difference(
            paths[0], paths[digests.index(next(d for d in digests if d != digests[0]))]
        )
        raise AssertionError(
            f"same input and seed gave different traces; first difference at record {first}"
        )
    return digests[0]


def _first_difference(a: Path, b: Path) -> int:
    left = [_strip(json.loads(x)) for x in a.read_text(encoding="utf-8").splitlines()]
    right = [_strip(json.loads(x)) for x in b.read_text(encoding="utf-8").splitlines()]
    return next(
        (i for i, (x, y) in enumerate(zip(left, right, strict=False)) if x != y),
        min(len(left), len(right)),
    )

"""Trace invariants: the rules every run must keep, each a named function over a trace.

A rule takes the parsed records of one trace as ``(index, event)`` pairs and returns the
:class:`Problem` s it finds, each naming the record index and the rule. ``cogem audit`` runs all of
them (:data:`RULES`); they need only the trace, never the model, the memory or the graph code.
"""

from __future__ import annotations

from cogem.trace.rules_base import Problem, Rule
from cogem.trace.rules_dataflow import (
    cited_ids_retrieved,
    declared_reads,
    declared_writes,
    derived_fields,
    final_state,
    memory_writes,
    retrieval_scores,
)
from cogem.trace.rules_human import human_decisions, resumes
from cogem.trace.rules_structure import (
    graph_edges,
    loop_bounds,
    output_schemas,
    probabilities,
    spec_hashes,
    step_structure,
)
from cogem.trace.rules_tuned import tuned_artifacts

__all__ = [
    "RULES",
    "Problem",
    "Rule",
    "cited_ids_retrieved",
    "declared_reads",
    "declared_writes",
    "derived_fields",
    "final_state",
    "graph_edges",
    "human_decisions",
    "loop_bounds",
    "memory_writes",
    "output_schemas",
    "probabilities",
    "resumes",
    "retrieval_scores",
    "spec_hashes",
    "step_structure",
    "tuned_artifacts",
]

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
    "retrieval_score": retrieval_scores,
    "memory_write": memory_writes,
    "resume": resumes,
    "human_decision": human_decisions,
    "tuned": tuned_artifacts,
}

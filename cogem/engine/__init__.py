"""The reasoner engine: runtime, module steps, graphs, runs (durable and human-approved)."""

from cogem.engine.approval import ApprovalRequest, Decision
from cogem.engine.graph import END, START, Reasoner
from cogem.engine.run import RunResult, run_reasoner
from cogem.engine.runtime import Runtime, make_runtime

__all__ = [
    "END",
    "START",
    "ApprovalRequest",
    "Decision",
    "Reasoner",
    "RunResult",
    "Runtime",
    "make_runtime",
    "run_reasoner",
]

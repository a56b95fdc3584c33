"""What every trace rule shares: the Problem record and the rule signature."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict

from cogem.trace.events import RunStart

__all__ = ["END", "PROB_TOLERANCE", "START", "Problem", "Records", "Rule", "manifest_of"]

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


def manifest_of(records: Records) -> Any:
    """The run manifest, or None when the trace has no readable run_start."""
    return next((e.manifest for _, e in records if isinstance(e, RunStart)), None)

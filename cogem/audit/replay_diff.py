"""Comparing a recorded run with a new one: the first differing field of each step."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

__all__ = ["FieldDiff", "StepComparison", "StepStatus", "field_diff", "first_difference", "short"]

StepStatus = Literal["replayed", "identical", "changed", "missing", "extra"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FieldDiff(_Model):
    """The first field where the recording and the new run differ (values JSON, truncated)."""

    field: str
    recorded: str
    new: str


class StepComparison(_Model):
    step: int
    module: str
    status: StepStatus
    diff: FieldDiff | None = None


def first_difference(
    old: Any, new: Any, path: str = "", *, order: Sequence[str] = ()
) -> FieldDiff | None:
    """The first place (dotted path) where two JSON values differ, or None if they are equal.

    Keys of a top-level object are visited in ``order`` first (the trace stores them sorted).
    """
    if isinstance(old, dict) and isinstance(new, dict):
        for key in dict.fromkeys([*order, *old, *new]):
            if key not in old and key not in new:
                continue
            sub = f"{path}.{key}" if path else str(key)
            if key not in old or key not in new:
                return field_diff(sub, old.get(key, "(absent)"), new.get(key, "(absent)"))
            found = first_difference(old[key], new[key], sub)
            if found:
                return found
        return None
    if isinstance(old, list) and isinstance(new, list):
        for i, (a, b) in enumerate(zip(old, new, strict=False)):
            found = first_difference(a, b, f"{path}[{i}]")
            if found:
                return found
        if len(old) != len(new):
            return field_diff(f"{path}.length" if path else "length", len(old), len(new))
        return None
    if isinstance(old, bool) != isinstance(new, bool) or old != new:
        return field_diff(path or "(value)", old, new)
    return None


def field_diff(field: str, old: Any, new: Any) -> FieldDiff:
    return FieldDiff(field=field, recorded=short(old), new=short(new))


def short(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 1] + "…"

"""Human approval: the run pauses before a module's output is acted on, and a person decides.

The pause is a LangGraph ``interrupt()`` inside a gate node placed right after the reviewed module
(``plan`` in the default reasoner, so the run neither finishes with the plan nor remembers it
before a person has seen it). The decision comes back through ``Command(resume=...)`` and is
recorded as a ``human_decision`` trace event attributed to the human.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cogem.errors import ApprovalError
from cogem.schema import editable_fields, resolve_schema, validation_error
from cogem.spec import ModuleSpec

__all__ = [
    "APPROVAL_NODE",
    "ApprovalRequest",
    "Approver",
    "Decision",
    "build_request",
    "check_decision",
]

APPROVAL_NODE = "human_approval"


class ApprovalRequest(BaseModel):
    """What the person sees: the module's inputs (for ``plan``: the action, verdict and reason),
    its output, and which output fields they may replace."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    module: str
    step: int
    inputs: dict[str, Any]
    output: dict[str, Any]
    editable: list[str]
    output_schema: dict[str, Any] = Field(description="the output's schema as resolved this run")


class Decision(BaseModel):
    """A person's decision: approve as is, edit some fields, or reject (the run stops)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    decision: Literal["approve", "edit", "reject"]
    edits: dict[str, Any] = Field(default_factory=dict)
    note: str | None = Field(default=None, max_length=2000)

    @classmethod
    def approve(cls, note: str | None = None) -> Decision:
        return cls(decision="approve", note=note)

    @classmethod
    def edit(cls, note: str | None = None, **edits: Any) -> Decision:
        return cls(decision="edit", edits=edits, note=note)

    @classmethod
    def reject(cls, note: str | None = None) -> Decision:
        return cls(decision="reject", note=note)


Approver = Callable[[ApprovalRequest], Decision]


def build_request(spec: ModuleSpec, state: Mapping[str, Any], step: int) -> ApprovalRequest:
    """The request for the output ``spec`` just wrote to ``state`` (recomputed from the state, so
    a resumed run shows exactly what the paused one showed)."""
    reads = {name: state.get(name) for name in spec.reads}
    output = {name: state.get(name) for name in spec.writes}
    generation = (
        resolve_schema(spec.output_schema, {**reads, **output})
        if spec.output_schema is not None
        else None
    )
    return ApprovalRequest(
        module=spec.name,
        step=step,
        inputs=reads,
        output=output,
        editable=editable_fields(spec.output_schema),
        output_schema=spec.full_output_schema(generation),
    )


def check_decision(request: ApprovalRequest, raw: object) -> Decision:
    """Validate a decision against the request: edits only to editable fields, and the edited
    output must satisfy the module's output schema."""
    try:
        decision = raw if isinstance(raw, Decision) else Decision.model_validate(raw)
    except ValidationError as exc:
        raise ApprovalError(f"invalid decision: {exc.errors()[0]['msg']}") from exc
    if decision.decision != "edit":
        if decision.edits:
            raise ApprovalError(f"a {decision.decision!r} decision carries no edits")
        return decision
    if not decision.edits:
        raise ApprovalError("an 'edit' decision needs at least one edited field")
    stray = sorted(set(decision.edits) - set(request.editable))
    if stray:
        raise ApprovalError(
            f"module {request.module!r}: fields {stray} cannot be edited; editable: {request.editable}"
        )
    problem = validation_error({**request.output, **decision.edits}, request.output_schema)
    if problem:
        raise ApprovalError(
            f"module {request.module!r}: the edited output fails its schema {problem}"
        )
    return decision

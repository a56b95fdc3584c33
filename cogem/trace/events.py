"""Typed, versioned trace events.

Every line of a trace file is one of these records, serialized as canonical JSON. ``prev`` is the
``hash`` of the record before it (64 zeros for the first) and ``hash`` is the SHA-256 of the record's
own canonical JSON without the ``hash`` key, so changing any byte of a record is caught *at that
record* and removing or reordering records breaks the chain.

This file imports nothing from the graph, the backends or memory: an auditor can read and check a
trace with only pydantic installed.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from cogem.artifacts import TunedArtifactRef
from cogem.scoring import ScoringWeights

__all__ = [
    "GENESIS",
    "TRACE_VERSION",
    "Event",
    "EventAdapter",
    "HumanDecision",
    "LlmCall",
    "Manifest",
    "MemoryWrite",
    "ModuleEnd",
    "ModuleStart",
    "Retrieval",
    "RetrievalHit",
    "RunEnd",
    "RunError",
    "RunResume",
    "RunStart",
    "Seal",
    "ValidationRetry",
]

TRACE_VERSION: Literal[1] = 1
GENESIS = "0" * 64
_HEX64 = r"^[0-9a-f]{64}$"


class _Strict(BaseModel):
    # NaN/Infinity must fail loudly (canonical JSON refuses them), not turn into null silently.
    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="constants")


class _EventBase(_Strict):
    v: Literal[1] = TRACE_VERSION
    seq: int = Field(ge=0)
    run_id: str
    ts: str = Field(description="UTC ISO-8601 time the record was written")
    prev: str = Field(pattern=_HEX64)
    hash: str = Field(pattern=_HEX64)


class Manifest(_Strict):
    """Everything needed to know what produced a run and to run it again."""

    cogem_version: str
    python: str
    packages: dict[str, str]
    model: dict[str, Any]
    memory: dict[str, Any] | None
    modules: dict[str, str] = Field(description="module name -> spec SHA-256")
    specs: dict[str, dict[str, Any]] = Field(description="module name -> full spec (canonical)")
    graph: dict[str, Any]
    seed: int
    decoding: dict[str, Any]
    # Absent (not empty) in untuned runs, so their records hash exactly as before.
    tuned: dict[str, TunedArtifactRef] = Field(
        default_factory=dict,
        exclude_if=lambda v: not v,
        description="module name -> the tuned artifact it ran on (others ran the base model)",
    )


class RunStart(_EventBase):
    type: Literal["run_start"] = "run_start"
    manifest: Manifest
    inputs: dict[str, Any]


class ModuleStart(_EventBase):
    type: Literal["module_start"] = "module_start"
    module: str
    step: int = Field(ge=0)
    spec_hash: str = Field(pattern=_HEX64)
    reads: dict[str, Any] = Field(description="the state fields the module declared it reads")
    artifact_sha256: str | None = Field(
        default=None,
        pattern=_HEX64,
        exclude_if=lambda v: v is None,
        description="SHA-256 of the tuned artifact this module ran on; absent for the base model",
    )


class LlmCall(_EventBase):
    type: Literal["llm_call"] = "llm_call"
    module: str
    step: int = Field(ge=0)
    call: Literal["generate", "score_options"]
    attempt: int = Field(ge=1)
    prompt_text: str
    schema_hash: str | None = None
    raw_output: str | None = None
    parsed: Any = None
    options: list[str] | None = None
    logprobs: list[float] | None = None
    probs: list[float] | None = None
    prompt_tokens: int = Field(ge=0)
    completion_tokens: int = Field(ge=0)
    finish_reason: str | None = None
    latency_ms: float = Field(ge=0)
    artifact_sha256: str | None = Field(
        default=None,
        pattern=_HEX64,
        exclude_if=lambda v: v is None,
        description="SHA-256 of the tuned artifact this module ran on; absent for the base model",
    )


class RetrievalHit(_Strict):
    id: str
    score: float = Field(description="combine(components, weights): recomputable from this record")
    distance: float
    relevance: float
    recency: float
    importance: float
    kind: str
    source: str


class Retrieval(_EventBase):
    type: Literal["retrieval"] = "retrieval"
    module: str
    step: int = Field(ge=0)
    query: str
    k: int = Field(ge=1)
    kinds: list[str] | None = None
    weights: ScoringWeights = Field(description="the weights used to rank the hits")
    now: str = Field(description="the time recency was measured against (UTC ISO-8601)")
    hits: list[RetrievalHit]
    latency_ms: float = Field(ge=0)


class MemoryWrite(_EventBase):
    """A record the reasoner wrote to memory, with the trace record that caused it."""

    type: Literal["memory_write"] = "memory_write"
    module: str
    step: int = Field(ge=0)
    record_id: str
    kind: str
    text: str
    importance: float
    caused_by: str = Field(pattern=_HEX64, description="hash of this step's module_start record")


class ValidationRetry(_EventBase):
    type: Literal["validation_retry"] = "validation_retry"
    module: str
    step: int = Field(ge=0)
    attempt: int = Field(ge=1)
    error: str


class ModuleEnd(_EventBase):
    type: Literal["module_end"] = "module_end"
    module: str
    step: int = Field(ge=0)
    output: dict[str, Any]
    output_schema: dict[str, Any] = Field(description="the schema as resolved for this step")
    schema_hash: str = Field(pattern=_HEX64)
    latency_ms: float = Field(ge=0)


class RunResume(_EventBase):
    """A durable run continued after an interruption (a crash, a kill, a pause for approval).

    The trace was cut back to the last checkpointed step before this record: the records written
    after it (a step killed mid-way, a torn line) are gone from the chain, so their count and the
    SHA-256 of their bytes are recorded here. The steps they belonged to run again after this record.
    """

    type: Literal["run_resume"] = "run_resume"
    thread_id: str
    next_step: int = Field(ge=0, description="the step number the resumed run continues with")
    dropped_records: int = Field(ge=0, description="complete records cut from the tail")
    dropped_bytes: int = Field(ge=0, description="bytes cut, including a torn last line")
    dropped_sha256: str = Field(pattern=_HEX64, description="SHA-256 of the bytes cut")


class HumanDecision(_EventBase):
    """A person's decision on a module's output before the run acts on it (``--approve``)."""

    type: Literal["human_decision"] = "human_decision"
    actor: Literal["human"] = "human"
    module: str = Field(description="the module whose output was reviewed")
    step: int = Field(ge=0, description="the step of that module that was reviewed")
    reviewed: str = Field(pattern=_HEX64, description="hash of the reviewed module_end record")
    decision: Literal["approve", "edit", "reject"]
    edits: dict[str, Any] = Field(
        default_factory=dict, description="fields the human replaced (decision 'edit' only)"
    )
    note: str | None = None


class RunError(_EventBase):
    type: Literal["error"] = "error"
    module: str | None = None
    step: int | None = None
    error_type: str
    message: str


class RunEnd(_EventBase):
    type: Literal["run_end"] = "run_end"
    status: Literal["ok", "error", "rejected"]
    steps: int = Field(ge=0)
    final_state: dict[str, Any] | None
    latency_ms: float = Field(ge=0)


class Seal(_EventBase):
    """The signed head, written after ``run_end`` (see :mod:`cogem.trace.seal`)."""

    type: Literal["seal"] = "seal"
    records: int = Field(ge=1, description="number of records before the seal")
    head: str = Field(pattern=_HEX64, description="hash of the record before the seal")
    signature: str | None = Field(default=None, pattern=_HEX64, description="HMAC-SHA256, if keyed")
    key_id: str | None = Field(default=None, description="fingerprint of the signing key")


Event = Annotated[
    RunStart
    | ModuleStart
    | LlmCall
    | Retrieval
    | MemoryWrite
    | ValidationRetry
    | ModuleEnd
    | RunError
    | RunResume
    | HumanDecision
    | RunEnd
    | Seal,
    Field(discriminator="type"),
]
EventAdapter: TypeAdapter[Event] = TypeAdapter(Event)

"""Typed records of an eval: the items a loader yields, the per-sample log lines, the manifest.

These are the contract between loaders, the runner, metrics and reports. Everything an eval
writes to disk is one of these models serialized as JSON, so every reader validates what it reads.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["DatasetFile", "EvalItem", "EvalManifest", "SampleRecord"]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EvalItem(_Record):
    """One labeled example, as a loader yields it (before any prompt is applied)."""

    id: str = Field(description="stable within the dataset, e.g. 'justice/test/17'")
    subset: str = Field(description="e.g. 'commonsense'; '' when the dataset has none")
    split: str = Field(description="e.g. 'test', 'test_hard'; '' when the dataset has none")
    fields: dict[str, str] = Field(description="the text fields the prompt template reads")
    target: int = Field(ge=0, description="index of the correct option")
    group: str | None = Field(
        default=None,
        description="items sharing a group are scored together by group metrics "
        "(all-correct exact match; or a preferred/other pair for pairwise accuracy)",
    )


class SampleRecord(_Record):
    """One line of ``samples.jsonl``: what one reasoner did on one item."""

    index: int = Field(ge=0, description="position of the item in the manifest's ordered ids")
    item_id: str
    subset: str
    split: str
    group: str | None = None
    input: dict[str, str]
    prompt: str | None = Field(default=None, description="the exact text scored (direct mode)")
    options: list[str]
    target: int = Field(ge=0)
    logprobs: list[float] | None = Field(default=None, description="per option; None on error")
    probs: list[float] | None = Field(default=None, description="per option, sums to 1")
    prediction: int | None = None
    correct: bool | None = None
    error: str | None = Field(default=None, description="'ErrorType: message' when it failed")
    trace: str | None = Field(default=None, description="trace file, relative to the eval dir")
    trace_head: str | None = Field(default=None, description="hash of the trace's last record")
    latency_ms: float = 0.0


class DatasetFile(_Record):
    path: str
    sha256: str
    rows: int


class EvalManifest(_Record):
    """Everything needed to rerun an eval and to check a resume continues the same one."""

    format: int = 1
    suite: str
    suite_config: dict[str, Any]
    suite_sha256: str
    reasoner: str
    reasoner_detail: dict[str, Any] = Field(default_factory=dict)
    options: list[str]
    positive: int = Field(ge=0, description="option index treated as the positive class (AUROC)")
    metrics: list[str]
    model: dict[str, Any]
    cogem_commit: str | None
    cogem_dirty: bool | None
    packages: dict[str, str]
    python: str
    datasets: list[DatasetFile]
    item_ids: list[str]
    item_ids_sha256: str
    seed: int
    decoding: dict[str, Any]
    limit: int | None = None
    probes: list[str] = Field(default_factory=list, description="metamorphic probes run after")
    probe_limit: int = 0
    created_at: str

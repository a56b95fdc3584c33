"""The Memory Protocol and its typed records.

Memory code never imports the LLM backends; the module runtime depends only on this Protocol.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, field_validator

from cogem.scoring import ScoreComponents, ScoringWeights

__all__ = [
    "Memory",
    "MemoryHit",
    "MemoryInfo",
    "MemoryKind",
    "MemoryRecord",
    "MetaValue",
    "Provenance",
    "ScoreComponents",
    "ScoringWeights",
]

MemoryKind = Literal["semantic", "precedent", "episodic"]
MetaValue = str | int | float | bool
MAX_TEXT_CHARS = 4000


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Provenance(_Record):
    """Which run step wrote a record: the module, the run and the hash of the trace record that
    caused the write (so an auditor can go from the memory to the exact step)."""

    module: str = Field(min_length=1)
    run_id: str = Field(min_length=1)
    record_hash: str = Field(pattern=r"^[0-9a-f]{64}$")


def _now() -> datetime:
    return datetime.now(UTC)


class MemoryRecord(_Record):
    """One remembered item with its provenance."""

    id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")
    text: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)
    kind: MemoryKind = "semantic"
    source: str = Field(min_length=1, max_length=500, description="where this record came from")
    created_at: datetime = Field(default_factory=_now)
    importance: float = Field(default=0.5, ge=0.0, le=1.0)
    provenance: Provenance | None = None
    metadata: dict[str, MetaValue] = Field(default_factory=dict)

    @field_validator("text", "source")
    @classmethod
    def _printable(cls, value: str) -> str:
        # Control characters (other than newline and tab) have no place in remembered text and
        # are a classic way to smuggle instructions past a human reviewer.
        if not value.strip():
            raise ValueError("must not be blank")
        bad = [c for c in value if (ord(c) < 32 and c not in "\n\t") or c == "\x7f"]
        if bad:
            raise ValueError(f"contains control character {bad[0]!r}")
        return value

    @field_validator("importance")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("importance must be a finite number in [0, 1]")
        return value

    @field_validator("created_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class MemoryHit(_Record):
    """A retrieved record with every number that ranked it."""

    id: str
    text: str
    kind: MemoryKind
    source: str
    created_at: datetime
    importance: float
    provenance: Provenance | None = None
    distance: float = Field(description="cosine distance reported by the store")
    components: ScoreComponents
    score: float = Field(description="combine(components, weights): the ranking key")


class MemoryInfo(_Record):
    """What a run's manifest records about the memory store."""

    backend: str
    collection: str
    embedder_id: str
    dimension: int
    distance: Literal["cosine"] = "cosine"
    count: int


@runtime_checkable
class Memory(Protocol):
    """A vector memory the recall module searches and the remember module writes."""

    def info(self) -> MemoryInfo: ...

    def add(self, records: Sequence[MemoryRecord]) -> None:
        """Validate the whole batch, then upsert it (ids already present are replaced)."""
        ...

    def search(
        self,
        query: str,
        k: int,
        *,
        kinds: Sequence[MemoryKind] | None = None,
        where: Mapping[str, MetaValue] | None = None,
        weights: ScoringWeights | None = None,
        now: datetime | None = None,
    ) -> list[MemoryHit]:
        """Up to ``k`` hits ranked by score (ties by id), filtered by kind and metadata."""
        ...

    def get(self, ids: Sequence[str]) -> list[MemoryRecord]:
        """The records with these ids that exist, in the order asked."""
        ...

    def forget(self, ids: Sequence[str]) -> int:
        """Remove records for good; returns how many existed."""
        ...

    def count(self) -> int: ...

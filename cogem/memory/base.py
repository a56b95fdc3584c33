"""The Memory Protocol and its typed records.

Memory code never imports the LLM backends; the module runtime depends only on this Protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Memory", "MemoryHit", "MemoryInfo", "MemoryKind", "MemoryRecord"]

MemoryKind = Literal["semantic", "precedent", "episodic"]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MemoryRecord(_Record):
    """One remembered item with its provenance."""

    id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")
    text: str = Field(min_length=1, max_length=4000)
    kind: MemoryKind = "semantic"
    source: str = Field(min_length=1, description="where this record came from")


class MemoryHit(_Record):
    """A retrieved record with the numbers that ranked it."""

    id: str
    text: str
    kind: MemoryKind
    source: str
    distance: float = Field(description="cosine distance reported by the store")
    score: float = Field(description="similarity = 1 - distance; higher is closer")


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
    """A vector memory the recall module searches."""

    def info(self) -> MemoryInfo: ...

    def add(self, records: Sequence[MemoryRecord]) -> None:
        """Add records; ids already present are replaced."""
        ...

    def search(self, query: str, k: int) -> list[MemoryHit]:
        """Return up to ``k`` hits, closest first."""
        ...

    def count(self) -> int: ...

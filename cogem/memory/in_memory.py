"""The reference Memory: exact cosine search over a dict, for unit tests and small experiments.

It also holds the input checks every Memory implementation shares, so the reference and the
chromadb store reject exactly the same inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from cogem.errors import InputError, MemoryStoreError
from cogem.memory.base import MemoryHit, MemoryInfo, MemoryRecord

__all__ = ["Embedder", "InMemoryMemory", "check_batch", "check_query"]


@runtime_checkable
class Embedder(Protocol):
    """What a Memory needs from an embedding function (chromadb's call shape plus identity)."""

    @property
    def embedder_id(self) -> str: ...

    @property
    def dimension(self) -> int: ...

    def __call__(self, input: list[str]) -> Any: ...


def check_query(query: object, k: object) -> str:
    """Validate a search request; return the query unchanged."""
    if not isinstance(query, str):
        raise InputError(f"memory query must be a string, got {type(query).__name__}")
    if not query.strip():
        raise InputError("memory query is empty; pass the text to search for")
    if isinstance(k, bool) or not isinstance(k, int):
        raise InputError(f"k must be an int, got {type(k).__name__}")
    if k < 1:
        raise InputError(f"k must be >= 1, got {k}")
    return query


def check_batch(records: Sequence[object]) -> list[MemoryRecord]:
    """Validate a whole batch before anything is written; duplicate ids are the caller's bug."""
    if isinstance(records, str | bytes) or not isinstance(records, Sequence):
        raise InputError(
            f"records must be a sequence of MemoryRecord, got {type(records).__name__}"
        )
    batch: list[MemoryRecord] = []
    seen: set[str] = set()
    for i, record in enumerate(records):
        if not isinstance(record, MemoryRecord):
            raise InputError(f"records[{i}] is a {type(record).__name__}, not a MemoryRecord")
        if record.id in seen:
            raise InputError(f"duplicate id {record.id!r} in one add() batch (records[{i}])")
        seen.add(record.id)
        batch.append(record)
    return batch


def clamp_distance(distance: float) -> tuple[float, float]:
    """Clamp float noise into the cosine range; return ``(distance, score)``."""
    d = min(2.0, max(0.0, float(distance)))
    return d, 1.0 - d


def embed_matrix(embedding: Embedder, texts: list[str]) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Embed ``texts`` into an (n, dimension) float64 matrix, checking the shape."""
    matrix = np.asarray(embedding(texts), dtype=np.float64)
    if matrix.shape != (len(texts), embedding.dimension):
        raise MemoryStoreError(
            f"embedder {embedding.embedder_id!r} returned shape {matrix.shape}, "
            f"expected ({len(texts)}, {embedding.dimension})"
        )
    return matrix


class InMemoryMemory:
    """Exact cosine search in numpy; ties are broken by record id so results are reproducible.

    >>> from cogem.testing.hash_embedding import HashEmbedding
    >>> mem = InMemoryMemory(HashEmbedding())
    >>> mem.add([MemoryRecord(id="n1", text="keep your promises", source="example")])
    >>> [hit.id for hit in mem.search("a broken promise", k=3)]
    ['n1']
    """

    def __init__(self, embedding: Embedder) -> None:
        self._embedding = embedding
        self._records: dict[str, MemoryRecord] = {}
        self._vectors: dict[str, np.ndarray[Any, np.dtype[np.float64]]] = {}

    @property
    def embedding(self) -> Embedder:
        return self._embedding

    def info(self) -> MemoryInfo:
        return MemoryInfo(
            backend="in-memory",
            collection="in-memory",
            embedder_id=self._embedding.embedder_id,
            dimension=self._embedding.dimension,
            count=self.count(),
        )

    def add(self, records: Sequence[MemoryRecord]) -> None:
        batch = check_batch(records)
        if not batch:
            return
        matrix = embed_matrix(self._embedding, [r.text for r in batch])
        for record, vector in zip(batch, matrix, strict=True):
            norm = float(np.linalg.norm(vector))
            self._records[record.id] = record
            self._vectors[record.id] = vector / norm if norm > 0 else vector

    def search(self, query: str, k: int) -> list[MemoryHit]:
        check_query(query, k)
        if not self._records:
            return []
        q = embed_matrix(self._embedding, [query])[0]
        q_norm = float(np.linalg.norm(q))
        if q_norm > 0:
            q = q / q_norm
        ids = sorted(self._records)
        sims = np.stack([self._vectors[i] for i in ids]) @ q
        ranked = sorted(
            ((*clamp_distance(1.0 - float(s)), i) for i, s in zip(ids, sims, strict=True)),
            key=lambda t: (t[0], t[2]),
        )
        hits = []
        for distance, score, rid in ranked[:k]:
            rec = self._records[rid]
            hits.append(
                MemoryHit(
                    id=rec.id,
                    text=rec.text,
                    kind=rec.kind,
                    source=rec.source,
                    distance=distance,
                    score=score,
                )
            )
        return hits

    def count(self) -> int:
        return len(self._records)

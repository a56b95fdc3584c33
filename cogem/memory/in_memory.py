"""The reference Memory: exact cosine search over a dict, for unit tests and small experiments.

Every search scores *all* records that pass the filters (brute force), so it is the yardstick the
chromadb store is tested against. Input checks live in :mod:`cogem.memory.validation` and scoring
in :mod:`cogem.memory.ranking`, shared with the chromadb store.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

import numpy as np

from cogem.errors import InputError, MemoryStoreError
from cogem.memory.base import MemoryHit, MemoryInfo, MemoryKind, MemoryRecord, MetaValue
from cogem.memory.ranking import matches, rank
from cogem.memory.validation import (
    check_batch,
    check_filters,
    check_ids,
    check_query,
    check_ranking,
)
from cogem.scoring import ScoringWeights

__all__ = ["Embedder", "InMemoryMemory", "check_batch", "check_query", "embed_matrix"]

Matrix = np.ndarray[Any, np.dtype[np.float64]]


@runtime_checkable
class Embedder(Protocol):
    """What a Memory needs from an embedding function (chromadb's call shape plus identity)."""

    @property
    def embedder_id(self) -> str: ...

    @property
    def dimension(self) -> int: ...

    def __call__(self, input: list[str]) -> Any: ...


def embed_matrix(embedding: Embedder, texts: list[str]) -> Matrix:
    """Embed ``texts`` into an (n, dimension) float64 matrix, checking the shape."""
    matrix = np.asarray(embedding(texts), dtype=np.float64)
    if matrix.shape != (len(texts), embedding.dimension):
        raise MemoryStoreError(
            f"embedder {embedding.embedder_id!r} returned shape {matrix.shape}, "
            f"expected ({len(texts)}, {embedding.dimension})"
        )
    return matrix


def given_vectors(vectors: object, n: int, dimension: int) -> Matrix:
    """Precomputed embeddings supplied by the caller, as an (n, dimension) finite matrix."""
    try:
        matrix = np.asarray(vectors, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"embeddings are not a numeric matrix: {exc}") from exc
    if matrix.shape != (n, dimension):
        raise InputError(f"embeddings have shape {matrix.shape}, expected ({n}, {dimension})")
    if not np.isfinite(matrix).all():
        raise InputError("embeddings contain NaN or infinite values")
    return matrix


def _unit(matrix: Matrix) -> Matrix:
    norms = np.linalg.norm(matrix, axis=-1, keepdims=True)
    unit: Matrix = np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)
    return unit


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
        self._vectors: dict[str, Matrix] = {}

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

    def add(self, records: Sequence[MemoryRecord], *, embeddings: object = None) -> None:
        """Validate the whole batch, then upsert it. ``embeddings`` (one row per record) skips
        the embedder, for callers that already hold the vectors."""
        batch = check_batch(records)
        if not batch:
            return
        if embeddings is None:
            matrix = embed_matrix(self._embedding, [r.text for r in batch])
        else:
            matrix = given_vectors(embeddings, len(batch), self._embedding.dimension)
        for record, vector in zip(batch, _unit(matrix), strict=True):
            self._records[record.id] = record
            self._vectors[record.id] = vector

    def search(
        self,
        query: str,
        k: int,
        *,
        kinds: Sequence[MemoryKind] | None = None,
        where: Mapping[str, MetaValue] | None = None,
        weights: ScoringWeights | None = None,
        now: datetime | None = None,
        query_embedding: object = None,
    ) -> list[MemoryHit]:
        check_query(query, k)
        kind_filter, clauses = check_filters(kinds, where)
        weights, now = check_ranking(weights, now)
        if query_embedding is None:
            q = embed_matrix(self._embedding, [query])[0]
        else:
            q = given_vectors([query_embedding], 1, self._embedding.dimension)[0]
        ids = sorted(i for i, r in self._records.items() if matches(r, kind_filter, clauses))
        if not ids:
            return []
        sims = np.stack([self._vectors[i] for i in ids]) @ _unit(q)
        candidates = ((self._records[i], 1.0 - float(s)) for i, s in zip(ids, sims, strict=True))
        return rank(candidates, k, weights, now)

    def get(self, ids: Sequence[str]) -> list[MemoryRecord]:
        return [self._records[i] for i in check_ids(ids) if i in self._records]

    def forget(self, ids: Sequence[str]) -> int:
        gone = 0
        for rid in check_ids(ids):
            if self._records.pop(rid, None) is not None:
                del self._vectors[rid]
                gone += 1
        return gone

    def ids(self) -> list[str]:
        """Every record id, sorted."""
        return sorted(self._records)

    def count(self) -> int:
        return len(self._records)

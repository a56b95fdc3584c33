"""Turning candidates into ranked, fully explained hits; shared by every store.

A store supplies candidates as ``(record, cosine distance)`` pairs; this module computes the score
components with :mod:`cogem.scoring`, combines them with the weights and orders by
``(-score, id)``, so two stores given the same candidates return identical hits.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

from cogem.memory.base import MemoryHit, MemoryRecord, MetaValue
from cogem.scoring import ScoreComponents, ScoringWeights, combine, recency, relevance

__all__ = ["clamp_distance", "matches", "meta_equal", "rank"]


def clamp_distance(distance: float) -> float:
    """Clamp float noise into the cosine-distance range [0, 2]."""
    return min(2.0, max(0.0, float(distance)))


def meta_equal(stored: MetaValue, wanted: MetaValue) -> bool:
    """Equality as chromadb's ``$eq`` applies it: booleans and strings match only their own type,
    numbers match numerically (an int 1 matches a float 1.0)."""
    if isinstance(stored, bool) or isinstance(wanted, bool):
        return isinstance(stored, bool) and isinstance(wanted, bool) and stored == wanted
    if isinstance(stored, str) or isinstance(wanted, str):
        return isinstance(stored, str) and isinstance(wanted, str) and stored == wanted
    return float(stored) == float(wanted)


def matches(
    record: MemoryRecord, kinds: Sequence[str] | None, where: Mapping[str, MetaValue]
) -> bool:
    """Whether ``record`` passes the kind filter and every metadata equality."""
    if kinds is not None and record.kind not in kinds:
        return False
    for key, wanted in where.items():
        if key not in record.metadata or not meta_equal(record.metadata[key], wanted):
            return False
    return True


def rank(
    candidates: Iterable[tuple[MemoryRecord, float]],
    k: int,
    weights: ScoringWeights,
    now: datetime,
) -> list[MemoryHit]:
    """Score every candidate and return the best ``k`` hits, ties broken by id."""
    scored: list[tuple[float, str, MemoryRecord, float, ScoreComponents]] = []
    for record, raw_distance in candidates:
        distance = clamp_distance(raw_distance)
        components = ScoreComponents(
            relevance=relevance(1.0 - distance),
            recency=recency(record.created_at, now, weights.half_life_hours),
            importance=record.importance,
        )
        scored.append((combine(components, weights), record.id, record, distance, components))
    scored.sort(key=lambda item: (-item[0], item[1]))
    return [
        MemoryHit(
            id=record.id,
            text=record.text,
            kind=record.kind,
            source=record.source,
            created_at=record.created_at,
            importance=record.importance,
            provenance=record.provenance,
            distance=distance,
            components=components,
            score=score,
        )
        for score, _, record, distance, components in scored[:k]
    ]

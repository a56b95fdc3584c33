"""Retrieval scoring in the style of Generative Agents: relevance, recency and importance.

Each component is normalized to [0, 1] on an absolute scale (no min-max over the candidates), so
an auditor can recompute every hit's score from the components and weights the trace records,
without the store:

- relevance = (1 + cosine similarity) / 2
- recency   = 0.5 ** (age in hours / half-life in hours)  (1.0 for a record created "now")
- importance = the record's importance, already in [0, 1]

score = (w_rel * relevance + w_rec * recency + w_imp * importance) / (w_rel + w_rec + w_imp)

Pure: imported by the memory stores and by the trace rules that recheck recorded scores.
"""

from __future__ import annotations

import math
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["ScoreComponents", "ScoringWeights", "combine", "recency", "relevance"]


class ScoringWeights(BaseModel):
    """How much each component counts. The default ranks by relevance alone (deterministic
    across days); give recency a weight to prefer recent episodes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    relevance: float = Field(default=1.0, ge=0.0, le=100.0)
    recency: float = Field(default=0.0, ge=0.0, le=100.0)
    importance: float = Field(default=0.0, ge=0.0, le=100.0)
    half_life_hours: float = Field(default=24.0 * 7, gt=0.0)

    @model_validator(mode="after")
    def _some_weight(self) -> ScoringWeights:
        if self.relevance + self.recency + self.importance <= 0:
            raise ValueError("at least one scoring weight must be positive")
        return self


class ScoreComponents(BaseModel):
    """The normalized components of one hit's score."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    relevance: float = Field(ge=0.0, le=1.0)
    recency: float = Field(ge=0.0, le=1.0)
    importance: float = Field(ge=0.0, le=1.0)


def relevance(cosine_similarity: float) -> float:
    return min(1.0, max(0.0, (1.0 + cosine_similarity) / 2.0))


def recency(created_at: datetime, now: datetime, half_life_hours: float) -> float:
    age_hours = max(0.0, (now - created_at).total_seconds() / 3600.0)
    return math.pow(0.5, age_hours / half_life_hours)


def combine(components: ScoreComponents, weights: ScoringWeights) -> float:
    """The final score: the weighted mean of the components."""
    total = weights.relevance + weights.recency + weights.importance
    return (
        weights.relevance * components.relevance
        + weights.recency * components.recency
        + weights.importance * components.importance
    ) / total

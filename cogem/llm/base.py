"""The LLM Protocol every backend implements, and the typed records it returns.

The module runtime depends only on this file, never on a concrete backend.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from cogem.artifacts import TunedArtifactRef

__all__ = [
    "LLM",
    "ChatPrompt",
    "Generation",
    "ModelInfo",
    "OptionScores",
    "Prompt",
    "normalize_logprobs",
]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ChatPrompt(_Record):
    """A prompt rendered through the model's chat template (system + user turn)."""

    system: str | None = None
    user: str


# A plain ``str`` prompt is used verbatim, with no chat template (evals that must reproduce
# another harness's exact prompt need this).
Prompt = ChatPrompt | str


class ModelInfo(_Record):
    """What a run's manifest records about the model."""

    model_id: str
    source: Literal["embedded-gguf", "local-dir", "hub", "fake", "http"]
    weights_sha256: str
    dtype: str = "float32"
    parameters: int | None = None
    # Left out of dumps when absent, so the manifests of untuned runs stay as they were.
    tuned: TunedArtifactRef | None = Field(
        default=None,
        exclude_if=lambda v: v is None,
        description="the tuned artifact this model view runs (see `cogem tune`)",
    )


class Generation(_Record):
    """One (possibly schema-constrained) generation."""

    prompt_text: str = Field(description="the exact text the model saw, chat template applied")
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: Literal["stop", "length"]
    latency_ms: float


class OptionScores(_Record):
    """Exact log-probabilities of each closed-set option as a continuation of the prompt."""

    prompt_text: str
    options: list[str]
    logprobs: list[float] = Field(description="sum of token log-probs of each option")
    probs: list[float] = Field(description="softmax of logprobs over the options; sums to 1")
    option_tokens: list[int] = Field(description="token count of each option continuation")
    prompt_tokens: int
    latency_ms: float


def normalize_logprobs(logprobs: Sequence[float]) -> list[float]:
    """The distribution over options: softmax of their log-probabilities (max subtracted for
    stability, exact sum). Every backend, fake and replay uses this one function, so recorded
    probabilities can be recomputed bit for bit."""
    top = max(logprobs)
    weights = [math.exp(x - top) for x in logprobs]
    total = math.fsum(weights)
    return [w / total for w in weights]


@runtime_checkable
class LLM(Protocol):
    """A language model cogem can drive. Greedy and deterministic unless told otherwise."""

    @property
    def info(self) -> ModelInfo: ...

    def generate(
        self,
        prompt: Prompt,
        *,
        schema: dict[str, Any] | None = None,
        max_new_tokens: int = 256,
    ) -> Generation:
        """Generate text; with ``schema``, decoding is constrained to JSON matching it."""
        ...

    def score_options(self, prompt: Prompt, options: Sequence[str]) -> OptionScores:
        """Score each option as a continuation of ``prompt``; the prompt prefix is run once."""
        ...

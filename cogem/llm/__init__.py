"""LLM backends behind one Protocol.

Importing this package is cheap: the transformers backend (torch, transformers, xgrammar) is
imported only when ``TransformersLLM`` is first touched.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cogem.llm.base import LLM, ChatPrompt, Generation, ModelInfo, OptionScores, Prompt

if TYPE_CHECKING:
    from cogem.llm.transformers_backend import TransformersLLM

__all__ = [
    "LLM",
    "ChatPrompt",
    "Generation",
    "ModelInfo",
    "OptionScores",
    "Prompt",
    "TransformersLLM",
]


def __getattr__(name: str) -> Any:
    if name == "TransformersLLM":
        from cogem.llm.transformers_backend import TransformersLLM

        return TransformersLLM
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

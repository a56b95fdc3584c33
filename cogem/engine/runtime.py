"""The explicit runtime passed to every node, and the one place concrete backends are chosen."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cogem.llm.base import LLM
from cogem.memory.base import Memory
from cogem.settings import Settings
from cogem.trace.writer import TraceWriter

__all__ = ["RunContext", "Runtime", "make_runtime"]


@dataclass
class Runtime:
    """What modules run on: an LLM backend, a memory store (or none) and settings.

    Build one with :func:`make_runtime` for the real backends, or directly with fakes from
    :mod:`cogem.testing` in tests. A runtime is reused across runs; the model loads once.
    """

    llm: LLM
    memory: Memory | None = None
    settings: Settings = field(default_factory=Settings)

    def close(self) -> None:
        """Release the memory store (its single-writer lock) if it holds one."""
        close = getattr(self.memory, "close", None)
        if callable(close):
            close()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class RunContext:
    """Per-run state handed to nodes through LangGraph's ``context``."""

    runtime: Runtime
    trace: TraceWriter
    on_event: Callable[[Any], None] | None = None
    visits: dict[str, int] = field(default_factory=dict)
    current: str | None = None
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    _steps: itertools.count[int] = field(default_factory=itertools.count)

    def next_step(self) -> int:
        return next(self._steps)

    def emit(self, event_type: type[Any], **fields: Any) -> Any:
        event = self.trace.emit(event_type, **fields)
        if self.on_event is not None:
            self.on_event(event)
        return event


def make_runtime(settings: Settings | None = None, *, with_memory: bool = True) -> Runtime:
    """Build the real runtime: the transformers backend and the chromadb memory under ``home``.

    Imports are local so that importing cogem (and ``cogem --help``/``cogem audit``) stays fast.
    """
    settings = settings or Settings.from_env()
    from cogem.llm.transformers_backend import TransformersLLM

    llm = TransformersLLM.load(settings.model, seed=settings.seed, dtype=settings.dtype)
    memory: Memory | None = None
    if with_memory:
        from cogem.memory.seed import open_memory

        memory = open_memory(settings.home)
    return Runtime(llm=llm, memory=memory, settings=settings)

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

__all__ = ["RunContext", "Runtime", "make_llm", "make_runtime"]


@dataclass
class Runtime:
    """What modules run on: an LLM backend, a memory store (or none) and settings.

    Build one with :func:`make_runtime` for the real backends, or directly with fakes from
    :mod:`cogem.testing` in tests. A runtime is reused across runs; the model loads once.
    """

    llm: LLM
    memory: Memory | None = None
    settings: Settings = field(default_factory=Settings)
    module_llms: dict[str, LLM] = field(default_factory=dict)
    """Module name -> the model that module runs on instead of ``llm`` (a tuned artifact; see
    :func:`cogem.tune.apply_tuned`). Its ``info.tuned`` names the artifact in every trace record."""

    def llm_for(self, module: str) -> LLM:
        """The model ``module`` runs on: its own tuned model, else the runtime's ``llm``."""
        return self.module_llms.get(module, self.llm)

    def close(self) -> None:
        """Release the memory store (its single-writer lock) and the LLM's connections, if any."""
        resources: list[object] = [self.memory, self.llm]
        resources += [m for m in self.module_llms.values() if m is not self.llm]
        for resource in resources:
            close = getattr(resource, "close", None)
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
    """Build the real runtime: the LLM backend the settings name and the chromadb memory under
    ``home``. The backend is the in-process transformers model, or the OpenAI-compatible server
    at ``settings.llm_url`` when that is set.

    Imports are local so that importing cogem (and ``cogem --help``/``cogem audit``) stays fast.
    """
    settings = settings or Settings.from_env()
    llm = make_llm(settings)
    memory: Memory | None = None
    if with_memory:
        from cogem.memory.seed import open_memory

        memory = open_memory(settings.home)
    return Runtime(llm=llm, memory=memory, settings=settings)


def make_llm(settings: Settings) -> LLM:
    """The LLM backend ``settings`` select: the one place a concrete backend is chosen."""
    if settings.llm_url is not None:
        from cogem.llm.openai_backend import OpenAICompatibleLLM

        key = settings.llm_api_key
        return OpenAICompatibleLLM.connect(
            settings.llm_url,
            settings.model,
            api_key=key.get_secret_value() if key is not None else None,
            seed=settings.seed,
            concurrency=settings.llm_concurrency,
            timeout=settings.llm_timeout,
            schema_retries=settings.llm_schema_retries,
        )
    from cogem.llm.transformers_backend import TransformersLLM

    return TransformersLLM.load(settings.model, seed=settings.seed, dtype=settings.dtype)

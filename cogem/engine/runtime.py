"""The explicit runtime passed to every node, and the one place concrete backends are chosen."""

from __future__ import annotations

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
    """Per-run state handed to nodes through LangGraph's ``context``.

    ``run_info`` holds what a durable run needs to resume (run id, trace path, start time, ...);
    :meth:`position` adds where the run is, and every node returns it into the checkpointed state.
    """

    runtime: Runtime
    trace: TraceWriter
    on_event: Callable[[Any], None] | None = None
    visits: dict[str, int] = field(default_factory=dict)
    current: str | None = None
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    steps: int = 0
    ends: dict[str, tuple[int, str]] = field(default_factory=dict)
    run_info: dict[str, Any] = field(default_factory=dict)

    def next_step(self) -> int:
        step = self.steps
        self.steps += 1
        return step

    def emit(self, event_type: type[Any], **fields: Any) -> Any:
        event = self.trace.emit(event_type, **fields)
        if self.on_event is not None:
            self.on_event(event)
        return event

    def position(self) -> dict[str, Any]:
        """The run's position after the step that just finished: trace length and head, step
        counter, visits and each module's last ``module_end`` (step, hash)."""
        return {
            **self.run_info,
            "records": self.trace.count,
            "head": self.trace.head,
            "steps": self.steps,
            "visits": dict(self.visits),
            "ends": {name: list(end) for name, end in self.ends.items()},
        }

    def restore(self, position: dict[str, Any]) -> None:
        """Continue from a checkpointed :meth:`position`."""
        self.steps = int(position["steps"])
        self.visits = {str(k): int(v) for k, v in position["visits"].items()}
        self.ends = {str(k): (int(v[0]), str(v[1])) for k, v in position["ends"].items()}
        self.started_at = datetime.fromisoformat(position["started_at"])


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
        from cogem.llm.chat_template import ChatTemplate
        from cogem.llm.openai_backend import OpenAICompatibleLLM

        key = settings.llm_api_key
        template = settings.llm_chat_template
        return OpenAICompatibleLLM.connect(
            settings.llm_url,
            settings.model,
            api_key=key.get_secret_value() if key is not None else None,
            seed=settings.seed,
            concurrency=settings.llm_concurrency,
            timeout=settings.llm_timeout,
            schema_retries=settings.llm_schema_retries,
            schema_format=settings.llm_schema_format,
            chat_template=ChatTemplate.load(template) if template is not None else None,
        )
    from cogem.llm.transformers_backend import TransformersLLM

    return TransformersLLM.load(settings.model, seed=settings.seed, dtype=settings.dtype)

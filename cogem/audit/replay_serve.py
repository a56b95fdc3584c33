"""Stand-ins that serve a recording: the model calls and memory searches of a recorded run,
each request checked against its record (see :mod:`cogem.audit.replay` for the matching rule)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cogem.audit.replay_diff import short
from cogem.canonical import sha256_json
from cogem.errors import RunError
from cogem.llm.base import LLM, Generation, ModelInfo, OptionScores, Prompt, normalize_logprobs
from cogem.memory.base import MemoryHit, MemoryInfo, MemoryRecord
from cogem.trace.events import LlmCall, Retrieval

__all__ = ["CountingLLM", "ReplayDivergenceError", "ReplayLLM", "ReplayMemory"]


class ReplayDivergenceError(RunError):
    """The engine asked for something other than what the trace recorded (``index`` = record)."""

    def __init__(self, message: str, *, index: int | None = None) -> None:
        super().__init__(message)
        self.index = index


class ReplayLLM:
    """Serves recorded ``llm_call`` records in order, checking each request against its record.

    Never calls a model: ``model_calls`` stays 0; ``served`` counts records handed out.
    """

    model_calls = 0

    def __init__(self, calls: Sequence[tuple[int, LlmCall]], info: ModelInfo) -> None:
        self._calls = list(calls)
        self._info = ModelInfo(
            model_id=f"replay:{info.model_id}", source="fake", weights_sha256=info.weights_sha256,
            dtype=info.dtype, parameters=info.parameters,
        )  # fmt: skip
        self._templates: dict[bool, tuple[str, int]] = {}
        self.served = 0

    @property
    def info(self) -> ModelInfo:
        return self._info

    @property
    def remaining(self) -> int:
        return len(self._calls) - self.served

    def generate(
        self, prompt: Prompt, *, schema: dict[str, Any] | None = None, max_new_tokens: int = 256
    ) -> Generation:
        index, rec = self._take("generate", prompt)
        if schema is not None and rec.schema_hash not in (None, sha256_json(schema)):
            raise ReplayDivergenceError(
                f"record {index}: module {rec.module!r} asks with a different schema than recorded",
                index=index,
            )
        return Generation(
            prompt_text=rec.prompt_text,
            text=rec.raw_output or "",
            prompt_tokens=rec.prompt_tokens,
            completion_tokens=rec.completion_tokens,
            finish_reason="length" if rec.finish_reason == "length" else "stop",
            latency_ms=0.0,
        )

    def score_options(self, prompt: Prompt, options: Sequence[str]) -> OptionScores:
        index, rec = self._take("score_options", prompt)
        if rec.options != list(options) or rec.logprobs is None:
            raise ReplayDivergenceError(
                f"record {index}: module {rec.module!r} scores options {list(options)}, "
                f"the trace recorded {rec.options}",
                index=index,
            )
        probs = normalize_logprobs(rec.logprobs)
        if rec.probs is not None:
            if any(abs(a - b) > 1e-9 for a, b in zip(probs, rec.probs, strict=True)):
                raise ReplayDivergenceError(
                    f"record {index}: recorded probabilities are not the softmax of the recorded log-probabilities",
                    index=index,
                )
            probs = list(rec.probs)  # bit-exact as recorded
        return OptionScores(
            prompt_text=rec.prompt_text,
            options=list(rec.options),
            logprobs=list(rec.logprobs),
            probs=probs,
            option_tokens=[0] * len(rec.options),  # not recorded; nothing downstream reads it
            prompt_tokens=rec.prompt_tokens,
            latency_ms=0.0,
        )

    def _take(self, kind: str, prompt: Prompt) -> tuple[int, LlmCall]:
        if self.served >= len(self._calls):
            raise ReplayDivergenceError(
                f"the engine made a {kind} call after all {len(self._calls)} recorded model calls were served"
            )
        index, rec = self._calls[self.served]
        where = f"record {index} (module {rec.module!r}, attempt {rec.attempt})"
        if rec.call != kind:
            raise ReplayDivergenceError(
                f"{where}: the engine made a {kind} call, the trace recorded {rec.call}",
                index=index,
            )
        problem = self._prompt_problem(prompt, rec.prompt_text, index)
        if problem:
            raise ReplayDivergenceError(f"{where}: {problem}", index=index)
        self.served += 1
        return index, rec

    def _prompt_problem(self, prompt: Prompt, recorded: str, index: int) -> str | None:
        """Why ``recorded`` is not ``prompt`` rendered (see the module docstring), or None."""
        if isinstance(prompt, str):
            if prompt == recorded:
                return None
            at = next(
                (i for i, (a, b) in enumerate(zip(prompt, recorded, strict=False)) if a != b), None
            )
            return f"the prompt differs from the recorded one at character {at if at is not None else min(len(prompt), len(recorded))}"
        user, system = prompt.user.strip(), (prompt.system or "").strip()
        at = recorded.rfind(user)
        if at < 0:
            return (
                f"the recorded prompt does not contain the new user text: {_where(user, recorded)}"
            )
        head, tail = recorded[:at], recorded[at + len(user) :]
        if system:
            s_at = head.rfind(system)
            if s_at < 0:
                return f"the recorded prompt does not contain the new system text {short(system)}"
            head = head[:s_at] + "\x00system\x00" + head[s_at + len(system) :]
        template = head + "\x00user\x00" + tail
        first = self._templates.setdefault(bool(system), (template, index))
        if first[0] != template:
            return f"the chat-template text around the prompt differs from record {first[1]}'s"
        return None


def _where(new: str, recorded: str) -> str:
    """Where ``new`` stops matching ``recorded``: its longest prefix found in it, and what follows."""
    low, high = 0, len(new)  # containment is monotone in the prefix length: binary search
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if new[:mid] in recorded else (low, mid - 1)
    at = recorded.rfind(new[:low]) + low
    return (
        f"after {short(new[max(0, low - 40) : low])} the recording has "
        f"{short(recorded[at : at + 40])}, the new prompt {short(new[low : low + 40])}"
    )


class ReplayMemory:
    """Serves the recorded hits of each search in order, checking the query (``strict``)."""

    def __init__(
        self,
        searches: Sequence[tuple[int, Retrieval, list[MemoryHit]]],
        info: MemoryInfo,
        *,
        strict: bool = True,
    ) -> None:
        self._searches = list(searches)
        self._info = info
        self.strict = strict
        self.served = 0
        self.added: list[MemoryRecord] = []

    @property
    def remaining(self) -> int:
        return len(self._searches) - self.served

    def info(self) -> MemoryInfo:
        return self._info

    def add(self, records: Sequence[MemoryRecord]) -> None:
        self.added.extend(records)  # kept, never searched: searches serve the recording

    def count(self) -> int:
        return self._info.count

    def get(self, ids: Sequence[str]) -> list[MemoryRecord]:
        return [r for i in ids for r in self.added if r.id == i]

    def forget(self, ids: Sequence[str]) -> int:
        raise ReplayDivergenceError("a replay never forgets memory records")

    def search(
        self,
        query: str,
        k: int,
        *,
        kinds: Sequence[str] | None = None,
        where: Mapping[str, Any] | None = None,
        weights: Any = None,
        now: Any = None,
    ) -> list[MemoryHit]:
        if self.served >= len(self._searches):
            raise ReplayDivergenceError(
                f"the engine searched memory after all {len(self._searches)} recorded searches were served"
            )
        index, rec, hits = self._searches[self.served]
        if [h.id for h in hits] != [h.id for h in rec.hits]:
            raise ReplayDivergenceError(
                f"record {index}: the module output's hits differ from the retrieval record's",
                index=index,
            )
        if self.strict and (query != rec.query or k != rec.k):
            raise ReplayDivergenceError(
                f"record {index}: memory search for {short(query)} (k={k}) differs from the "
                f"recorded {short(rec.query)} (k={rec.k})",
                index=index,
            )
        self.served += 1
        return list(hits)


class CountingLLM:
    """A real model, with its calls counted."""

    def __init__(self, llm: LLM) -> None:
        self._llm = llm
        self.model_calls = 0

    @property
    def info(self) -> ModelInfo:
        return self._llm.info

    def generate(
        self, prompt: Prompt, *, schema: dict[str, Any] | None = None, max_new_tokens: int = 256
    ) -> Generation:
        self.model_calls += 1
        return self._llm.generate(prompt, schema=schema, max_new_tokens=max_new_tokens)

    def score_options(self, prompt: Prompt, options: Sequence[str]) -> OptionScores:
        self.model_calls += 1
        return self._llm.score_options(prompt, options)

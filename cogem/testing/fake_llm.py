"""Fake LLMs for tests: no weights, deterministic, same Protocol as the real backends."""

from __future__ import annotations

import hashlib
import json
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from cogem.canonical import sha256_hex
from cogem.errors import UsageError
from cogem.llm.base import Generation, ModelInfo, OptionScores, Prompt, normalize_logprobs

__all__ = ["SchemaFillingLLM", "ScriptedLLM", "instance_for_schema"]


def _text(prompt: Prompt) -> str:
    if isinstance(prompt, str):
        return prompt
    return f"<system>{prompt.system or ''}</system><user>{prompt.user}</user><assistant>"


def _generation(prompt: Prompt, text: str) -> Generation:
    # Token counts are rough (fakes have no tokenizer): words in, ~4 characters per token out.
    return Generation(
        prompt_text=_text(prompt),
        text=text,
        prompt_tokens=len(_text(prompt).split()),
        completion_tokens=max(1, len(text) // 4),
        finish_reason="stop",
        latency_ms=0.0,
    )


def _scores(prompt: Prompt, options: Sequence[str], logprobs: Sequence[float]) -> OptionScores:
    if len(logprobs) != len(options):
        raise UsageError(f"scripted scores have {len(logprobs)} values for {len(options)} options")
    return OptionScores(
        prompt_text=_text(prompt),
        options=list(options),
        logprobs=[float(x) for x in logprobs],
        probs=normalize_logprobs(logprobs),
        option_tokens=[1] * len(options),
        prompt_tokens=len(_text(prompt).split()),
        latency_ms=0.0,
    )


class ScriptedLLM:
    """Replies from a script, in order: ``generations`` for :meth:`generate` and ``scores``
    (log-probabilities, one per option) for :meth:`score_options`.

    A reply may also be a callable taking the prompt. Running out of script is an error, so a test
    notices an unexpected extra call. ``calls`` records every call for assertions.
    """

    def __init__(
        self,
        generations: Iterable[str | Callable[[Prompt], str]] = (),
        scores: Iterable[Sequence[float] | Callable[[Prompt, Sequence[str]], Sequence[float]]] = (),
    ) -> None:
        self._generations = deque(generations)
        self._scores = deque(scores)
        self.calls: list[tuple[str, Prompt]] = []

    @property
    def info(self) -> ModelInfo:
        return ModelInfo(model_id="fake:scripted", source="fake", weights_sha256="0" * 64)

    def generate(
        self, prompt: Prompt, *, schema: dict[str, Any] | None = None, max_new_tokens: int = 256
    ) -> Generation:
        self.calls.append(("generate", prompt))
        if not self._generations:
            raise UsageError("ScriptedLLM: no scripted generation left for this call")
        reply = self._generations.popleft()
        text = reply(prompt) if callable(reply) else reply
        return _generation(prompt, text)

    def score_options(self, prompt: Prompt, options: Sequence[str]) -> OptionScores:
        self.calls.append(("score_options", prompt))
        if not self._scores:
            raise UsageError("ScriptedLLM: no scripted scores left for this call")
        reply = self._scores.popleft()
        logprobs = reply(prompt, options) if callable(reply) else reply
        return _scores(prompt, options, logprobs)


class SchemaFillingLLM:
    """Answers every call with a valid, deterministic value derived from a hash of the prompt.

    ``generate`` returns JSON that satisfies the schema (enums, lengths, item counts honoured);
    ``score_options`` returns a distribution that depends on the prompt and the option only, or
    the fixed ``logprobs`` when given. Same
    prompt, same answer: runs on it are reproducible, which makes it the default fake for
    property tests of whole reasoners.
    """

    def __init__(self, seed: int = 0, *, logprobs: Sequence[float] | None = None) -> None:
        self.seed = seed
        self.logprobs = list(logprobs) if logprobs is not None else None  # fixed scores, if given
        self.calls = 0

    @property
    def info(self) -> ModelInfo:
        return ModelInfo(
            model_id=f"fake:schema-filling:{self.seed}", source="fake", weights_sha256="0" * 64
        )

    def generate(
        self, prompt: Prompt, *, schema: dict[str, Any] | None = None, max_new_tokens: int = 256
    ) -> Generation:
        self.calls += 1
        key = f"{self.seed}:{_text(prompt)}"
        value = instance_for_schema(schema or {"type": "string", "maxLength": 40}, key)
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        return _generation(prompt, text)

    def score_options(self, prompt: Prompt, options: Sequence[str]) -> OptionScores:
        self.calls += 1
        if not options or len(set(options)) != len(options):
            raise UsageError("options must be non-empty and unique")
        if self.logprobs is not None:
            return _scores(prompt, options, self.logprobs)
        logprobs = [
            -1.0 - (_draw(f"{self.seed}:{_text(prompt)}:{o}") % 400) / 100.0 for o in options
        ]
        return _scores(prompt, options, logprobs)


def _draw(key: str) -> int:
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big")


_WORDS = ("care", "fair", "honest", "harm", "help", "promise", "trust", "share", "ask", "wait")


def instance_for_schema(schema: dict[str, Any], key: str) -> Any:
    """A deterministic instance of (the subset of JSON Schema cogem specs use) ``schema``."""
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        options = schema["enum"]
        return options[_draw(key) % len(options)]
    kind = schema.get("type", "string")
    if kind == "object":
        props = schema.get("properties", {})
        return {name: instance_for_schema(sub, f"{key}/{name}") for name, sub in props.items()}
    if kind == "array":
        low = schema.get("minItems", 0)
        high = min(schema.get("maxItems", low + 2), low + 2)
        count = low + _draw(key + "#n") % (high - low + 1)
        return [instance_for_schema(schema.get("items", {}), f"{key}[{i}]") for i in range(count)]
    if kind == "integer":
        return int(schema.get("minimum", 0))
    if kind == "number":
        return float(schema.get("minimum", 0.0))
    if kind == "boolean":
        return bool(_draw(key) % 2)
    low, high = schema.get("minLength", 1), schema.get("maxLength", 40)
    words, length = [], 0
    digest = sha256_hex(key)
    for i in range(8):
        word = _WORDS[int(digest[i * 2 : i * 2 + 2], 16) % len(_WORDS)]
        if length + len(word) + 1 > high:
            break
        words.append(word)
        length += len(word) + 1
    text = " ".join(words)
    return (text + "x" * max(0, low - len(text)))[:high]

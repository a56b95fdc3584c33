"""An LLM backend for any OpenAI-compatible server (vLLM, ``transformers serve``, llama.cpp, ...).

Same Protocol as the in-process backend, with what a server can and cannot prove written down:

- **Generation** is greedy (``temperature=0`` and the run's ``seed``). With a schema the request
  carries ``response_format={"type": "json_schema", ...}`` (OpenAI's form, vLLM's) or, with
  ``schema_format="json_object"``, ``{"type": "json_object", "schema": ...}`` (the form the
  llama-cpp-python server reads); servers that enforce it return
  valid JSON, servers that ignore it (``transformers serve`` 5.24 logs "Ignoring unsupported
  fields") may not, so every reply is re-validated here and an invalid one is answered with a
  follow-up message quoting the validation error, at most ``schema_retries`` times. After the
  bound the last reply is returned as is: the caller validates it (the engine does, and records
  it), so a raw invalid output is never lost. A plain ``str`` prompt goes verbatim to
  ``/v1/completions`` and is never retried (feedback would change the exact prompt).
- ``Generation.prompt_text`` is the **message list as sent** (role-tagged transcript, retries
  included): the server applies its own chat template, which a client cannot see.
- **Option scoring** needs prompt log-probabilities: ``/v1/completions`` with ``echo`` and
  ``logprobs`` (as lm-evaluation-harness's ``local-completions`` model does). The option tokens
  are split lm-eval's way: those of ``prompt + option`` past the tokens of the prompt alone (one
  more echo request per prompt; trailing prompt whitespace moves to the option). A server that returns no log-probabilities gets a
  :class:`~cogem.errors.ScoringUnsupportedError` naming it; nothing is estimated instead.
  A chat prompt (the judge's verdict) is scored only with a ``chat_template``
  (:class:`~cogem.llm.chat_template.ChatTemplate`): the client renders it with a local copy of
  the served model's template and scores the text; the trace records that text.
- **Weights** cannot be proven over HTTP: ``ModelInfo.weights_sha256`` is ``"unknown"`` and the
  manifest names the server URL and model instead.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from cogem.errors import (
    CogemError,
    ConfigError,
    LLMServerError,
    ScoringUnsupportedError,
    UsageError,
)
from cogem.llm.base import (
    ChatPrompt,
    Generation,
    ModelInfo,
    OptionScores,
    Prompt,
    normalize_logprobs,
)
from cogem.llm.chat_template import ChatTemplate, chat_messages
from cogem.llm.http_client import HttpJsonClient, RetryPolicy
from cogem.llm.options import check_options
from cogem.schema import validation_error

__all__ = ["GenerateRequest", "OpenAICompatibleLLM", "api_base_url"]

_T = TypeVar("_T")
SchemaFormat = Literal["json_schema", "json_object"]
_R = TypeVar("_R")

# What the weights hash says when the server cannot prove which weights it runs.
UNKNOWN_WEIGHTS = "unknown"


@dataclass(frozen=True)
class GenerateRequest:
    """One item of :meth:`OpenAICompatibleLLM.generate_batch`."""

    prompt: Prompt
    schema: dict[str, Any] | None = None
    max_new_tokens: int = 256


def api_base_url(url: str) -> str:
    """The API base: ``http://host:8000`` and ``http://host:8000/`` mean ``.../v1``; a URL with
    a path (``.../v1``, ``.../openai/v1``) is used as given."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(
            f"the LLM server URL must look like http://host:port/v1, got {url!r}",
            field="COGEM_LLM_URL",
        )
    base = url.strip().rstrip("/")
    return base if parts.path.strip("/") else f"{base}/v1"


class OpenAICompatibleLLM:
    """cogem's ``LLM`` Protocol over an OpenAI-compatible HTTP API. Build it with :meth:`connect`.

    Thread-safe: evals may call it from many threads; at most ``concurrency`` requests are in
    flight, and :meth:`generate_batch`/:meth:`score_batch` fan out up to that bound.
    """

    def __init__(
        self,
        client: HttpJsonClient,
        model: str,
        *,
        seed: int = 0,
        schema_retries: int = 2,
        strict_schema: bool = True,
        schema_format: SchemaFormat = "json_schema",
        chat_template: ChatTemplate | None = None,
    ) -> None:
        if schema_retries < 0:
            raise UsageError(f"schema_retries must be >= 0, got {schema_retries}")
        self._client = client
        self._model = model
        self._seed = seed
        self._schema_retries = schema_retries
        self._strict = strict_schema
        if schema_format not in ("json_schema", "json_object"):
            raise UsageError(
                f"schema_format must be 'json_schema' or 'json_object', got {schema_format!r}"
            )
        self._schema_format = schema_format
        self._chat_template = chat_template
        self._logprobs_ok: bool | None = None
        self._info = ModelInfo(
            model_id=f"{client.base_url}#{model}",
            source="http",
            weights_sha256=UNKNOWN_WEIGHTS,
            dtype="unknown",
        )

    @classmethod
    def connect(
        cls,
        url: str,
        model: str | None = None,
        *,
        api_key: str | None = None,
        seed: int = 0,
        concurrency: int = 4,
        timeout: float = 120.0,
        schema_retries: int = 2,
        schema_format: SchemaFormat = "json_schema",
        chat_template: ChatTemplate | None = None,
        retry: RetryPolicy | None = None,
        **client_options: Any,
    ) -> OpenAICompatibleLLM:
        """Connect to the server at ``url`` and check it serves ``model`` (``None``: the only
        model it lists). Fails fast, with the server named, if it is unreachable."""
        client = HttpJsonClient(
            api_base_url(url),
            api_key=api_key,
            timeout=timeout,
            concurrency=concurrency,
            retry=retry,
            **client_options,
        )
        served = _served_models(client)
        if model is None:
            if served is None or len(served) != 1:
                listed = "none listed" if not served else f"it lists {served}"
                raise ConfigError(
                    f"server {client.base_url} needs a model name ({listed}); pass --model",
                    field="COGEM_MODEL",
                )
            model = served[0]
        elif served is not None and model not in served:
            raise ConfigError(
                f"server {client.base_url} does not serve model {model!r}; it lists {served}",
                field="COGEM_MODEL",
            )
        return cls(
            client, model, seed=seed, schema_retries=schema_retries,
            schema_format=schema_format, chat_template=chat_template,
        )  # fmt: skip

    @property
    def info(self) -> ModelInfo:
        return self._info

    @property
    def seed(self) -> int:
        return self._seed

    @property
    def concurrency(self) -> int:
        return self._client.concurrency

    def close(self) -> None:
        self._client.close()

    # --- generation ------------------------------------------------------------------------

    def generate(
        self,
        prompt: Prompt,
        *,
        schema: dict[str, Any] | None = None,
        max_new_tokens: int = 256,
    ) -> Generation:
        if max_new_tokens < 1:
            raise UsageError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
        if schema is not None and not isinstance(schema, dict):
            raise UsageError(f"schema must be a JSON schema dict, got {type(schema).__name__}")
        if isinstance(prompt, str):
            return self._complete_text(prompt, schema, max_new_tokens)
        if not isinstance(prompt, ChatPrompt):
            raise UsageError(f"prompt must be a ChatPrompt or str, got {type(prompt).__name__}")
        messages = chat_messages(prompt)
        started = time.perf_counter()
        retries = 0
        while True:
            body = self._body(schema, max_new_tokens) | {"messages": messages}
            data = self._client.post_json("/chat/completions", body)
            choice = _first_choice(data, self._client.base_url)
            message = choice.get("message")
            text = message.get("content") if isinstance(message, dict) else None
            text = text if isinstance(text, str) else ""
            problem = None if schema is None else _schema_problem(text, schema)
            if problem is None or retries >= self._schema_retries:
                return _generation(_transcript(messages), text, choice, data, started)
            # Feed the error back as a follow-up turn, so the model sees its reply and what is
            # wrong with it; the transcript (and so the trace) keeps every attempt.
            messages = [
                *messages,
                {"role": "assistant", "content": text},
                {
                    "role": "user",
                    "content": f"That reply is invalid: {problem}. Reply again with JSON only, "
                    "matching the required schema exactly.",
                },
            ]
            retries += 1

    def _complete_text(
        self, prompt: str, schema: dict[str, Any] | None, max_new_tokens: int
    ) -> Generation:
        if not prompt:
            raise UsageError("prompt is empty: give the model some text to continue")
        started = time.perf_counter()
        body = self._body(schema, max_new_tokens) | {"prompt": prompt}
        data = self._post_completions(body, "plain-text prompts (used verbatim, no chat template)")
        choice = _first_choice(data, self._client.base_url)
        text = choice.get("text")
        return _generation(prompt, text if isinstance(text, str) else "", choice, data, started)

    def _body(self, schema: dict[str, Any] | None, max_new_tokens: int) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self._model,
            "temperature": 0,
            "seed": self._seed,
            "max_tokens": max_new_tokens,
        }
        if schema is not None and self._schema_format == "json_object":
            body["response_format"] = {"type": "json_object", "schema": schema}
        elif schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "cogem_output", "schema": schema, "strict": self._strict},
            }
        return body

    def _post_completions(self, body: dict[str, Any], needed_for: str) -> Any:
        try:
            return self._client.post_json("/completions", body)
        except LLMServerError as exc:
            if exc.status in (404, 405):
                raise UsageError(
                    f"server {self._client.base_url} has no /completions endpoint, which "
                    f"{needed_for} need"
                ) from exc
            raise

    # --- option scoring --------------------------------------------------------------------

    def score_options(self, prompt: Prompt, options: Sequence[str]) -> OptionScores:
        """Exact log-probability of each option as a continuation of the prompt, from the
        server's echoed prompt log-probabilities (one request per option)."""
        opts = check_options(options)
        self._require_logprobs()
        if isinstance(prompt, ChatPrompt) and self._chat_template is not None:
            prompt = self._chat_template.render(prompt)
        if not isinstance(prompt, str):
            raise ScoringUnsupportedError(
                f"server {self._client.base_url} cannot score a chat prompt exactly: the "
                "chat-templated text is rendered server-side and never returned, so the option "
                "tokens cannot be located; name a local copy of the served model's chat template "
                "(COGEM_LLM_CHAT_TEMPLATE / --llm-chat-template: 'embedded' or a tokenizer "
                "folder), or use the in-process backend"
            )
        context, moved = prompt.rstrip(), prompt[len(prompt.rstrip()) :]
        if not context:
            raise UsageError("prompt is empty or blank: a server cannot score an empty context")
        started = time.perf_counter()
        context_tokens = self._echo(context)
        logprobs: list[float] = []
        counts: list[int] = []
        for option in opts:
            total, n_option = self._score_one(context_tokens, context + moved + option, option)
            logprobs.append(total)
            counts.append(n_option)
        prompt_tokens = len(context_tokens)
        return OptionScores(
            prompt_text=prompt,
            options=opts,
            logprobs=logprobs,
            probs=normalize_logprobs(logprobs),
            option_tokens=counts,
            prompt_tokens=prompt_tokens,
            latency_ms=(time.perf_counter() - started) * 1000.0,
        )

    def _score_one(
        self, context_tokens: list[tuple[str, float | None]], full: str, option: str
    ) -> tuple[float, int]:
        # lm-eval's split: the option's tokens are those of encode(context + option) past the
        # tokens of encode(context). Token counts, not character offsets: servers count offsets
        # differently around special tokens (llama.cpp leaves them out of the text).
        tokens = self._echo(full)
        n = len(context_tokens)
        head = [text for text, _ in tokens[:n]]
        if len(tokens) <= n or head != [text for text, _ in context_tokens]:
            raise UsageError(
                f"option {option!r}: the server's tokenizer merges it with the end of the prompt, "
                "so its log-probability cannot be separated exactly; end the prompt at a word "
                "boundary (e.g. with a space or newline)"
            )
        option_part = [lp for _, lp in tokens[n:]]
        if any(lp is None for lp in option_part):
            raise LLMServerError(
                f"server {self._client.base_url} returned no log-probability for a token of "
                f"option {option!r}"
            )
        return math.fsum(float(lp) for lp in option_part if lp is not None), len(option_part)

    def _echo(self, text: str) -> list[tuple[str, float | None]]:
        """``(token text, logprob)`` of each token of ``text`` as the server tokenizes it."""
        data = self._post_completions(self._echo_body(text), "option scoring")
        tokens = _echoed_logprobs(_first_choice(data, self._client.base_url), data, len(text))
        if tokens is None:
            raise ScoringUnsupportedError(self._unsupported())
        return tokens

    def _echo_body(self, text: str) -> dict[str, Any]:
        # lm-eval's local-completions request: echo the prompt with its token log-probs; one
        # generated token (some servers reject max_tokens=0), which is dropped.
        return {
            "model": self._model,
            "prompt": text,
            "max_tokens": 1,
            "temperature": 0,
            "seed": self._seed,
            "echo": True,
            "logprobs": 1,
        }

    def _require_logprobs(self) -> None:
        # Probed once: a server either returns prompt log-probabilities or it does not.
        if self._logprobs_ok is None:
            probe = "Hello, world"
            data = self._post_completions(self._echo_body(probe), "option scoring")
            choice = _first_choice(data, self._client.base_url)
            self._logprobs_ok = _echoed_logprobs(choice, data, len(probe)) is not None
        if not self._logprobs_ok:
            raise ScoringUnsupportedError(self._unsupported())

    def _unsupported(self) -> str:
        return (
            f"server {self._client.base_url} (model {self._model!r}) returns no prompt "
            "log-probabilities (/v1/completions with echo and logprobs), so it cannot score "
            "options; use a server that does (e.g. vLLM) or the in-process transformers backend"
        )

    # --- batches ---------------------------------------------------------------------------

    def generate_batch(self, requests: Sequence[GenerateRequest]) -> list[Generation | CogemError]:
        """Generate for every request, up to ``concurrency`` at once; a failed item is its
        error in the result list, in order, never raised."""
        return self._map(
            lambda r: self.generate(r.prompt, schema=r.schema, max_new_tokens=r.max_new_tokens),
            requests,
        )

    def score_batch(
        self, requests: Sequence[tuple[Prompt, Sequence[str]]]
    ) -> list[OptionScores | CogemError]:
        """Score every ``(prompt, options)`` pair, up to ``concurrency`` at once; a failed item
        is its error in the result list, in order, never raised."""
        return self._map(lambda r: self.score_options(r[0], r[1]), requests)

    def _map(self, fn: Callable[[_T], _R], items: Sequence[_T]) -> list[_R | CogemError]:
        def run(item: _T) -> _R | CogemError:
            try:
                return fn(item)
            except CogemError as exc:  # per-item: one bad sample must not sink an eval
                return exc

        if not items:
            return []
        workers = min(self._client.concurrency, len(items))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cogem-llm") as pool:
            return list(pool.map(run, items))


def _served_models(client: HttpJsonClient) -> list[str] | None:
    """The model ids the server lists, or None when it has no /models endpoint."""
    try:
        data = client.get_json("/models")
    except LLMServerError as exc:
        if exc.status in (404, 405):
            return None
        raise
    rows = data.get("data") if isinstance(data, dict) else None
    if not isinstance(rows, list):
        raise LLMServerError(f"server {client.base_url}: /models answered {str(data)[:200]!r}")
    return [str(row["id"]) for row in rows if isinstance(row, dict) and "id" in row]


def _transcript(messages: Sequence[dict[str, str]]) -> str:
    turns = "".join(f"[{m['role']}]\n{m['content']}\n" for m in messages)
    return f"{turns}[assistant]\n"


def _schema_problem(text: str, schema: dict[str, Any]) -> str | None:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return f"not valid JSON ({exc.msg} at char {exc.pos})"
    if not isinstance(value, dict):
        return "not a JSON object"
    problem = validation_error(value, schema)
    return None if problem is None else f"fails the schema {problem}"


def _first_choice(data: Any, where: str) -> dict[str, Any]:
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise LLMServerError(f"server {where} answered without choices: {str(data)[:200]!r}")
    return choices[0]


def _generation(
    prompt_text: str, text: str, choice: dict[str, Any], data: Any, started: float
) -> Generation:
    usage = data.get("usage") if isinstance(data, dict) else None
    usage = usage if isinstance(usage, dict) else {}
    # Only "length" means truncated; "stop", "eos", "tool_calls" all ended on the model's terms.
    finish: Literal["stop", "length"] = (
        "length" if choice.get("finish_reason") == "length" else "stop"
    )
    return Generation(
        prompt_text=prompt_text,
        text=text,
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        finish_reason=finish,
        latency_ms=(time.perf_counter() - started) * 1000.0,
    )


def _echoed_logprobs(
    choice: dict[str, Any], data: Any, prompt_chars: int
) -> list[tuple[str, float | None]] | None:
    """``(token text, logprob)`` of each echoed prompt token, or None when the server returned
    no usable prompt log-probabilities (none at all, or echo ignored).

    The prompt's tokens are the first ``usage.prompt_tokens`` entries when the server reports
    that count (the rest were generated); otherwise those whose offset lies inside the prompt.
    """
    logprobs = choice.get("logprobs")
    if not isinstance(logprobs, dict):
        return None
    texts, offsets = logprobs.get("tokens"), logprobs.get("text_offset")
    values = logprobs.get("token_logprobs")
    if not isinstance(texts, list) or not isinstance(values, list) or len(texts) != len(values):
        return None
    if not isinstance(offsets, list) or len(offsets) != len(values) or not offsets:
        return None
    if int(offsets[0]) != 0:
        return None  # the prompt was not echoed
    usage = data.get("usage") if isinstance(data, dict) else None
    counted = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    if isinstance(counted, int) and 0 < counted <= len(texts):
        n = counted
    else:
        n = sum(1 for offset in offsets if int(offset) < prompt_chars)
    return [(str(texts[i]), values[i]) for i in range(n)]

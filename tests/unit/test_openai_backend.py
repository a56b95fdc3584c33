"""The OpenAI-compatible backend against an in-process fake server (httpx.MockTransport)."""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from cogem.errors import (
    ConfigError,
    LLMServerError,
    ScoringUnsupportedError,
    UsageError,
)
from cogem.llm.base import LLM, ChatPrompt, Generation, OptionScores, normalize_logprobs
from cogem.llm.chat_template import ChatTemplate
from cogem.llm.http_client import RetryPolicy
from cogem.llm.openai_backend import GenerateRequest, OpenAICompatibleLLM, api_base_url
from cogem.settings import Settings

SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["action"],
    "properties": {"action": {"type": "string", "minLength": 1}},
}
PROMPT = ChatPrompt(system="Be brief.", user="What is the main action?")
Handler = Callable[[httpx.Request], httpx.Response]


class FakeServer:
    """A scripted OpenAI-compatible server; records every request body."""

    def __init__(
        self,
        *,
        replies: list[str] | None = None,
        logprobs: bool = True,
        models: list[str] | None = None,
        fail: list[int] | None = None,
        delay: float = 0.0,
    ) -> None:
        self.replies = list(replies or [])
        self.logprobs = logprobs
        self.models = ["m"] if models is None else models
        self.fail = list(fail or [])  # statuses to answer first, one per request
        self.delay = delay
        self.bodies: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/v1/models":
            return httpx.Response(200, json={"data": [{"id": m} for m in self.models]})
        body = json.loads(request.content)
        with self._lock:
            self.bodies.append(body)
            self.paths.append(path)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            status = self.fail.pop(0) if self.fail else 200
        try:
            time.sleep(self.delay)
            if status != 200:
                return httpx.Response(status, json={"error": {"message": f"status {status}"}})
            if path == "/v1/chat/completions":
                text = self.replies.pop(0) if self.replies else '{"action": "kept it"}'
                return httpx.Response(200, json=_chat(text))
            if path == "/v1/completions":
                return httpx.Response(200, json=self._completion(body))
            return httpx.Response(404, json={"detail": "Not Found"})
        finally:
            with self._lock:
                self.in_flight -= 1

    def _completion(self, body: dict[str, Any]) -> dict[str, Any]:
        prompt = body["prompt"]
        if not body.get("echo") or not self.logprobs:
            return {"choices": [{"text": " next", "finish_reason": "length"}], "usage": {}}
        # Word-piece "tokens": each starts at a space; log-prob -0.5 per prompt token, -9 generated.
        starts = [0] + [i for i, c in enumerate(prompt) if c == " " and i > 0]
        tokens = [prompt[a:b] for a, b in zip(starts, [*starts[1:], len(prompt)], strict=True)]
        values: list[float | None] = [None] + [-0.5 * len(t.strip()) for t in tokens[1:]]
        return {
            "choices": [
                {
                    "text": prompt + " x",
                    "finish_reason": "length",
                    "logprobs": {
                        "tokens": [*tokens, " x"],
                        "token_logprobs": [*values, -9.0],
                        "text_offset": [*starts, len(prompt)],
                    },
                }
            ],
            "usage": {"prompt_tokens": len(tokens), "completion_tokens": 1},
        }


def _chat(text: str, finish: str = "stop") -> dict[str, Any]:
    return {
        "choices": [{"message": {"role": "assistant", "content": text}, "finish_reason": finish}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 7},
    }


def _llm(server: Handler, **kw: Any) -> tuple[OpenAICompatibleLLM, list[float]]:
    sleeps: list[float] = []
    llm = OpenAICompatibleLLM.connect(
        "http://fake:8000",
        kw.pop("model", None),
        transport=httpx.MockTransport(server),
        sleep=sleeps.append,
        **kw,
    )
    return llm, sleeps


def test_connect_resolves_the_only_model_and_records_the_server() -> None:
    llm, _ = _llm(FakeServer())
    assert isinstance(llm, LLM)
    assert llm.info.source == "http"
    assert llm.info.model_id == "http://fake:8000/v1#m"
    assert llm.info.weights_sha256 == "unknown"


def test_connect_refuses_an_unknown_or_ambiguous_model() -> None:
    with pytest.raises(ConfigError, match="does not serve model 'x'"):
        _llm(FakeServer(), model="x")
    with pytest.raises(ConfigError, match="needs a model name"):
        _llm(FakeServer(models=["a", "b"]))


@pytest.mark.parametrize(
    ("url", "base"),
    [
        ("http://h:8000", "http://h:8000/v1"),
        ("http://h:8000/", "http://h:8000/v1"),
        ("http://h:8000/v1/", "http://h:8000/v1"),
        ("https://h/openai/v1", "https://h/openai/v1"),
    ],
)
def test_api_base_url(url: str, base: str) -> None:
    assert api_base_url(url) == base


def test_api_base_url_refuses_non_http() -> None:
    with pytest.raises(ConfigError, match="COGEM_LLM_URL"):
        api_base_url("localhost:8000")


def test_schema_request_is_greedy_json_schema_strict() -> None:
    server = FakeServer()
    llm, _ = _llm(server, seed=7)
    gen = llm.generate(PROMPT, schema=SCHEMA, max_new_tokens=40)
    body = server.bodies[-1]
    assert server.paths[-1] == "/v1/chat/completions"
    assert body["model"] == "m"
    assert body["temperature"] == 0 and body["seed"] == 7 and body["max_tokens"] == 40
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "cogem_output", "schema": SCHEMA, "strict": True},
    }
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is the main action?"},
    ]
    assert gen.text == '{"action": "kept it"}'
    assert (gen.prompt_tokens, gen.completion_tokens, gen.finish_reason) == (11, 7, "stop")
    assert "Be brief." in gen.prompt_text and "What is the main action?" in gen.prompt_text


def test_no_schema_means_no_response_format() -> None:
    server = FakeServer(replies=["free text"])
    llm, _ = _llm(server)
    assert llm.generate(PROMPT).text == "free text"
    assert "response_format" not in server.bodies[-1]


def test_invalid_reply_is_retried_with_the_validation_error_fed_back() -> None:
    server = FakeServer(replies=["not json", '{"action": ""}', '{"action": "kept it"}'])
    llm, _ = _llm(server, schema_retries=2)
    gen = llm.generate(PROMPT, schema=SCHEMA)
    assert gen.text == '{"action": "kept it"}'
    assert len(server.bodies) == 3
    second, third = server.bodies[1]["messages"], server.bodies[2]["messages"]
    assert second[-2] == {"role": "assistant", "content": "not json"}
    assert "not valid JSON" in second[-1]["content"]
    assert third[-2] == {"role": "assistant", "content": '{"action": ""}'}
    assert "at action" in third[-1]["content"]
    # The trace sees every attempt: the transcript holds the failed replies and the feedback.
    assert "not json" in gen.prompt_text and "not valid JSON" in gen.prompt_text


def test_schema_retries_are_bounded_and_the_last_reply_is_returned() -> None:
    server = FakeServer(replies=["bad"] * 10)
    llm, _ = _llm(server, schema_retries=1)
    gen = llm.generate(PROMPT, schema=SCHEMA)
    assert gen.text == "bad"  # returned for the caller to validate and record, not hidden
    assert len(server.bodies) == 2


def test_plain_text_prompt_goes_verbatim_to_completions_without_retries() -> None:
    server = FakeServer()
    llm, _ = _llm(server)
    gen = llm.generate("Q: 2+2?\nA:", schema=SCHEMA, max_new_tokens=3)
    assert server.paths == ["/v1/completions"]
    assert server.bodies[0]["prompt"] == "Q: 2+2?\nA:"
    assert gen.prompt_text == "Q: 2+2?\nA:" and gen.finish_reason == "length"


def test_transient_errors_are_retried_with_capped_backoff() -> None:
    server = FakeServer(fail=[503, 429, 502])
    llm, sleeps = _llm(server, retry=RetryPolicy(attempts=4, base_delay=1.0, max_delay=3.0))
    assert llm.generate(PROMPT).text == '{"action": "kept it"}'
    assert sleeps == [1.0, 2.0, 3.0]


def test_transient_errors_give_up_after_the_bound() -> None:
    server = FakeServer(fail=[503] * 5)
    llm, sleeps = _llm(server, retry=RetryPolicy(attempts=3, base_delay=0.1))
    with pytest.raises(LLMServerError, match="after 3 attempt") as info:
        llm.generate(PROMPT)
    assert info.value.status == 503 and info.value.transient
    assert len(sleeps) == 2


def test_timeouts_and_connection_errors_are_retried() -> None:
    calls = {"n": 0}
    server = FakeServer()

    def flaky(request: httpx.Request) -> httpx.Response:
        if request.url.path != "/v1/models":
            calls["n"] += 1
            if calls["n"] == 1:
                raise httpx.ReadTimeout("slow", request=request)
            if calls["n"] == 2:
                raise httpx.ConnectError("refused", request=request)
        return server(request)

    llm, sleeps = _llm(flaky)
    assert llm.generate(PROMPT).text == '{"action": "kept it"}'
    assert len(sleeps) == 2


def test_client_errors_are_never_retried() -> None:
    server = FakeServer(fail=[400])
    llm, sleeps = _llm(server)
    with pytest.raises(LLMServerError, match="HTTP 400") as info:
        llm.generate(PROMPT)
    assert info.value.status == 400 and not info.value.transient
    assert sleeps == [] and len(server.bodies) == 1


def test_score_options_sums_the_echoed_option_token_logprobs() -> None:
    server = FakeServer()
    llm, _ = _llm(server)
    scores = llm.score_options("The verdict is ", ["wrong", "fine here"])
    # lm-eval split: the trailing space moves to the option, which then starts a token.
    assert server.bodies[-1]["prompt"] == "The verdict is fine here"
    assert server.bodies[-1]["echo"] is True and server.bodies[-1]["logprobs"] == 1
    assert scores.logprobs == [-2.5, -2.0 - 2.0]  # -0.5 per character
    assert scores.option_tokens == [1, 2]
    assert scores.prompt_tokens == 3
    assert scores.probs == normalize_logprobs(scores.logprobs)
    assert math.isclose(sum(scores.probs), 1.0)


def test_score_options_refuses_an_option_that_merges_with_the_prompt() -> None:
    llm, _ = _llm(FakeServer())
    with pytest.raises(UsageError, match="merges it with the end of the prompt"):
        llm.score_options("The verdict is", ["wrong"])  # no space: "iswrong" is one token


def test_scoring_unsupported_is_a_clear_error_naming_the_server() -> None:
    llm, _ = _llm(FakeServer(logprobs=False))
    with pytest.raises(ScoringUnsupportedError, match=r"http://fake:8000/v1 \(model 'm'\)"):
        llm.score_options("The verdict is ", ["wrong", "fine"])


def test_chat_prompts_cannot_be_scored_exactly_over_http() -> None:
    llm, _ = _llm(FakeServer())
    with pytest.raises(ScoringUnsupportedError, match=r"chat prompt.*COGEM_LLM_CHAT_TEMPLATE"):
        llm.score_options(PROMPT, ["wrong", "fine"])


class _Tokenizer:
    """The part of a tokenizer a ChatTemplate uses, with a fixed, visible template."""

    chat_template = "<sys> ... <user> ... <assistant> "

    def apply_chat_template(self, messages: list[dict[str, str]], **kw: Any) -> str:
        assert kw == {"add_generation_prompt": True, "tokenize": False}
        system, user = (m["content"] for m in messages)
        return f"<sys> {system} <user> {user} <assistant> "


def test_a_local_chat_template_makes_chat_prompts_scorable_as_rendered_text() -> None:
    server = FakeServer()
    template = ChatTemplate(_Tokenizer(), "test")
    llm, _ = _llm(server, chat_template=template)
    scores = llm.score_options(PROMPT, ["wrong", "fine"])
    rendered = "<sys> Be brief. <user> What is the main action? <assistant> "
    assert template.render(PROMPT) == rendered
    # Scored exactly like the rendered text given as a plain prompt, and recorded as that text.
    assert scores.prompt_text == rendered
    assert server.bodies[-1]["prompt"] == rendered + "fine"
    assert scores.logprobs == llm.score_options(rendered, ["wrong", "fine"]).logprobs
    # Generation still goes through the server's own chat endpoint.
    llm.generate(PROMPT, schema=SCHEMA)
    assert server.paths[-1] == "/v1/chat/completions"


def test_json_object_schema_format_is_llama_cpp_python_s_form() -> None:
    server = FakeServer()
    llm, _ = _llm(server, schema_format="json_object")
    llm.generate(PROMPT, schema=SCHEMA)
    assert server.bodies[-1]["response_format"] == {"type": "json_object", "schema": SCHEMA}
    with pytest.raises(UsageError, match="schema_format"):
        _llm(FakeServer(), schema_format="grammar")


def test_missing_completions_endpoint_is_a_usage_error() -> None:
    def no_completions(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/completions":
            return httpx.Response(404, json={"detail": "Not Found"})
        return FakeServer()(request)

    llm, _ = _llm(no_completions)
    with pytest.raises(UsageError, match="no /completions endpoint"):
        llm.generate("plain text")


def test_batches_keep_order_bound_concurrency_and_return_per_item_errors() -> None:
    server = FakeServer(delay=0.02)
    llm, _ = _llm(server, concurrency=3)
    requests = [("The verdict is ", ["wrong", "fine"])] * 8 + [("x ", ["a", "a"])]
    results = llm.score_batch(requests)
    assert all(isinstance(r, OptionScores) for r in results[:8])
    assert isinstance(results[8], UsageError) and "unique" in str(results[8])
    assert 1 < server.max_in_flight <= 3

    gens = llm.generate_batch([GenerateRequest(PROMPT, SCHEMA)] * 6 + [GenerateRequest("")])
    assert all(isinstance(g, Generation) for g in gens[:6])
    assert isinstance(gens[6], UsageError)
    assert server.max_in_flight <= 3


def test_bound_holds_across_caller_threads() -> None:
    server = FakeServer(delay=0.02)
    llm, _ = _llm(server, concurrency=2)
    threads = [threading.Thread(target=llm.generate, args=(PROMPT,)) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert server.max_in_flight == 2


def test_auth_header_and_settings_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str | None] = []

    def server(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        return FakeServer()(request)

    _llm(server, api_key="s3cret")
    assert seen == ["Bearer s3cret"]

    monkeypatch.setenv("COGEM_LLM_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("COGEM_LLM_API_KEY", "tok-123")
    monkeypatch.setenv("COGEM_LLM_CONCURRENCY", "8")
    settings = Settings.from_env()
    assert settings.llm_url == "http://127.0.0.1:9/v1" and settings.llm_concurrency == 8
    assert settings.llm_api_key is not None and "tok-123" not in repr(settings)
    monkeypatch.setenv("COGEM_LLM_SCHEMA_FORMAT", "json_object")
    monkeypatch.setenv("COGEM_LLM_SCHEMA_RETRIES", "0")
    monkeypatch.setenv("COGEM_LLM_CHAT_TEMPLATE", "embedded")
    settings = Settings.from_env()
    assert settings.llm_schema_format == "json_object" and settings.llm_schema_retries == 0
    assert settings.llm_chat_template == "embedded"
    monkeypatch.setenv("COGEM_LLM_SCHEMA_FORMAT", "grammar")
    with pytest.raises(ConfigError, match="llm_schema_format"):
        Settings.from_env()
    monkeypatch.delenv("COGEM_LLM_SCHEMA_FORMAT")
    monkeypatch.setenv("COGEM_LLM_CONCURRENCY", "many")
    with pytest.raises(ConfigError, match="COGEM_LLM_CONCURRENCY"):
        Settings.from_env()

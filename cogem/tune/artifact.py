"""Write and read tuned artifacts: weights in safetensors, ``items.json``, ``manifest.json``.

Layout of an artifact folder::

    adapter_model.safetensors + adapter_config.json      (--adapter lora; a peft adapter)
    model.safetensors + config.json + tokenizer files     (--adapter full; a loadable model folder)
    items.json                                            train and held-out item ids
    manifest.json                                         TuneManifest

The artifact's SHA-256 (:func:`cogem.artifacts.artifact_sha256`) covers the ``*.safetensors``
files; the manifest records it, and every trace of a module run on the artifact names it.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cogem.artifacts import (
    TunedArtifactRef,
    artifact_sha256,
    artifact_weight_files,
    sha256_file,
)
from cogem.canonical import sha256_hex
from cogem.engine.run import package_versions
from cogem.errors import ArtifactError
from cogem.evals.suite import Suite
from cogem.spec import ModuleSpec
from cogem.tune.checkpoint import clear_checkpoints
from cogem.tune.data import TuneData, ids_sha256
from cogem.tune.records import (
    ITEMS_FILE,
    MANIFEST_FILE,
    CurvePoint,
    HeldOutScores,
    ItemSelection,
    TuneConfig,
    TuneManifest,
)

__all__ = ["read_artifact", "write_artifact"]

_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def _write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(tmp, 0o644)  # mkstemp makes 0600; these files are meant to be read by others
    os.replace(tmp, path)


def write_artifact(
    out: Path,
    *,
    llm: Any,
    trained: Any,
    spec: ModuleSpec,
    suite: Suite,
    config: TuneConfig,
    data: TuneData,
    total_steps: int,
    curve: list[CurvePoint],
    before: HeldOutScores | None,
    after: HeldOutScores | None,
    train_seconds: float,
) -> str:
    """Save the weights, then ``items.json``, then ``manifest.json`` (last: its presence marks
    a finished artifact). Returns the artifact SHA-256."""
    import torch

    if config.adapter == "lora":
        trained.save_pretrained(str(out), safe_serialization=True)
        (out / "README.md").unlink(missing_ok=True)  # peft's model-card stub, not ours
    else:
        _save_full(trained, llm.tokenizer, out)
    sha = artifact_sha256(out)
    if sha is None:
        raise ArtifactError(f"no weights were written to path={str(out)!r}")
    train_ids = [e.item_id for e in data.train]
    val_ids = [e.item_id for e in data.val]
    items_text = json.dumps({"train": train_ids, "held_out": val_ids}, indent=0)
    _write_text(out / ITEMS_FILE, items_text)
    manifest = TuneManifest(
        module=spec.name,
        module_spec_sha256=spec.spec_hash,
        adapter=config.adapter,
        artifact_sha256=sha,
        weight_files={p.name: sha256_file(p) for p in artifact_weight_files(out)},
        base_model=llm.info.model_dump(mode="json"),
        suite=suite.name,
        suite_sha256=suite.sha256,
        verdict_map=data.verdict_map,
        datasets=data.files,
        splits=data.splits,
        items=ItemSelection(
            train_count=len(train_ids),
            train_ids_sha256=ids_sha256(train_ids),
            val_count=len(val_ids),
            val_ids_sha256=ids_sha256(val_ids),
            items_file_sha256=sha256_hex(items_text),
        ),
        config=config,
        total_steps=total_steps,
        curve=curve,
        held_out_before=before,
        held_out_after=after,
        packages={**package_versions(), "peft": _version("peft"), "python": platform.python_version()},
        torch_threads=torch.get_num_threads(),
        train_seconds=round(train_seconds, 3),
        created_at=datetime.now(UTC).isoformat(),
    )
    _write_text(out / MANIFEST_FILE, manifest.model_dump_json(indent=1))
    clear_checkpoints(out)
    return sha


def _save_full(model: Any, tokenizer: Any, out: Path) -> None:
    """A plain model folder (the layout of cogem's dequantized cache), loadable as ``--model``."""
    from safetensors.torch import save_file

    state = model.state_dict()
    if getattr(model.config, "tie_word_embeddings", False):
        state.pop("lm_head.weight", None)  # tied to the embeddings; the loader re-ties it
    save_file(
        {k: v.detach().contiguous() for k, v in state.items()},
        str(out / "model.safetensors"),
        metadata={"format": "pt"},
    )
    model.config.save_pretrained(out)
    model.generation_config.save_pretrained(out)
    tokenizer.save_pretrained(out)


def _version(name: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def read_artifact(directory: str | Path) -> tuple[TuneManifest, TunedArtifactRef]:
    """Read and check an artifact folder: its manifest parses, it holds no pickle files, and its
    weights hash to the SHA-256 the manifest records. Raises :class:`ArtifactError` otherwise."""
    folder = Path(directory).expanduser().resolve()
    manifest_path = folder / MANIFEST_FILE
    if not manifest_path.is_file():
        raise ArtifactError(
            f"path={str(folder)!r} is not a tuned artifact (no {MANIFEST_FILE}); make one with "
            "`cogem tune`, or let an interrupted run finish"
        )
    raw = manifest_path.read_bytes()
    try:
        manifest = TuneManifest.model_validate_json(raw)
    except ValueError as exc:
        raise ArtifactError(f"path={str(manifest_path)!r} is not a valid tune manifest: {exc}") from exc
    pickles = sorted(p.name for p in folder.iterdir() if p.name.endswith(_PICKLE_SUFFIXES))
    if pickles:
        raise ArtifactError(
            f"path={str(folder)!r} holds pickle files ({', '.join(pickles)}); cogem loads "
            "safetensors only, because loading a pickle can run code"
        )
    actual = artifact_sha256(folder)
    if actual != manifest.artifact_sha256:
        raise ArtifactError(
            f"the weights in path={str(folder)!r} hash to {str(actual)[:12]}…, not the "
            f"{manifest.artifact_sha256[:12]}… its manifest records: the files were changed "
            "or swapped"
        )
    ref = TunedArtifactRef(
        module=manifest.module,
        sha256=manifest.artifact_sha256,
        path=str(folder),
        adapter=manifest.adapter,
        base_sha256=str(manifest.base_model.get("weights_sha256", "")),
        manifest_sha256=sha256_hex(raw),
    )
    return manifest, ref

"""Resumable training state without pickle: safetensors for tensors, JSON for the rest.

``torch.save`` and the transformers Trainer's checkpoints pickle the optimizer state (and the
Trainer its RNG states and arguments), and loading a pickle can run code. A checkpoint here is a
folder ``checkpoint-<step>/`` holding

* ``trainable.safetensors`` — every trainable parameter by name;
* ``optimizer.safetensors`` — AdamW's per-parameter ``exp_avg``, ``exp_avg_sq`` and ``step``;
* ``state.json`` — the step, the training curve and the fingerprints of the config and data.

Nothing else is needed to continue exactly: the learning rate is a pure function of the step,
the data order a pure function of (seed, epoch), and the torch RNG is reseeded from (seed, step)
before every step. ``checkpoint.json`` names the newest complete folder and is replaced
atomically after that folder is fully written, so a crash mid-save leaves the previous one in use.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from cogem.errors import UsageError
from cogem.tune.records import CurvePoint

__all__ = ["POINTER", "CheckpointState", "clear_checkpoints", "load_checkpoint", "save_checkpoint"]

POINTER = "checkpoint.json"
_TRAINABLE = "trainable.safetensors"
_OPTIMIZER = "optimizer.safetensors"
_STATE = "state.json"
_SLOTS = ("exp_avg", "exp_avg_sq", "step")


class CheckpointState(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    step: int
    total_steps: int
    fingerprint: str
    """SHA-256 over the config, base model and item ids: a resume must match it."""
    curve: list[CurvePoint]
    elapsed_s: float
    held_out_before: dict[str, Any] | None = None


def _write_json(path: Path, data: Any) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=1, sort_keys=True)
    os.chmod(tmp, 0o644)  # mkstemp makes 0600
    os.replace(tmp, path)


def save_checkpoint(out: Path, model: Any, optimizer: Any, state: CheckpointState) -> Path:
    """Write ``checkpoint-<step>/``, point ``checkpoint.json`` at it, delete older ones."""
    from safetensors.torch import save_file

    named = _trainable(model)
    folder = out / f"checkpoint-{state.step:07d}"
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=out))
    save_file(
        {name: p.detach().contiguous() for name, p in named.items()},
        str(staging / _TRAINABLE),
    )
    slots: dict[str, Any] = {}
    by_param = {id(p): name for name, p in named.items()}
    for param, slot in optimizer.state.items():
        name = by_param[id(param)]
        for key in _SLOTS:
            value = slot[key]
            # A 0-d step counter is stored as shape [1] and restored to its original shape.
            slots[f"{name}::{key}"] = value.detach().reshape(-1).contiguous().clone()
    save_file(slots, str(staging / _OPTIMIZER))
    (staging / _STATE).write_text(state.model_dump_json(indent=1), encoding="utf-8")
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(staging, folder)
    _write_json(out / POINTER, {"folder": folder.name, "step": state.step})
    for old in out.glob("checkpoint-*"):
        if old.is_dir() and old.name != folder.name:
            shutil.rmtree(old, ignore_errors=True)
    return folder


def load_checkpoint(out: Path, model: Any, optimizer: Any, fingerprint: str) -> CheckpointState | None:
    """Restore the newest checkpoint in ``out`` into ``model`` and ``optimizer``; None if none.

    Refuses (``UsageError``) a checkpoint from a different config, base model or data.
    """
    import torch
    from safetensors.torch import load_file

    pointer = out / POINTER
    if not pointer.is_file():
        return None
    try:
        folder = out / str(json.loads(pointer.read_text(encoding="utf-8"))["folder"])
        state = CheckpointState.model_validate_json((folder / _STATE).read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError) as exc:
        raise UsageError(
            f"the checkpoint in path={str(out)!r} is unreadable ({exc}); delete the folder's "
            "checkpoint* files to start over"
        ) from exc
    if state.fingerprint != fingerprint:
        raise UsageError(
            f"path={str(out)!r} holds a checkpoint of a different tuning run (other config, base "
            "model or data); use another --out, or the same settings to resume"
        )
    named = _trainable(model)
    weights = load_file(str(folder / _TRAINABLE))
    if set(weights) != set(named):
        raise UsageError(f"checkpoint {str(folder)!r} does not match the model's trainable weights")
    with torch.no_grad():
        for name, param in named.items():
            param.copy_(weights[name])
    slots = load_file(str(folder / _OPTIMIZER))
    index = {name: i for i, name in enumerate(named)}
    opt_state: dict[int, dict[str, Any]] = {}
    for key, value in slots.items():
        name, _, slot = key.rpartition("::")
        shape = () if slot == "step" else named[name].shape
        opt_state.setdefault(index[name], {})[slot] = value.reshape(shape)
    optimizer.load_state_dict(
        {"state": opt_state, "param_groups": optimizer.state_dict()["param_groups"]}
    )
    return state


def _trainable(model: Any) -> dict[str, Any]:
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def clear_checkpoints(out: Path) -> None:
    """Remove the checkpoints once the artifact is written: resuming a finished run is moot."""
    for old in out.glob("checkpoint-*"):
        if old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
    (out / POINTER).unlink(missing_ok=True)

"""The eval log on disk: ``manifest.json``, ``samples.jsonl``, ``summary.json`` in one folder.

Crash safety: the manifest is written atomically before any sample; each batch of samples is
appended as whole lines and fsynced, so a kill -9 can leave at most one torn last line, which
:meth:`EvalLog.open` drops before appending again. A resume checks that its manifest describes
the same eval (suite, reasoner, model weights, datasets, item ids, seed) and refuses otherwise.
One writer at a time: the folder is locked while an eval runs.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from pydantic import ValidationError

from cogem.errors import ConfigError, InputError, UsageError
from cogem.evals.records import EvalManifest, SampleRecord

__all__ = [
    "MANIFEST",
    "SAMPLES",
    "SUMMARY",
    "EvalLog",
    "read_manifest",
    "read_samples",
    "write_json_atomic",
]

MANIFEST, SAMPLES, SUMMARY = "manifest.json", "samples.jsonl", "summary.json"
# Fields that must match for a resume to continue the same eval. Batch settings may change:
# they move scores by float rounding only.
_SAME_EVAL = (
    "suite", "suite_sha256", "reasoner", "reasoner_detail", "options", "positive",
    "item_ids_sha256", "seed",
)  # fmt: skip
# ``tuned`` is absent for a base model and names the artifact a direct eval scores with.
_SAME_MODEL = ("model_id", "weights_sha256", "dtype", "tuned")


def write_json_atomic(path: Path, payload: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        json.dump(payload, fh, ensure_ascii=False, indent=2)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)


def read_manifest(folder: Path) -> EvalManifest:
    path = folder / MANIFEST
    if not path.is_file():
        raise InputError(f"not an eval folder (no {MANIFEST}): {folder}")
    try:
        return EvalManifest.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        raise InputError(f"{path} is not a valid eval manifest: {exc.errors()[0]['msg']}") from exc


def _parse_samples(path: Path) -> tuple[list[SampleRecord], int]:
    """Records in file order and the byte length of the intact part (a torn last line — no
    newline, cut by a crash — is excluded; any other bad line is an error)."""
    data = path.read_bytes() if path.is_file() else b""
    records: list[SampleRecord] = []
    good = 0
    for number, line in enumerate(data.splitlines(keepends=True), start=1):
        if not line.endswith(b"\n"):
            break  # torn tail: never acknowledged as written
        try:
            records.append(SampleRecord.model_validate_json(line))
        except ValidationError as exc:
            raise InputError(
                f"{path}: line {number} is not a valid sample record ({exc.errors()[0]['msg']}); "
                "the log was edited or corrupted"
            ) from exc
        good += len(line)
    seen: set[str] = set()
    for record in records:
        if record.item_id in seen:
            raise InputError(f"{path}: item {record.item_id!r} appears twice")
        seen.add(record.item_id)
    return records, good


def read_samples(folder: Path) -> list[SampleRecord]:
    """Every finished sample, ordered by item index."""
    records, _ = _parse_samples(folder / SAMPLES)
    return sorted(records, key=lambda r: r.index)


class EvalLog:
    """An eval folder open for appending. Use :meth:`open`; close it (or use ``with``)."""

    def __init__(self, folder: Path, manifest: EvalManifest, done: dict[str, SampleRecord]) -> None:
        self.folder = folder
        self.manifest = manifest
        self.done = done
        self._lock: IO[bytes] | None = None
        self._fh: IO[bytes] | None = None

    @classmethod
    def open(cls, folder: Path, manifest: EvalManifest, *, resume: bool) -> EvalLog:
        """Start a new eval in ``folder``, or with ``resume`` continue the one there."""
        folder.mkdir(parents=True, exist_ok=True)
        lock = (folder / ".lock").open("wb")
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise UsageError(f"another eval is writing to {folder}") from None
        try:
            log = cls._prepare(folder, manifest, resume=resume)
        except BaseException:
            lock.close()
            raise
        log._lock = lock
        log._fh = (folder / SAMPLES).open("ab")
        return log

    @classmethod
    def _prepare(cls, folder: Path, manifest: EvalManifest, *, resume: bool) -> EvalLog:
        exists = (folder / MANIFEST).is_file()
        if not resume:
            if exists or (folder / SAMPLES).exists():
                raise UsageError(
                    f"{folder} already holds an eval: pass --resume to finish it, or another --out"
                )
            write_json_atomic(folder / MANIFEST, manifest.model_dump(mode="json"))
            return cls(folder, manifest, {})
        if not exists:
            raise UsageError(f"nothing to resume: {folder} holds no eval manifest")
        old = read_manifest(folder)
        _check_same(old, manifest, folder)
        path = folder / SAMPLES
        records, good = _parse_samples(path)
        if path.is_file() and path.stat().st_size > good:
            with path.open("r+b") as fh:  # drop the torn last line left by the crash
                fh.truncate(good)
                fh.flush()
                os.fsync(fh.fileno())
        known = set(old.item_ids)
        stray = [r.item_id for r in records if r.item_id not in known]
        if stray:
            raise InputError(f"{path}: samples for items not in the manifest: {stray[:3]}")
        return cls(folder, old, {r.item_id: r for r in records})

    def append(self, records: Sequence[SampleRecord]) -> None:
        """Append whole lines and make them durable before returning."""
        if self._fh is None:
            raise UsageError("eval log is closed")
        for record in records:
            if record.item_id in self.done:
                raise UsageError(f"item {record.item_id!r} already has a sample")
        payload = b"".join(record.model_dump_json().encode("utf-8") + b"\n" for record in records)
        self._fh.write(payload)
        self._fh.flush()
        os.fsync(self._fh.fileno())
        for record in records:
            self.done[record.item_id] = record

    def close(self) -> None:
        for handle in (self._fh, self._lock):
            if handle is not None:
                handle.close()
        self._fh = self._lock = None

    def __enter__(self) -> EvalLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_same(old: EvalManifest, new: EvalManifest, folder: Path) -> None:
    before, after = old.model_dump(mode="json"), new.model_dump(mode="json")
    differ = [f for f in _SAME_EVAL if before[f] != after[f]]
    # The data may have moved; its content may not.
    if [(d.sha256, d.rows) for d in old.datasets] != [(d.sha256, d.rows) for d in new.datasets]:
        differ.append("datasets")
    differ += [f"model.{f}" for f in _SAME_MODEL if before["model"].get(f) != after["model"].get(f)]
    if differ:
        raise ConfigError(
            f"--resume would continue a different eval: {', '.join(differ)} differ from the "
            f"manifest in {folder}; rerun with the original settings or use another --out",
            path=str(folder / MANIFEST),
        )

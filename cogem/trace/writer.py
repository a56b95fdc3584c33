"""Append-only, hash-chained JSONL trace writer."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, TypeVar

from pydantic import ValidationError

from cogem.canonical import canonical_json, sha256_json
from cogem.errors import TraceError
from cogem.trace.events import GENESIS, Seal
from cogem.trace.seal import key_id, sign_head

__all__ = ["TraceWriter"]

E = TypeVar("E", bound=Any)


class TraceWriter:
    """Writes one run's events to ``path``, one canonical JSON record per line.

    Each record is flushed as it is written so a crash loses at most the line being written; the
    file is fsynced on close. The writer refuses to append to an existing non-empty file: a trace is
    one run, and appending would splice two chains.
    """

    def __init__(
        self, path: Path, run_id: str, *, continue_from: tuple[int, str] | None = None
    ) -> None:
        self.path = Path(path)
        self.run_id = run_id
        # continue_from=(records, head): append to a trace already cut back to exactly that many
        # records ending in that hash (see cogem.trace.reopen, which checks it); only a resumed
        # durable run does this.
        self._seq, self._prev = continue_from or (0, GENESIS)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if continue_from is None and self.path.exists() and self.path.stat().st_size > 0:
                raise TraceError(
                    f"trace file already exists and is not empty: path={str(self.path)!r}"
                )
            mode = "a" if continue_from is not None else "w"
            self._fh: IO[str] | None = self.path.open(mode, encoding="utf-8", newline="\n")
        except OSError as exc:
            raise TraceError(
                f"cannot open trace for writing: path={str(self.path)!r}: {exc}"
            ) from exc

    @property
    def head(self) -> str:
        """Hash of the last record written (the chain head)."""
        return self._prev

    @property
    def count(self) -> int:
        return self._seq

    def emit(self, event_type: type[E], **fields: Any) -> E:
        """Validate, chain and append one event; return the typed record as written."""
        if self._fh is None:
            raise TraceError(f"trace is closed: path={str(self.path)!r}")
        ts = datetime.now(UTC).isoformat(timespec="microseconds")
        base = {
            "seq": self._seq,
            "run_id": self.run_id,
            "ts": ts,
            "prev": self._prev,
            "hash": GENESIS,
        }
        try:
            body: dict[str, Any] = event_type.model_validate({**fields, **base}).model_dump(
                mode="json"
            )
            del body["hash"]
            digest = sha256_json(body)
            body["hash"] = digest
            line = canonical_json(body)
        except (ValidationError, ValueError, TypeError) as exc:
            raise TraceError(
                f"cannot record {event_type.__name__} event #{self._seq}: {exc}"
            ) from exc
        self._fh.write(line + "\n")
        self._fh.flush()
        self._prev = digest
        self._seq += 1
        return event_type.model_validate(body)  # type: ignore[no-any-return]

    def seal(self, key: bytes | None = None) -> Seal:
        """Append the signed head (HMAC-signed when ``key`` is given); no record may follow."""
        signature = sign_head(key, self.run_id, self._seq, self._prev) if key else None
        event = self.emit(
            Seal,
            records=self._seq,
            head=self._prev,
            signature=signature,
            key_id=key_id(key) if key else None,
        )
        self.close()
        return event

    def close(self) -> None:
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            self._fh = None

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""Reopen a durable run's trace at its last checkpointed step, to continue the same hash chain.

A run killed mid-module leaves records after its last checkpoint (a module start, model calls, a
torn line). The checkpoint names how many records were written when it was taken and the hash of
the last one; the file is checked against that (every kept record must be intact and chained) and
cut back to it. What was cut is measured so the ``run_resume`` record can say so.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from cogem.errors import TraceError
from cogem.trace.events import GENESIS, EventAdapter, RunEnd, Seal
from cogem.trace.verify import record_intact
from cogem.trace.writer import TraceWriter

__all__ = ["DroppedTail", "reopen_trace"]


class DroppedTail(BaseModel):
    """What was cut from the end of a trace before continuing it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    records: int
    bytes: int
    sha256: str


def reopen_trace(
    path: Path, run_id: str, *, records: int, head: str
) -> tuple[TraceWriter, DroppedTail]:
    """Check the first ``records`` records of ``path`` end in ``head``, cut the rest, reopen."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TraceError(
            f"cannot resume: the run's trace cannot be read: path={str(path)!r}: {exc.strerror}"
        ) from exc
    lines = data.split(b"\n")
    complete = lines[:-1]  # the last element is b"" or a torn line
    if len(complete) < records:
        raise TraceError(
            f"cannot resume: the trace has {len(complete)} complete records but the checkpoint "
            f"needs {records}; it was cut or replaced: path={str(path)!r}"
        )
    prev = GENESIS
    for index, line in enumerate(complete[:records]):
        try:
            event = EventAdapter.validate_json(line)
        except ValidationError as exc:
            raise TraceError(
                f"cannot resume: record {index} of the trace is not a valid event: path={str(path)!r}"
            ) from exc
        if not record_intact(line, event.hash) or event.prev != prev or event.seq != index:
            raise TraceError(
                f"cannot resume: record {index} of the trace fails its hash chain (run `cogem audit`): path={str(path)!r}"
            )
        if event.run_id != run_id:
            raise TraceError(
                f"cannot resume: the trace belongs to run {event.run_id!r}, not {run_id!r}: path={str(path)!r}"
            )
        if isinstance(event, RunEnd | Seal):
            raise TraceError(f"cannot resume: the trace's run already ended: path={str(path)!r}")
        prev = event.hash
    if prev != head:
        raise TraceError(
            f"cannot resume: record {records - 1} of the trace is not the one the checkpoint names "
            f"(head {head[:12]}…): path={str(path)!r}"
        )
    keep = sum(len(line) + 1 for line in complete[:records])
    cut = data[keep:]
    try:
        with path.open("r+b") as fh:
            fh.truncate(keep)
    except OSError as exc:
        raise TraceError(
            f"cannot resume: cannot cut the trace: path={str(path)!r}: {exc.strerror}"
        ) from exc
    dropped = DroppedTail(
        records=len(complete) - records, bytes=len(cut), sha256=hashlib.sha256(cut).hexdigest()
    )
    return TraceWriter(path, run_id, continue_from=(records, head)), dropped

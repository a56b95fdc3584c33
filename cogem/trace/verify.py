"""Verify a trace file: hash chain, signed head, record schemas and the run's invariants.

Pure: needs pydantic and jsonschema, never torch, chromadb or the graph, so ``cogem audit`` runs on
an auditor's machine that has neither the model nor the memory store.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from cogem.errors import TraceError, UsageError
from cogem.trace.events import GENESIS, EventAdapter, RunEnd, RunStart, Seal
from cogem.trace.rules import RULES, Problem
from cogem.trace.seal import key_id, sign_head

__all__ = [
    "AuditReport",
    "Problem",
    "read_trace",
    "record_intact",
    "repair_torn_tail",
    "verify_trace",
]

_DECODER = json.JSONDecoder()


class AuditReport(BaseModel):
    """What an audit found. ``ok`` only when every rule holds and the trace is complete."""

    model_config = ConfigDict(extra="forbid")

    path: str
    records: int
    run_id: str | None
    complete: bool
    head: str | None
    torn_tail: bool = False
    signed: bool = False
    signature_checked: bool = False
    problems: list[Problem]

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_bad(self) -> int | None:
        return min((p.index for p in self.problems), default=None)

    @property
    def tampered(self) -> bool:
        """Problems other than a crash's torn tail or a missing end."""
        return any(p.rule not in ("torn_tail", "incomplete") for p in self.problems)


def _split(path: Path) -> tuple[list[bytes], bytes | None]:
    """Complete lines, and the bytes after the last newline (a torn tail) if any."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise TraceError(f"cannot read trace: path={str(path)!r}: {exc.strerror}") from exc
    lines = data.split(b"\n")
    tail = lines.pop()  # after the final newline: b"" when the file ends cleanly
    return lines, (tail or None)


def read_trace(path: Path) -> list[Any]:
    """Parse a trace into typed events, raising :class:`TraceError` at the first unreadable line.

    Use :func:`verify_trace` to *check* a trace; this is for code that needs the events of a trace
    already known to be intact.
    """
    lines, _ = _split(path)
    events = []
    for index, line in enumerate(lines):
        try:
            events.append(EventAdapter.validate_json(line))
        except ValidationError as exc:
            raise TraceError(
                f"record {index} of {str(path)!r} is not a valid event: {exc}"
            ) from exc
    return events


def record_intact(line: bytes, stored: object) -> bool:
    """Whether ``line`` is exactly the canonical record whose hash it stores.

    The writer hashes the canonical JSON of the record without its ``hash`` member. Keys are
    sorted and ``hash`` is never the last key, so that text is the line with the member
    ``"hash":"<hex>",`` cut out: hashing the line's own bytes proves both content and canonical
    form, with no re-serialization.
    """
    if not isinstance(stored, str) or len(stored) != 64:
        return False
    member = b'"hash":"' + stored.encode("ascii", "replace") + b'",'
    cut = line.find(member)
    if cut < 0:
        return False
    return hashlib.sha256(line[:cut] + line[cut + len(member) :]).hexdigest() == stored


def _torn_is_tampering(tail: bytes) -> bool:
    # A crash leaves a *prefix* of a record. A whole record followed by extra bytes cannot come
    # from a crash: it is what flipping the final newline looks like.
    try:
        _, end = _DECODER.raw_decode(tail.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return False
    return end != len(tail)


def verify_trace(path: Path, *, key: bytes | None = None) -> AuditReport:
    """Check every record of the trace at ``path`` and report each broken rule with its index.

    With ``key`` (the ``COGEM_AUDIT_KEY`` the run was signed with) the signed head is checked too,
    which also catches records cut from the tail together with the seal.
    """
    lines, tail = _split(path)
    problems: list[Problem] = []
    torn = False
    if tail is not None:
        if _torn_is_tampering(tail):
            lines.append(tail)  # check it as a record: its hash will not match
        else:
            torn = True
            problems.append(
                Problem(
                    index=len(lines),
                    rule="torn_tail",
                    message=f"record {len(lines)} is a torn last line (a crash while writing); `cogem audit --repair` truncates it",
                )
            )

    def bad(index: int, rule: str, message: str) -> None:
        problems.append(Problem(index=index, rule=rule, message=message))

    prev_hash = GENESIS
    records: list[tuple[int, Any]] = []
    for index, line in enumerate(lines):
        try:
            # pydantic parses and validates in one pass (far faster than json.loads + validate).
            event: Any = EventAdapter.validate_json(line)
        except ValidationError:
            event = None
        if event is not None:
            stored_hash, prev, seq = event.hash, event.prev, event.seq
        else:
            try:
                raw = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                raw = None
            if not isinstance(raw, dict):
                bad(index, "json", f"record {index} is not a JSON object")
                prev_hash = ""  # unknown: the next record's link cannot be checked against it
                continue
            bad(index, "event", f"record {index} is not a valid trace event")
            stored_hash, prev, seq = raw.get("hash"), raw.get("prev"), raw.get("seq")
        intact = record_intact(line, stored_hash)
        if not intact:
            bad(index, "hash", f"record {index} was altered: its content does not match its hash")
        if prev_hash and prev != prev_hash:
            what = (
                "the first record must start the chain"
                if index == 0
                else f"it does not link to record {index - 1}"
            )
            bad(
                index,
                "chain",
                f"record {index} breaks the hash chain: {what} (records deleted, inserted or reordered)",
            )
        prev_hash = stored_hash if isinstance(stored_hash, str) else ""
        if seq != index:
            bad(index, "seq", f"record {index} has seq {seq!r}")
        # The invariant rules see only records whose hash holds: an altered record is already
        # reported at its index, and its content cannot be trusted to mean anything.
        if event is not None and intact:
            records.append((index, event))

    run_id, complete, signed, checked = _check_envelope(records, len(lines), key, bad)
    if records and isinstance(records[0][1], RunStart):
        for rule in RULES.values():
            problems.extend(rule(records))
    if not lines and not torn:
        bad(0, "incomplete", "the trace is empty")
    return AuditReport(
        path=str(path),
        records=len(lines),
        run_id=run_id,
        complete=complete,
        head=prev_hash or None,
        torn_tail=torn,
        signed=signed,
        signature_checked=checked,
        problems=sorted(problems, key=lambda p: (p.index, p.rule)),
    )


def _check_envelope(
    records: list[tuple[int, Any]], count: int, key: bytes | None, bad: Any
) -> tuple[str | None, bool, bool, bool]:
    """Run id, first and last records, the seal and its signature."""
    run_id = records[0][1].run_id if records else None
    seal: tuple[int, Seal] | None = None
    saw_end = False
    for index, event in records:
        if event.run_id != run_id:
            bad(index, "run_id", f"record {index} belongs to run {event.run_id!r}, not {run_id!r}")
        if isinstance(event, RunStart) != (index == 0):
            bad(index, "start", "the first record must be run_start, and only the first")
        if seal is not None:
            bad(index, "seal", f"record {index} comes after the seal")
        if isinstance(event, Seal):
            seal = (index, event)
            if not saw_end:
                bad(index, "seal", f"record {index}: seal before run_end")
            if event.records != index or event.head != event.prev:
                bad(
                    index,
                    "seal",
                    f"record {index}: the seal names {event.records} records, not {index}",
                )
        elif saw_end and not isinstance(event, Seal):
            bad(index, "end", f"record {index} comes after run_end")
        saw_end = saw_end or isinstance(event, RunEnd)
    if seal is None:
        bad(
            count,
            "incomplete",
            f"record {count}: no seal (the run crashed, or records were cut from the tail)",
        )
    signed = seal is not None and seal[1].signature is not None
    if key is None:
        return run_id, seal is not None, signed, False
    if seal is None:
        return run_id, False, False, True
    index, event = seal
    if event.signature is None:
        bad(index, "signature", f"record {index}: the seal is not signed, but a key was given")
    elif event.key_id != key_id(key):
        bad(
            index,
            "signature",
            f"record {index}: the seal was signed with another key ({event.key_id})",
        )
    elif not hmac.compare_digest(
        event.signature, sign_head(key, event.run_id, event.records, event.head)
    ):
        bad(
            index,
            "signature",
            f"record {index}: the signature does not match (head or record count changed)",
        )
    return run_id, True, signed, True


def repair_torn_tail(path: Path) -> int:
    """Truncate a crash's torn last line; return the number of bytes removed.

    Refuses when the file has no torn tail, or when the tail looks like tampering rather than a
    crash, so repair can never hide an edit.
    """
    lines, tail = _split(path)
    if tail is None:
        raise UsageError(
            f"nothing to repair: the trace ends with a complete record: path={str(path)!r}"
        )
    if _torn_is_tampering(tail):
        raise UsageError(
            f"the last line is a whole record plus extra bytes, which is not a crash; refusing to repair: path={str(path)!r}"
        )
    size = sum(len(line) + 1 for line in lines)
    with Path(path).open("r+b") as fh:
        fh.truncate(size)
    return len(tail)

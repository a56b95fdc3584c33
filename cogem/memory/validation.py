"""Input checks every Memory implementation shares.

The reference store and the chromadb store call the same functions, so both reject exactly the
same inputs, always with :class:`cogem.errors.InputError` and always before anything is written.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, get_args

from pydantic import ValidationError

from cogem.errors import InputError
from cogem.memory.base import MemoryKind, MemoryRecord, MetaValue
from cogem.scoring import ScoringWeights

__all__ = [
    "KINDS",
    "MAX_META_KEYS",
    "MAX_META_STRING",
    "check_batch",
    "check_filters",
    "check_ids",
    "check_query",
    "check_ranking",
    "records_from_dicts",
]

KINDS: frozenset[str] = frozenset(get_args(MemoryKind))
MAX_META_KEYS = 32
MAX_META_STRING = 1000
# Metadata keys become chroma metadata keys (prefixed ``m.``) and where-clause keys, so they are
# kept to a plain identifier alphabet: no ``$`` operators, no separators chroma interprets.
_META_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_INT64 = (-(2**63), 2**63 - 1)


def _error_text(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "record"
    return f"{where}: {first['msg']}"


def records_from_dicts(items: Sequence[Mapping[str, Any]]) -> list[MemoryRecord]:
    """Build records from plain mappings (JSON, an API body), as :class:`InputError` on failure.

    >>> [r.id for r in records_from_dicts([{"id": "n1", "text": "be kind", "source": "me"}])]
    ['n1']
    """
    if isinstance(items, str | bytes | Mapping) or not isinstance(items, Sequence):
        raise InputError(f"records must be a list of objects, got {type(items).__name__}")
    records = []
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise InputError(f"records[{i}] is a {type(item).__name__}, not an object")
        try:
            records.append(MemoryRecord.model_validate(dict(item)))
        except ValidationError as exc:
            raise InputError(
                f"records[{i}] is not a valid memory record: {_error_text(exc)}"
            ) from exc
    return records


def _check_meta_value(value: object, what: str) -> MetaValue:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        if not _INT64[0] <= value <= _INT64[1]:
            raise InputError(f"{what} does not fit in a 64-bit integer")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InputError(f"{what} must be a finite number, got {value!r}")
        return value
    if isinstance(value, str):
        if len(value) > MAX_META_STRING:
            raise InputError(f"{what} is longer than {MAX_META_STRING} characters")
        if any((ord(c) < 32 and c not in "\n\t") or c == "\x7f" for c in value):
            raise InputError(f"{what} contains a control character")
        return value
    raise InputError(f"{what} must be a string, number or boolean, got {type(value).__name__}")


def _check_meta_key(key: object, what: str) -> str:
    if not isinstance(key, str) or not _META_KEY.match(key):
        raise InputError(
            f"{what} key {key!r} must be 1-64 letters, digits, '_', '.' or '-', "
            "starting with a letter or '_'"
        )
    return key


def _revalidated(record: MemoryRecord, index: int) -> MemoryRecord:
    # ``model_construct`` (or mutation through ``object.__setattr__``) skips validation, so the
    # batch is checked again here: a store must never hold a record the model would reject.
    try:
        return MemoryRecord.model_validate(record.model_dump(warnings=False))
    except ValidationError as exc:
        raise InputError(
            f"records[{index}] is not a valid memory record: {_error_text(exc)}"
        ) from exc


def check_batch(records: Sequence[object]) -> list[MemoryRecord]:
    """Validate a whole batch before anything is written; duplicate ids are the caller's bug."""
    if isinstance(records, str | bytes) or not isinstance(records, Sequence):
        raise InputError(
            f"records must be a sequence of MemoryRecord, got {type(records).__name__}"
        )
    batch: list[MemoryRecord] = []
    seen: set[str] = set()
    for i, record in enumerate(records):
        if not isinstance(record, MemoryRecord):
            raise InputError(f"records[{i}] is a {type(record).__name__}, not a MemoryRecord")
        record = _revalidated(record, i)
        if record.id in seen:
            raise InputError(f"duplicate id {record.id!r} in one add() batch (records[{i}])")
        seen.add(record.id)
        if len(record.metadata) > MAX_META_KEYS:
            raise InputError(f"records[{i}] has more than {MAX_META_KEYS} metadata keys")
        for key, value in record.metadata.items():
            _check_meta_key(key, f"records[{i}].metadata")
            _check_meta_value(value, f"records[{i}].metadata[{key!r}]")
        batch.append(record)
    return batch


def check_query(query: object, k: object) -> str:
    """Validate a search request; return the query unchanged."""
    if not isinstance(query, str):
        raise InputError(f"memory query must be a string, got {type(query).__name__}")
    if not query.strip():
        raise InputError("memory query is empty; pass the text to search for")
    if isinstance(k, bool) or not isinstance(k, int):
        raise InputError(f"k must be an int, got {type(k).__name__}")
    if k < 1:
        raise InputError(f"k must be >= 1, got {k}")
    return query


def check_ids(ids: object) -> list[str]:
    """Validate ids for get/forget; return them without repeats, first occurrence first."""
    if isinstance(ids, str | bytes) or not isinstance(ids, Sequence):
        raise InputError(f"ids must be a list of strings, got {type(ids).__name__}")
    unique: dict[str, None] = {}
    for i, rid in enumerate(ids):
        if not isinstance(rid, str) or not _ID.match(rid):
            raise InputError(
                f"ids[{i}] = {rid!r} is not a memory id (1-128 letters, digits, '.', '_', ':', '-')"
            )
        unique.setdefault(rid)
    return list(unique)


def check_filters(
    kinds: object, where: object
) -> tuple[tuple[str, ...] | None, dict[str, MetaValue]]:
    """Validate search filters; return ``(kinds or None, where as a dict)``."""
    kind_list: tuple[str, ...] | None = None
    if kinds is not None:
        if isinstance(kinds, str | bytes) or not isinstance(kinds, Sequence):
            raise InputError(f"kinds must be a list of kinds, got {type(kinds).__name__}")
        if not kinds:
            raise InputError("kinds is empty; pass None to search every kind")
        for kind in kinds:
            if kind not in KINDS:
                raise InputError(f"unknown memory kind {kind!r}; expected one of {sorted(KINDS)}")
        kind_list = tuple(sorted(set(kinds)))
    clauses: dict[str, MetaValue] = {}
    if where is not None:
        if not isinstance(where, Mapping):
            raise InputError(
                f"where must be a mapping of metadata key to value, got {type(where).__name__}"
            )
        if len(where) > MAX_META_KEYS:
            raise InputError(f"where has more than {MAX_META_KEYS} keys")
        for key, value in where.items():
            _check_meta_key(key, "where")
            clauses[key] = _check_meta_value(value, f"where[{key!r}]")
    return kind_list, clauses


def check_ranking(weights: object, now: object) -> tuple[ScoringWeights, datetime]:
    """The weights and the reference time of a search, with their defaults filled in."""
    if weights is None:
        weights = ScoringWeights()
    elif not isinstance(weights, ScoringWeights):
        raise InputError(f"weights must be a ScoringWeights, got {type(weights).__name__}")
    if now is None:
        now = datetime.now(UTC)
    elif not isinstance(now, datetime):
        raise InputError(f"now must be a datetime, got {type(now).__name__}")
    elif now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return weights, now

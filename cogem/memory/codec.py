"""How a :class:`MemoryRecord` is laid out in a chromadb collection, and back.

chroma metadata is flat (string, int, float or bool values), so a record is flattened:

=====================  ======================================================================
``kind``, ``source``   as in the record
``created_at``         ISO 8601 with its UTC offset (the exact value; read back by ``get``)
``created_at_ts``      the same instant as a POSIX float (for range filters on the server)
``importance``         float in [0, 1]
``prov_module``,       the provenance, present only when a reasoner wrote the record
``prov_run_id``,
``prov_record_hash``
``m.<key>``            the record's own metadata, prefixed so it can never shadow the above
``exact_floats``       JSON object: the exact value of every float above (see below)
=====================  ======================================================================

chromadb 1.5 moves metadata from its write-ahead log (JSON) into its tables with a float parser
that can land one ulp off (``0.47170425381154957`` comes back as ``0.4717042538115496``). The
flattened floats are good enough for filtering, but ``get`` must return the record exactly, so
the floats are also kept as JSON text (Python's ``repr`` round-trips) and read back from there.

The document is the record text. Decoding validates the result as a record again, so a corrupted
or foreign row is reported as a store error instead of leaking into a run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from cogem.errors import MemoryStoreError
from cogem.memory.base import MemoryRecord, MetaValue

__all__ = ["USER_PREFIX", "chroma_where", "from_chroma", "stale_keys", "to_chroma"]

USER_PREFIX = "m."
_EXACT = "exact_floats"
_PROV = {"module": "prov_module", "run_id": "prov_run_id", "record_hash": "prov_record_hash"}


def to_chroma(record: MemoryRecord) -> dict[str, MetaValue]:
    """The flat chroma metadata of ``record`` (its text goes in the document)."""
    meta: dict[str, MetaValue] = {
        "kind": record.kind,
        "source": record.source,
        "created_at": record.created_at.isoformat(),
        "created_at_ts": record.created_at.timestamp(),
        "importance": float(record.importance),
    }
    if record.provenance is not None:
        for field, key in _PROV.items():
            meta[key] = getattr(record.provenance, field)
    for key, value in record.metadata.items():
        meta[USER_PREFIX + key] = value
    exact = {key: value for key, value in meta.items() if type(value) is float}
    exact.pop("created_at_ts")  # derived from created_at, never read back
    meta[_EXACT] = json.dumps(exact, sort_keys=True, allow_nan=False)
    return meta


def stale_keys(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> dict[str, None]:
    """Keys to delete on upsert: chroma *merges* upserted metadata into the stored one, so keys
    the new version no longer has must be set to None explicitly."""
    return {key: None for key in (old or {}) if key not in new}


def from_chroma(rid: str, document: str | None, meta: Mapping[str, Any] | None) -> MemoryRecord:
    """Rebuild the record stored under ``rid``."""
    meta = dict(meta or {})
    try:
        exact = json.loads(meta.get(_EXACT) or "{}")
    except (TypeError, ValueError) as exc:
        raise MemoryStoreError(f"stored memory record {rid!r} is unreadable: {exc}") from exc
    if isinstance(exact, dict):
        meta.update((k, v) for k, v in exact.items() if k in meta and isinstance(v, float))
    data: dict[str, Any] = {
        "id": rid,
        "text": document,
        "kind": meta.get("kind"),
        "source": meta.get("source"),
        "created_at": meta.get("created_at"),
        "importance": meta.get("importance"),
        "metadata": {
            key[len(USER_PREFIX) :]: value
            for key, value in meta.items()
            if key.startswith(USER_PREFIX)
        },
    }
    if "prov_module" in meta:
        data["provenance"] = {field: meta.get(key) for field, key in _PROV.items()}
    try:
        if isinstance(data["created_at"], str):
            data["created_at"] = datetime.fromisoformat(data["created_at"])
        return MemoryRecord.model_validate(data)
    except (ValidationError, ValueError) as exc:
        raise MemoryStoreError(f"stored memory record {rid!r} is unreadable: {exc}") from exc


def chroma_where(
    kinds: Sequence[str] | None, where: Mapping[str, MetaValue]
) -> dict[str, Any] | None:
    """The chroma ``where`` filter for a kind filter and metadata equalities (all must hold)."""
    clauses: list[dict[str, Any]] = []
    if kinds is not None:
        clauses.append({"kind": {"$in": list(kinds)}})
    clauses.extend({USER_PREFIX + key: {"$eq": value}} for key, value in where.items())
    if not clauses:
        return None
    if len(clauses) == 1:
        return clauses[0]
    return {"$and": clauses}

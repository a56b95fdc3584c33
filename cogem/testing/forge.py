"""Forge traces for tests: edit records, then re-chain so only the rule under test breaks.

Auditors' tools must catch bad runs even when the chain is intact (a buggy or malicious writer
hashes what it writes). This helper makes such traces on purpose.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cogem.canonical import canonical_json, sha256_json
from cogem.trace.events import GENESIS
from cogem.trace.seal import key_id, sign_head

__all__ = ["rewrite_trace"]

Edit = Callable[[list[dict[str, Any]]], list[dict[str, Any]] | None]


def rewrite_trace(
    path: Path, edit: Edit, *, out: Path | None = None, key: bytes | None = None
) -> Path:
    """Apply ``edit`` to the records of ``path`` (a list of dicts, edited in place or returned),
    then renumber, re-hash and re-seal them (signed when ``key`` is given) and write ``out``."""
    records = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]
    edited = edit(records)
    records = records if edited is None else edited
    prev = GENESIS
    lines = []
    for seq, record in enumerate(records):
        record.update(seq=seq, prev=prev)
        if record.get("type") == "seal":
            record.update(records=seq, head=prev, signature=None, key_id=None)
            if key is not None:
                record.update(
                    signature=sign_head(key, record["run_id"], seq, prev), key_id=key_id(key)
                )
        record.pop("hash", None)
        record["hash"] = prev = sha256_json(record)
        lines.append(canonical_json(record))
    target = out or Path(path)
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return target

"""Canonical JSON and its SHA-256: the one encoding every hash in cogem is computed over.

Sorted keys, no insignificant whitespace, UTF-8, NaN/Infinity refused (they are not JSON and would
make two machines disagree about a hash).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

__all__ = ["canonical_json", "sha256_hex", "sha256_json"]


def canonical_json(value: Any) -> str:
    """Serialize ``value`` canonically (sorted keys, compact, non-ASCII kept)."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def sha256_hex(data: str | bytes) -> str:
    """SHA-256 hex digest of text (UTF-8) or bytes."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return hashlib.sha256(raw).hexdigest()


def sha256_json(value: Any) -> str:
    """SHA-256 of the canonical JSON of ``value``."""
    return sha256_hex(canonical_json(value))

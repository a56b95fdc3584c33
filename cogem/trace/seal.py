"""The signed head: the last record of a finished trace.

The hash chain proves records were not changed, removed or reordered *between* the first and the
last; it cannot prove the tail was not cut off. The seal closes that gap: it names how many records
came before it and the hash of the last one, optionally HMAC-SHA256-signed with a key only the
operator holds (``COGEM_AUDIT_KEY``). An auditor holding the key then rejects any trace whose tail
was cut, even if the cut removed the seal itself.
"""

from __future__ import annotations

import hashlib
import hmac
import os

__all__ = ["AUDIT_KEY_ENV", "audit_key_from_env", "key_id", "sign_head"]

AUDIT_KEY_ENV = "COGEM_AUDIT_KEY"


def audit_key_from_env() -> bytes | None:
    """The audit key from ``COGEM_AUDIT_KEY`` (UTF-8), or None when unset or empty."""
    value = os.environ.get(AUDIT_KEY_ENV)
    return value.encode("utf-8") if value else None


def key_id(key: bytes) -> str:
    """A short public fingerprint of ``key``: says which key signed, reveals nothing of it."""
    return hashlib.sha256(b"cogem-key-id:" + key).hexdigest()[:16]


def sign_head(key: bytes, run_id: str, records: int, head: str) -> str:
    """HMAC-SHA256 over the run id, the record count before the seal and the head hash."""
    message = f"cogem-seal-v1\n{run_id}\n{records}\n{head}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()

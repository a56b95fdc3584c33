"""Vector memory: the Protocol, the chromadb store, the reference store and the seed data.

Importing this package is cheap: chromadb, sentence-transformers and torch load only when a
concrete class or :func:`open_memory` is first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from cogem.memory.base import Memory, MemoryHit, MemoryInfo, MemoryRecord, Provenance

if TYPE_CHECKING:
    from cogem.memory.chroma import ChromaMemory
    from cogem.memory.embedder import MiniLMEmbedding
    from cogem.memory.in_memory import InMemoryMemory
    from cogem.memory.seed import load_jsonl, open_memory, seed_records
    from cogem.memory.validation import records_from_dicts

__all__ = [
    "ChromaMemory",
    "InMemoryMemory",
    "Memory",
    "MemoryHit",
    "MemoryInfo",
    "MemoryRecord",
    "MiniLMEmbedding",
    "Provenance",
    "load_jsonl",
    "open_memory",
    "records_from_dicts",
    "seed_records",
]

_LAZY = {
    "ChromaMemory": "cogem.memory.chroma",
    "InMemoryMemory": "cogem.memory.in_memory",
    "MiniLMEmbedding": "cogem.memory.embedder",
    "load_jsonl": "cogem.memory.seed",
    "open_memory": "cogem.memory.seed",
    "seed_records": "cogem.memory.seed",
    "records_from_dicts": "cogem.memory.validation",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

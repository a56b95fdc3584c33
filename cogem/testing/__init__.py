"""Test doubles for cogem and for users' own reasoners: no weights, no downloads, deterministic.

>>> from cogem import Reasoner
>>> from cogem.testing import fake_runtime
>>> result = Reasoner.default().run("I kept the wallet I found.", fake_runtime(), trace_path=None)  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cogem.testing.fake_llm import SchemaFillingLLM, ScriptedLLM, instance_for_schema
from cogem.testing.forge import rewrite_trace
from cogem.testing.hash_embedding import HashEmbedding

__all__ = [
    "HashEmbedding",
    "SchemaFillingLLM",
    "ScriptedLLM",
    "fake_runtime",
    "instance_for_schema",
    "rewrite_trace",
]


def fake_runtime(
    llm: Any = None, *, home: Path | None = None, seed_memory: bool = True, **settings: Any
) -> Any:
    """A :class:`~cogem.Runtime` on fakes: a schema-filling LLM and an in-memory store with hash
    embeddings, seeded with the bundled norms. ``home`` (where traces go) defaults to a temp dir."""
    import tempfile

    from cogem.engine.runtime import Runtime
    from cogem.memory.in_memory import InMemoryMemory
    from cogem.memory.seed import seed_records
    from cogem.settings import Settings

    memory = InMemoryMemory(HashEmbedding())
    if seed_memory:
        memory.add(seed_records())
    home = home or Path(tempfile.mkdtemp(prefix="cogem-test-"))
    return Runtime(
        llm=llm or SchemaFillingLLM(), memory=memory, settings=Settings(home=home, **settings)
    )

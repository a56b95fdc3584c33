"""Test doubles and property-testing tools for cogem and for users' own reasoners.

No weights, no downloads, deterministic. The fakes need nothing beyond cogem; the hypothesis
tools (:func:`check_reasoner`, the strategies) need ``pip install 'cogem[testing]'`` and are
imported on first use.

>>> from cogem import Reasoner, verify_trace
>>> from cogem.testing import fake_runtime
>>> result = Reasoner.default().run("I kept the wallet I found.", fake_runtime())
>>> verify_trace(result.trace_path).ok
True
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cogem.testing.fake_llm import SchemaFillingLLM, ScriptedLLM, instance_for_schema
from cogem.testing.forge import rewrite_trace

if TYPE_CHECKING:
    from cogem.testing.check import check_reasoner, default_properties
    from cogem.testing.hash_embedding import HashEmbedding
    from cogem.testing.strategies import (
        HypothesisLLM,
        module_specs,
        outputs_for,
        reasoners,
        scenarios,
    )

__all__ = [
    "HashEmbedding",
    "HypothesisLLM",
    "SchemaFillingLLM",
    "ScriptedLLM",
    "check_reasoner",
    "default_properties",
    "fake_runtime",
    "instance_for_schema",
    "module_specs",
    "outputs_for",
    "reasoners",
    "rewrite_trace",
    "scenarios",
]

_LAZY = {
    "HashEmbedding": "cogem.testing.hash_embedding",
    "check_reasoner": "cogem.testing.check",
    "default_properties": "cogem.testing.check",
    "HypothesisLLM": "cogem.testing.strategies",
    "module_specs": "cogem.testing.strategies",
    "outputs_for": "cogem.testing.strategies",
    "reasoners": "cogem.testing.strategies",
    "scenarios": "cogem.testing.strategies",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'cogem.testing' has no attribute {name!r}")


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
    from cogem.testing.hash_embedding import HashEmbedding

    memory = InMemoryMemory(HashEmbedding())
    if seed_memory:
        memory.add(seed_records())
    home = home or Path(tempfile.mkdtemp(prefix="cogem-test-"))
    return Runtime(
        llm=llm or SchemaFillingLLM(), memory=memory, settings=Settings(home=home, **settings)
    )

"""The default memory end to end: real all-MiniLM-L6-v2, real chromadb, bundled seeds."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from cogem.memory import ChromaMemory, MiniLMEmbedding, open_memory, seed_records

# The model is loaded from the packaged folder; never let a test reach for the hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def embedding() -> MiniLMEmbedding:
    return MiniLMEmbedding()


@pytest.fixture(scope="module")
def memory(
    tmp_path_factory: pytest.TempPathFactory, embedding: MiniLMEmbedding
) -> Iterator[ChromaMemory]:
    with open_memory(tmp_path_factory.mktemp("home"), embedding=embedding) as mem:
        yield mem


def test_embeddings_are_384_dim_and_normalized(embedding: MiniLMEmbedding) -> None:
    vectors = np.asarray(embedding(["Keep your promises.", "Do not steal."]))
    assert vectors.shape == (2, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)


def test_store_is_seeded_with_minilm(memory: ChromaMemory) -> None:
    info = memory.info()
    assert (info.embedder_id, info.dimension) == ("sentence-transformers/all-MiniLM-L6-v2", 384)
    assert info.count == len(seed_records())


def test_broken_promise_finds_promise_norm(memory: ChromaMemory) -> None:
    hits = memory.search("I broke a promise to a friend", 3)
    assert any(h.id.startswith("norm.promise.") for h in hits), [h.id for h in hits]
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_default_embedding_reopens(tmp_path: Path) -> None:
    # A store has one user at a time, so this test seeds its own rather than the shared one.
    with open_memory(tmp_path) as first:
        count = first.count()
    with open_memory(tmp_path) as again:
        assert again.count() == count
        assert again.search("stealing from a shop", 1)

"""A deterministic, model-free embedding for tests.

Each lower-cased word token is hashed with SHA-256 into one of ``dimension`` buckets with a sign
taken from the same digest (the "hashing trick"), and the vector is L2-normalized. Texts sharing
words are therefore close under cosine distance, which is enough to test retrieval order without
loading a model. It is a real chromadb embedding function, so unit tests can run real chromadb.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import numpy as np
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings, Space

__all__ = ["HashEmbedding"]

_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*")


class HashEmbedding(EmbeddingFunction[Documents]):
    """Hashing-trick bag-of-words embedding; same text gives the same vector on every machine.

    >>> emb = HashEmbedding(dimension=16)
    >>> [len(v) for v in emb(["keep your promises", ""])]
    [16, 16]
    >>> emb.embedder_id
    'cogem-hash-v1-16'
    """

    def __init__(self, dimension: int = 64) -> None:
        if isinstance(dimension, bool) or not isinstance(dimension, int) or dimension < 2:
            raise ValueError(f"HashEmbedding dimension must be an int >= 2, got {dimension!r}")
        self._dimension = dimension

    @property
    def dimension(self) -> int:
        return self._dimension

    @property
    def embedder_id(self) -> str:
        # The version tag changes if the hashing scheme ever changes, so old stores are refused.
        return f"cogem-hash-v1-{self._dimension}"

    def _embed_one(self, text: str) -> np.ndarray[Any, np.dtype[np.float32]]:
        vec = np.zeros(self._dimension, dtype=np.float64)
        for token in _TOKEN.findall(text.lower()):
            digest = hashlib.sha256(token.encode("utf-8")).digest()
            bucket = int.from_bytes(digest[:8], "big") % self._dimension
            vec[bucket] += 1.0 if digest[8] & 1 else -1.0
        norm = float(np.linalg.norm(vec))
        if norm == 0.0:
            # No tokens (or signs cancelled): a zero vector has no cosine, so fall back to one
            # bucket chosen by the whole text.
            digest = hashlib.sha256(b"\0" + text.encode("utf-8")).digest()
            vec[int.from_bytes(digest[:8], "big") % self._dimension] = 1.0
            norm = 1.0
        return (vec / norm).astype(np.float32)

    def __call__(self, input: Documents) -> Embeddings:
        return [self._embed_one(text) for text in input]

    @staticmethod
    def name() -> str:
        return "cogem-hash"

    def get_config(self) -> dict[str, Any]:
        return {"dimension": self._dimension}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> HashEmbedding:
        return HashEmbedding(dimension=int(config.get("dimension", 64)))

    def default_space(self) -> Space:
        return "cosine"

    def __repr__(self) -> str:
        return f"HashEmbedding(dimension={self._dimension})"

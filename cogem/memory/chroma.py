"""The Memory Protocol over a persistent chromadb collection.

The collection uses cosine distance and always an explicit embedding function (never chroma's
default, which downloads a model). Its metadata records which embedder built it, because vectors
from two embedders are not comparable: opening a store with another embedder is an error, not a
silent mix. chromadb is imported here only, when a store is opened.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from cogem.errors import CogemError, ConfigError, MemoryStoreError
from cogem.memory.base import MemoryHit, MemoryInfo, MemoryRecord
from cogem.memory.in_memory import Embedder, check_batch, check_query, clamp_distance

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection

__all__ = ["DEFAULT_COLLECTION", "ChromaMemory", "MetaValue"]

DEFAULT_COLLECTION = "cogem-memory"
MetaValue = str | int | float | bool

_KEY_EMBEDDER = "cogem_embedder_id"
_KEY_DIMENSION = "cogem_dimension"
_KEY_FORMAT = "cogem_format"
_FORMAT = 1
_RESERVED = frozenset({_KEY_EMBEDDER, _KEY_DIMENSION, _KEY_FORMAT})
_COLLECTION_NAME = re.compile(r"^[A-Za-z0-9._-]{3,512}$")


class ChromaMemory:
    """A persistent vector memory in ``path`` (a chromadb directory).

    ``embedding`` must be a ``chromadb.EmbeddingFunction`` that also has ``embedder_id`` and
    ``dimension`` (:class:`~cogem.memory.MiniLMEmbedding`, or ``cogem.testing.HashEmbedding``
    in tests). Use it as a context manager, or call :meth:`close`, to release the SQLite files.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        embedding: Embedder,
        collection: str = DEFAULT_COLLECTION,
    ) -> None:
        if not _COLLECTION_NAME.match(collection):
            raise ConfigError(
                "collection name must be 3-512 characters of letters, digits, '.', '_' or '-'",
                field="collection",
            )
        for attr in ("name", "get_config", "build_from_config"):
            if not callable(getattr(embedding, attr, None)):
                raise ConfigError(
                    f"embedding {type(embedding).__name__} is not a chromadb EmbeddingFunction "
                    f"(no {attr}()); use MiniLMEmbedding or HashEmbedding",
                    field="embedding",
                )
        self._path = Path(path)
        self._name = collection
        self._embedding = embedding
        self._client, self._collection = self._open()

    # -- opening -----------------------------------------------------------------------------

    def _open(self) -> tuple[ClientAPI, Collection]:
        import chromadb
        from chromadb.config import Settings
        from chromadb.errors import NotFoundError
        from chromadb.utils.embedding_functions import register_embedding_function

        # A store reopened in a fresh process deserializes its embedding-function config by
        # name, which only works for registered classes.
        register_embedding_function(type(self._embedding))  # type: ignore[no-untyped-call]
        try:
            self._path.mkdir(parents=True, exist_ok=True)
            client = chromadb.PersistentClient(
                path=str(self._path), settings=Settings(anonymized_telemetry=False)
            )
        except Exception as exc:
            raise MemoryStoreError(
                f"cannot open memory store at {str(self._path)!r}: {exc}"
            ) from exc
        try:
            # Read the existing collection without an embedding function first, so an embedder
            # mismatch is reported in cogem's words before chroma's own name check fires.
            try:
                existing = client.get_collection(self._name, embedding_function=None)
            except NotFoundError:
                existing = None
            if existing is not None:
                self._check_identity(existing.metadata or {}, existing.configuration_json)
            collection = client.get_or_create_collection(
                self._name,
                configuration={"hnsw": {"space": "cosine"}},
                metadata=self._identity(),
                embedding_function=self._embedding,  # type: ignore[arg-type]
            )
            # Re-check: another process may have created it between the two calls.
            self._check_identity(collection.metadata or {}, collection.configuration_json)
        except CogemError:
            _close(client)
            raise
        except Exception as exc:
            _close(client)
            raise MemoryStoreError(
                f"cannot open collection {self._name!r} in memory store at "
                f"{str(self._path)!r}: {exc}"
            ) from exc
        return client, collection

    def _identity(self) -> dict[str, MetaValue]:
        return {
            _KEY_EMBEDDER: self._embedding.embedder_id,
            _KEY_DIMENSION: self._embedding.dimension,
            _KEY_FORMAT: _FORMAT,
        }

    def _check_identity(self, metadata: Any, configuration: Any) -> None:
        where = self._where()
        stored_id = metadata.get(_KEY_EMBEDDER)
        stored_dim = metadata.get(_KEY_DIMENSION)
        if stored_id is None:
            raise MemoryStoreError(
                f"{where} was not created by cogem (no embedder id in its metadata); "
                "use another path or collection name"
            )
        want_id, want_dim = self._embedding.embedder_id, self._embedding.dimension
        if stored_id != want_id or stored_dim != want_dim:
            raise MemoryStoreError(
                f"{where} was built with embedder {stored_id!r} ({stored_dim} dims) but is being "
                f"opened with {want_id!r} ({want_dim} dims); open it with the same embedder or "
                "use a new store (another path, or another COGEM_HOME)"
            )
        space = ((configuration or {}).get("hnsw") or {}).get("space")
        if space != "cosine":
            raise MemoryStoreError(f"{where} uses distance {space!r}, cogem needs 'cosine'")

    # -- Memory Protocol ---------------------------------------------------------------------

    @property
    def path(self) -> Path:
        return self._path

    @property
    def collection_name(self) -> str:
        return self._name

    @property
    def embedding(self) -> Embedder:
        return self._embedding

    def info(self) -> MemoryInfo:
        return MemoryInfo(
            backend="chromadb",
            collection=self._name,
            embedder_id=self._embedding.embedder_id,
            dimension=self._embedding.dimension,
            count=self.count(),
        )

    def add(self, records: Sequence[MemoryRecord]) -> None:
        batch = check_batch(records)
        if not batch:
            return
        try:
            step = max(1, self._client.get_max_batch_size())
            for start in range(0, len(batch), step):
                chunk = batch[start : start + step]
                self._collection.upsert(
                    ids=[r.id for r in chunk],
                    documents=[r.text for r in chunk],
                    metadatas=[{"kind": r.kind, "source": r.source} for r in chunk],
                )
        except CogemError:
            raise
        except Exception as exc:
            raise MemoryStoreError(f"cannot write to {self._where()}: {exc}") from exc

    def search(self, query: str, k: int) -> list[MemoryHit]:
        check_query(query, k)
        total = self.count()
        if total == 0:
            return []
        # Fetch a margin past k so equal-distance records at the cut are ordered by id, as in
        # the reference implementation, rather than by HNSW internals.
        fetch = min(total, k + max(k, 8))
        try:
            result = self._collection.query(
                query_texts=[query],
                n_results=fetch,
                include=["documents", "metadatas", "distances"],
            )
            ids = result["ids"][0]
            docs = (result["documents"] or [[]])[0]
            metas = (result["metadatas"] or [[]])[0]
            dists = (result["distances"] or [[]])[0]
            rows = sorted(
                zip(ids, docs, metas, dists, strict=True), key=lambda r: (float(r[3]), r[0])
            )
            hits = []
            for rid, doc, meta, dist in rows[:k]:
                distance, score = clamp_distance(float(dist))
                meta = meta or {}
                hits.append(
                    MemoryHit.model_validate(
                        {
                            "id": rid,
                            "text": doc,
                            "kind": meta.get("kind"),
                            "source": meta.get("source"),
                            "distance": distance,
                            "score": score,
                        }
                    )
                )
        except CogemError:
            raise
        except Exception as exc:
            raise MemoryStoreError(f"cannot search {self._where()}: {exc}") from exc
        return hits

    def count(self) -> int:
        try:
            return int(self._collection.count())
        except Exception as exc:
            raise MemoryStoreError(f"cannot count {self._where()}: {exc}") from exc

    # -- store metadata (seed digest and similar bookkeeping) ---------------------------------

    def get_meta(self, key: str) -> MetaValue | None:
        """A value from the collection's metadata, or None."""
        value = (self._collection.metadata or {}).get(key)
        return value if isinstance(value, str | int | float | bool) else None

    def set_meta(self, key: str, value: MetaValue) -> None:
        """Set one collection-metadata value (embedder identity keys are read-only)."""
        if key in _RESERVED:
            raise ConfigError(f"metadata key {key!r} is managed by cogem", field="key")
        merged: dict[str, Any] = dict(self._collection.metadata or {})
        merged[key] = value
        try:
            # chroma replaces the whole metadata mapping on modify, hence the merge.
            self._collection.modify(metadata=merged)
        except Exception as exc:
            raise MemoryStoreError(f"cannot update metadata of {self._where()}: {exc}") from exc

    # -- lifetime ----------------------------------------------------------------------------

    def close(self) -> None:
        """Release the store's files; the object is unusable afterwards."""
        _close(self._client)

    def __enter__(self) -> ChromaMemory:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _where(self) -> str:
        return f"memory store at {str(self._path)!r} (collection {self._name!r})"

    def __repr__(self) -> str:
        return f"ChromaMemory({str(self._path)!r}, collection={self._name!r})"


def _close(client: object) -> None:
    # ``close()`` appeared during chromadb 1.x; older clients just drop their handles when freed.
    close = getattr(client, "close", None)
    if callable(close):
        close()

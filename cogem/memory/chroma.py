"""The Memory Protocol over a chromadb collection, embedded (a directory) or on a chroma server.

The collection uses cosine distance and always an explicit embedding function (never chroma's
default, which downloads a model). Its metadata records which embedder built it, because vectors
from two embedders are not comparable: opening a store with another embedder is an error, not a
silent mix. chromadb is imported only when a store is opened.

Search asks chroma for a relevance-ordered candidate pool (``max(4k, 32)`` nearest, with the kind
and metadata filters applied inside chroma), then scores the pool exactly like the reference
:class:`~cogem.memory.in_memory.InMemoryMemory` does. A record outside the pool can therefore only
be missed when recency or importance would have lifted an irrelevant record above the pool.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from cogem.errors import CogemError, ConfigError, MemoryStoreError
from cogem.memory.base import MemoryHit, MemoryInfo, MemoryKind, MemoryRecord, MetaValue
from cogem.memory.chroma_client import Connection
from cogem.memory.codec import chroma_where, from_chroma, stale_keys, to_chroma
from cogem.memory.compaction import rebuild, recover, scrub_files
from cogem.memory.in_memory import Embedder, embed_matrix, given_vectors
from cogem.memory.ranking import rank
from cogem.memory.validation import (
    check_batch,
    check_filters,
    check_ids,
    check_query,
    check_ranking,
)
from cogem.scoring import ScoringWeights

if TYPE_CHECKING:
    from chromadb.api.models.Collection import Collection

__all__ = ["DEFAULT_COLLECTION", "POOL_MIN", "ChromaMemory", "MetaValue"]

DEFAULT_COLLECTION = "cogem-memory"
POOL_MIN = 32

_KEY_EMBEDDER = "cogem_embedder_id"
_KEY_DIMENSION = "cogem_dimension"
_KEY_FORMAT = "cogem_format"
_FORMAT = 2  # 2: created_at / importance / provenance / user metadata in record metadata
_RESERVED = frozenset({_KEY_EMBEDDER, _KEY_DIMENSION, _KEY_FORMAT})
# Room is left for the ".compacting" suffix of the temporary collection.
_COLLECTION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,198}[A-Za-z0-9]$")


class ChromaMemory:
    """A vector memory in a chromadb collection: embedded in ``path``, or on the chroma server
    at ``url`` (``http://host:port``; the server serializes writers, so no lock is taken).

    Embedded, the process holds an exclusive lock on ``<path>/cogem.lock`` until :meth:`close`;
    a second process opening the same store gets a :class:`MemoryStoreError` at once.

    ``embedding`` must be a ``chromadb.EmbeddingFunction`` that also has ``embedder_id`` and
    ``dimension`` (:class:`~cogem.memory.MiniLMEmbedding`, or ``cogem.testing.HashEmbedding``
    in tests). Use it as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        embedding: Embedder,
        collection: str = DEFAULT_COLLECTION,
        url: str | None = None,
    ) -> None:
        if not _COLLECTION_NAME.match(collection):
            raise ConfigError(
                "collection name must be 3-200 letters, digits, '.', '_' or '-', starting and "
                "ending with a letter or digit",
                field="collection",
            )
        for attr in ("name", "get_config", "build_from_config"):
            if not callable(getattr(embedding, attr, None)):
                raise ConfigError(
                    f"embedding {type(embedding).__name__} is not a chromadb EmbeddingFunction "
                    f"(no {attr}()); use MiniLMEmbedding or HashEmbedding",
                    field="embedding",
                )
        self._name = collection
        self._embedding = embedding
        self._conn: Connection | None = Connection(path, url=url)
        self._path, self._url = self._conn.path, self._conn.url
        try:
            self._coll = self._open_collection()
        except BaseException:
            self._conn.close()
            self._conn = None
            raise

    # -- opening -----------------------------------------------------------------------------

    @property
    def _connection(self) -> Connection:
        if self._conn is None:
            raise MemoryStoreError(f"{self._where()} is closed")
        return self._conn

    @property
    def _live(self) -> Collection:
        self._connection  # noqa: B018 - raises if the store was closed
        return self._coll

    def _open_collection(self) -> Collection:
        from chromadb.errors import NotFoundError
        from chromadb.utils.embedding_functions import register_embedding_function

        client = self._connection.client
        # A store reopened in a fresh process deserializes its embedding-function config by
        # name, which only works for registered classes.
        register_embedding_function(type(self._embedding))  # type: ignore[no-untyped-call]
        try:
            recover(client, self._name)
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
            raise
        except Exception as exc:
            raise MemoryStoreError(f"cannot open {self._where()}: {exc}") from exc
        return collection

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
        stored_format = metadata.get(_KEY_FORMAT)
        if stored_format != _FORMAT:
            raise MemoryStoreError(
                f"{where} has record format {stored_format!r}, this cogem reads format "
                f"{_FORMAT}; move the old store aside (a seeded default store is rebuilt on the "
                "next open)"
            )

    # -- Memory Protocol ---------------------------------------------------------------------

    @property
    def path(self) -> Path | None:
        """The store directory (embedded), or None for a chroma server."""
        return self._path

    @property
    def url(self) -> str | None:
        return self._url

    @property
    def collection_name(self) -> str:
        return self._name

    @property
    def embedding(self) -> Embedder:
        return self._embedding

    def info(self) -> MemoryInfo:
        return MemoryInfo(
            backend="chromadb" if self._connection.local else "chromadb-server",
            collection=self._name,
            embedder_id=self._embedding.embedder_id,
            dimension=self._embedding.dimension,
            count=self.count(),
        )

    def _batch_size(self) -> int:
        return max(1, min(self._connection.client.get_max_batch_size(), 1000))

    def add(self, records: Sequence[MemoryRecord], *, embeddings: object = None) -> None:
        """Validate the whole batch, then upsert it. ``embeddings`` (one row per record) skips
        the embedder, for callers that already hold the vectors."""
        batch = check_batch(records)
        if not batch:
            return
        dim = self._embedding.dimension
        if embeddings is None:
            matrix = embed_matrix(self._embedding, [r.text for r in batch])
        else:
            matrix = given_vectors(embeddings, len(batch), dim)
        try:
            step = self._batch_size()
            for start in range(0, len(batch), step):
                chunk = batch[start : start + step]
                ids = [r.id for r in chunk]
                metas = [to_chroma(r) for r in chunk]
                old = self._live.get(ids=ids, include=["metadatas"])
                old_meta = dict(zip(old["ids"], old["metadatas"] or [], strict=True))
                for rid, meta in zip(ids, metas, strict=True):
                    meta.update(stale_keys(old_meta.get(rid), meta))  # type: ignore[arg-type]
                self._live.upsert(
                    ids=ids,
                    embeddings=matrix[start : start + step].astype("float32"),
                    documents=[r.text for r in chunk],
                    metadatas=metas,  # type: ignore[arg-type]
                )
        except CogemError:
            raise
        except Exception as exc:
            raise MemoryStoreError(f"cannot write to {self._where()}: {exc}") from exc

    def search(
        self,
        query: str,
        k: int,
        *,
        kinds: Sequence[MemoryKind] | None = None,
        where: Mapping[str, MetaValue] | None = None,
        weights: ScoringWeights | None = None,
        now: datetime | None = None,
        query_embedding: object = None,
    ) -> list[MemoryHit]:
        check_query(query, k)
        kind_filter, clauses = check_filters(kinds, where)
        weights, now = check_ranking(weights, now)
        dim = self._embedding.dimension
        if query_embedding is None:
            vector = embed_matrix(self._embedding, [query])
        else:
            vector = given_vectors([query_embedding], 1, dim)
        try:
            # chroma returns fewer rows when fewer records match, so no count() round trip.
            result = self._live.query(
                query_embeddings=vector.astype("float32"),
                n_results=max(4 * k, POOL_MIN),
                where=chroma_where(kind_filter, clauses),
                include=["documents", "metadatas", "distances"],
            )
            rows = zip(
                result["ids"][0],
                (result["documents"] or [[]])[0],
                (result["metadatas"] or [[]])[0],
                (result["distances"] or [[]])[0],
                strict=True,
            )
            candidates = [
                (from_chroma(rid, doc, meta), float(dist)) for rid, doc, meta, dist in rows
            ]
        except CogemError:
            raise
        except Exception as exc:
            raise MemoryStoreError(f"cannot search {self._where()}: {exc}") from exc
        return rank(candidates, k, weights, now)

    def get(self, ids: Sequence[str]) -> list[MemoryRecord]:
        wanted = check_ids(ids)
        found: dict[str, MemoryRecord] = {}
        try:
            step = self._batch_size()
            for start in range(0, len(wanted), step):
                got = self._live.get(
                    ids=wanted[start : start + step], include=["documents", "metadatas"]
                )
                rows = zip(got["ids"], got["documents"] or [], got["metadatas"] or [], strict=True)
                for rid, doc, meta in rows:
                    found[rid] = from_chroma(rid, doc, meta)
        except CogemError:
            raise
        except Exception as exc:
            raise MemoryStoreError(f"cannot read {self._where()}: {exc}") from exc
        return [found[i] for i in wanted if i in found]

    def forget(self, ids: Sequence[str]) -> int:
        """Delete the records; their text stays in chroma's files until :meth:`compact`."""
        wanted = check_ids(ids)
        gone = 0
        try:
            step = self._batch_size()
            for start in range(0, len(wanted), step):
                present = self._live.get(ids=wanted[start : start + step], include=[])
                if present["ids"]:
                    self._live.delete(ids=present["ids"])
                    gone += len(present["ids"])
        except CogemError:
            raise
        except Exception as exc:
            raise MemoryStoreError(f"cannot delete from {self._where()}: {exc}") from exc
        return gone

    def ids(self) -> list[str]:
        """Every record id, sorted."""
        col = self._live
        try:
            return sorted(col.get(include=[])["ids"])
        except Exception as exc:
            raise MemoryStoreError(f"cannot list {self._where()}: {exc}") from exc

    def count(self) -> int:
        col = self._live
        try:
            return int(col.count())
        except Exception as exc:
            raise MemoryStoreError(f"cannot count {self._where()}: {exc}") from exc

    def compact(self) -> None:
        """Make :meth:`forget` final: rebuild the collection from the surviving records and, for
        an embedded store, scrub chroma's files (see :mod:`cogem.memory.compaction`). On a
        server only the rebuild happens (the server's files are its operator's business), and
        no other client may write meanwhile: their writes to the old collection would be lost."""
        conn = self._connection
        try:
            rebuild(conn.client, self._name, self._embedding, self._batch_size())
            if conn.local:
                assert conn.path is not None
                conn.disconnect()
                try:
                    scrub_files(conn.path)
                finally:
                    conn.reconnect()
            self._coll = self._open_collection()
        except CogemError:
            raise
        except Exception as exc:
            raise MemoryStoreError(f"cannot compact {self._where()}: {exc}") from exc

    # -- store metadata (seed digest and similar bookkeeping) ---------------------------------

    def get_meta(self, key: str) -> MetaValue | None:
        """A value from the collection's metadata, or None."""
        value = (self._live.metadata or {}).get(key)
        return value if isinstance(value, str | int | float | bool) else None

    def set_meta(self, key: str, value: MetaValue) -> None:
        """Set one collection-metadata value (embedder identity keys are read-only)."""
        if key in _RESERVED:
            raise ConfigError(f"metadata key {key!r} is managed by cogem", field="key")
        merged: dict[str, Any] = dict(self._live.metadata or {})
        merged[key] = value
        try:
            # chroma replaces the whole metadata mapping on modify, hence the merge.
            self._live.modify(metadata=merged)
        except Exception as exc:
            raise MemoryStoreError(f"cannot update metadata of {self._where()}: {exc}") from exc

    # -- lifetime ----------------------------------------------------------------------------

    def close(self) -> None:
        """Release the store (and its lock); the object is unusable afterwards. Idempotent."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.close()

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
        where = (
            f"memory store at {str(self._path)!r}" if self._path else f"chroma server {self._url}"
        )
        return f"{where} (collection {self._name!r})"

    def __repr__(self) -> str:
        return f"ChromaMemory({self._where()})"

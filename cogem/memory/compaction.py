"""Making ``forget`` final: rebuild the collection, then scrub chroma's files.

What chromadb 1.5 keeps, and where (embedded mode, one directory per store):

- ``chroma.sqlite3`` — ``embeddings`` and ``embedding_metadata`` (ids, flattened metadata and the
  document under ``chroma:document``), the FTS5 trigram index ``embedding_fulltext_search*`` (a
  second copy of every document plus its index b-trees), and ``embeddings_queue``, the
  write-ahead log: every add/upsert row carries the full vector, document and metadata, and rows
  are purged only after the HNSW segment has persisted past them (small stores keep them all).
  Deleting a record removes its rows, but SQLite leaves the old bytes in freed page space, the
  FTS5 index keeps the deleted document's terms until its segments are merged, and the log row
  of the original ``add`` stays.
- ``<segment uuid>/`` — the HNSW index: ``data_level0.bin`` holds every vector, deleted ones only
  marked, and ``index_metadata.pickle`` maps record ids to labels. ``delete_collection`` drops
  the collection's rows and its log rows but leaves this directory behind.

So :func:`rebuild` copies the surviving records into a fresh collection through chroma's public
API and deletes the old one (taking its log rows, vectors and ids with it), then, embedded only,
:func:`scrub_files` merges the FTS5 index (``optimize``), ``VACUUM``s the database (rewriting it
without free pages) and removes segment directories no collection references.

The rebuild is crash-safe: the copy goes to ``<name>.compacting`` and the old collection is
deleted only after the copy is complete; :func:`recover` (run at every open) finishes the rename
or drops a half-built copy.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cogem.errors import MemoryStoreError

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection

__all__ = ["compacting_name", "rebuild", "recover", "scrub_files"]

_HNSW_KEYS = (
    "space",
    "ef_construction",
    "ef_search",
    "max_neighbors",
    "resize_factor",
    "sync_threshold",
)
_SEGMENT_DIR = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_FTS = "embedding_fulltext_search"


def compacting_name(name: str) -> str:
    return f"{name}.compacting"


def _find(client: ClientAPI, name: str) -> Collection | None:
    from chromadb.errors import NotFoundError

    try:
        return client.get_collection(name, embedding_function=None)
    except NotFoundError:
        return None


def recover(client: ClientAPI, name: str) -> None:
    """Finish or undo a compaction of ``name`` that was interrupted."""
    tmp = _find(client, compacting_name(name))
    if tmp is None:
        return
    if _find(client, name) is not None:
        client.delete_collection(tmp.name)  # the copy was not finished: the original is intact
    else:
        tmp.modify(name=name)  # the original was already dropped: the copy is complete


def _configuration(collection: Collection) -> dict[str, Any]:
    hnsw = (collection.configuration_json or {}).get("hnsw") or {}
    return {"hnsw": {key: hnsw[key] for key in _HNSW_KEYS if hnsw.get(key) is not None}}


def rebuild(client: ClientAPI, name: str, embedding: Any, batch_size: int) -> None:
    """Replace collection ``name`` by a fresh copy of its current records."""
    old = client.get_collection(name, embedding_function=None)
    tmp_name = compacting_name(name)
    if _find(client, tmp_name) is not None:
        client.delete_collection(tmp_name)
    new = client.create_collection(
        tmp_name,
        configuration=_configuration(old),  # type: ignore[arg-type]
        metadata=old.metadata,
        embedding_function=embedding,
    )
    try:
        ids = old.get(include=[])["ids"]
        for start in range(0, len(ids), batch_size):
            got = old.get(
                ids=ids[start : start + batch_size],
                include=["embeddings", "documents", "metadatas"],
            )
            new.add(
                ids=got["ids"],
                embeddings=got["embeddings"],
                documents=got["documents"],
                metadatas=got["metadatas"],
            )
        copied = new.count()
        if copied != len(ids):
            raise MemoryStoreError(
                f"compaction copied {copied} of {len(ids)} records of collection {name!r}; "
                "the original is unchanged"
            )
    except BaseException:
        client.delete_collection(tmp_name)
        raise
    client.delete_collection(name)
    new.modify(name=name)


def scrub_files(path: Path) -> None:
    """With chroma disconnected: merge the full-text index, VACUUM, drop orphaned segments."""
    db = path / "chroma.sqlite3"
    if not db.is_file():
        raise MemoryStoreError(f"no chroma.sqlite3 in memory store at {str(path)!r}")
    fts_error: sqlite3.Error | None = None
    con = sqlite3.connect(db, isolation_level=None)
    try:
        con.execute("PRAGMA secure_delete = ON")
        live = {str(row[0]) for row in con.execute("SELECT id FROM segments")}
        has_fts = con.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (_FTS,)
        ).fetchone()
        if has_fts:
            try:
                # Merges every FTS5 segment into one, dropping the terms of deleted documents.
                con.execute(f"INSERT INTO {_FTS}({_FTS}) VALUES ('optimize')")
            except sqlite3.Error as exc:
                fts_error = exc
        con.execute("VACUUM")
    except sqlite3.Error as exc:
        raise MemoryStoreError(f"cannot compact {str(db)!r}: {exc}") from exc
    finally:
        con.close()
    for child in path.iterdir():
        if child.is_dir() and _SEGMENT_DIR.match(child.name) and child.name not in live:
            shutil.rmtree(child)
    if fts_error is not None:
        raise MemoryStoreError(
            f"compacted {str(db)!r} but could not merge its full-text index ({fts_error}); "
            "terms of forgotten records may remain in it"
        )

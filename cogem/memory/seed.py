"""Seed memories: loading the bundled JSONL files and opening the default store.

The default store is seeded on first use and re-seeded whenever the bundled seed files change:
the SHA-256 of the seed files is kept in the collection's metadata, so opening is cheap when
nothing changed and picks up new seed data when it did.

Seed records carry no ``created_at`` of their own; the loader gives them all
:data:`SEED_CREATED_AT`, the date the bundled seed set was written. A clock reading at seeding
time would make two stores seeded from the same files differ (and with them every recency
component a trace records), and a file's mtime is not preserved by git checkouts or wheels, so
neither is reproducible. A record may still set its own ``created_at``.
"""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from cogem.errors import ConfigError
from cogem.memory.base import MemoryRecord
from cogem.memory.chroma_client import URL_ENV
from cogem.memory.importer import iter_jsonl
from cogem.paths import bundled_dir, home_dir

if TYPE_CHECKING:
    from cogem.memory.chroma import ChromaMemory
    from cogem.memory.in_memory import Embedder

__all__ = [
    "SEED_CREATED_AT",
    "SEED_DIGEST_KEY",
    "load_jsonl",
    "open_memory",
    "seed_digest",
    "seed_files",
    "seed_records",
]

SEED_DIGEST_KEY = "cogem_seed_digest"
SEED_CREATED_AT = datetime(2026, 11, 26, tzinfo=UTC)
"""When the bundled seed set was written (its first commit); the created_at of seed records."""


def load_jsonl(path: str | Path, *, created_at: datetime = SEED_CREATED_AT) -> list[MemoryRecord]:
    """Read one JSONL file of memory records; blank lines are skipped.

    Records without a ``created_at`` get ``created_at`` (a fixed date, so loading is
    deterministic). Errors name the file, the 1-based line and, for invalid records, the field.
    """
    p = Path(path)
    records: list[MemoryRecord] = []
    seen: dict[str, int] = {}
    try:
        rows = list(iter_jsonl(p))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read memory file: {exc}", path=str(p)) from exc
    for lineno, data in rows:
        data.setdefault("created_at", created_at)
        try:
            record = MemoryRecord.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(part) for part in first["loc"]) or None
            raise ConfigError(
                f"line {lineno}: invalid memory record: {first['msg']}", path=str(p), field=field
            ) from exc
        if record.id in seen:
            raise ConfigError(
                f"line {lineno}: id {record.id!r} already used on line {seen[record.id]}",
                path=str(p),
                field="id",
            )
        seen[record.id] = lineno
        records.append(record)
    return records


def seed_files(directory: str | Path | None = None) -> list[Path]:
    """The seed files (``*.jsonl``) in ``directory`` (default: bundled ``memory/``), by name."""
    folder = Path(directory) if directory is not None else bundled_dir("memory")
    return sorted(folder.glob("*.jsonl"), key=lambda f: f.name)


def seed_records(directory: str | Path | None = None) -> list[MemoryRecord]:
    """All seed records, files in name order; an id used in two files is an error."""
    records: list[MemoryRecord] = []
    origin: dict[str, Path] = {}
    for file in seed_files(directory):
        for record in load_jsonl(file):
            if record.id in origin:
                raise ConfigError(
                    f"id {record.id!r} is also defined in {str(origin[record.id])!r}",
                    path=str(file),
                    field="id",
                )
            origin[record.id] = file
            records.append(record)
    return records


def seed_digest(directory: str | Path | None = None) -> str:
    """SHA-256 over the seed files' names and bytes, in name order, and the default seed date."""
    digest = hashlib.sha256()
    digest.update(f"created_at\0{SEED_CREATED_AT.isoformat()}\0".encode())
    for file in seed_files(directory):
        data = file.read_bytes()
        # Name and length framing keep two different file sets from hashing alike.
        digest.update(f"{file.name}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()


def open_memory(
    home: Path | None = None,
    *,
    embedding: Embedder | None = None,
    seed_dir: str | Path | None = None,
    url: str | None = None,
) -> ChromaMemory:
    """Open the memory store at ``<home>/memory/chroma``, seeding it when the seeds changed.

    With ``url`` (or ``$COGEM_CHROMA_URL``) set, the store is the ``cogem-memory`` collection of
    that chroma server instead (``home`` is then not used for memory). ``home`` defaults to
    :func:`cogem.paths.home_dir`, ``embedding`` to MiniLM, ``seed_dir`` to the bundled
    ``memory/`` folder. Re-seeding upserts, so it never duplicates records.
    """
    from cogem.memory.chroma import ChromaMemory

    if embedding is None:
        from cogem.memory.embedder import MiniLMEmbedding

        embedding = MiniLMEmbedding()
    if url is None:
        url = os.environ.get(URL_ENV, "").strip() or None
    if url is not None:
        memory = ChromaMemory(embedding=embedding, url=url)
    else:
        root = home if home is not None else home_dir()
        memory = ChromaMemory(Path(root) / "memory" / "chroma", embedding=embedding)
    try:
        digest = seed_digest(seed_dir)
        if memory.get_meta(SEED_DIGEST_KEY) != digest:
            memory.add(seed_records(seed_dir))
            memory.set_meta(SEED_DIGEST_KEY, digest)
    except BaseException:
        memory.close()
        raise
    return memory

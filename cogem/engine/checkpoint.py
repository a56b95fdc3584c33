"""Checkpoint stores for durable runs: SQLite by default, any LangGraph saver by choice.

Serialization never uses pickle. :class:`NoPickleSerializer` is LangGraph's msgpack serializer
restricted to its built-in allowlist of safe types (no arbitrary class is imported on load), and it
refuses to write or read a ``pickle`` blob: a checkpoint store someone else can write must not be a
way to run code in the resuming process.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from cogem.errors import CheckpointError, UsageError
from cogem.settings import Settings

__all__ = [
    "CHECKPOINT_FILE",
    "NoPickleSerializer",
    "default_checkpoint_path",
    "open_checkpointer",
]

CHECKPOINT_FILE = "checkpoints.sqlite"


class NoPickleSerializer(JsonPlusSerializer):
    """msgpack (safe-type allowlist only) for checkpoints; pickle is refused both ways.

    A subclass, not a wrapper, so LangGraph can still derive allowlists from it
    (``with_msgpack_allowlist`` clones keep this class and its refusals).
    """

    def __init__(self) -> None:
        # allowed_msgpack_modules=None: only LangGraph's SAFE_MSGPACK_TYPES are rebuilt on load.
        super().__init__(pickle_fallback=False, allowed_msgpack_modules=None)

    def dumps_typed(self, obj: Any) -> tuple[str, bytes]:
        try:
            kind, data = super().dumps_typed(obj)
        except (TypeError, ValueError) as exc:  # ormsgpack's encode error is a TypeError
            raise CheckpointError(
                f"cannot checkpoint a value of type {type(obj).__name__} without pickle: {exc}"
            ) from exc
        if kind == "pickle":  # pragma: no cover - pickle_fallback=False never produces it
            raise CheckpointError("refusing to write a pickled checkpoint value")
        return kind, data

    def loads_typed(self, data: tuple[str, bytes]) -> Any:
        kind = data[0]
        if kind == "pickle":
            raise CheckpointError(
                "refusing to load a pickled checkpoint value (cogem never writes pickle; the store was written by something else)"
            )
        try:
            return super().loads_typed(data)
        except (ValueError, TypeError, NotImplementedError) as exc:
            raise CheckpointError(f"a checkpoint value cannot be read ({kind}): {exc}") from exc


def default_checkpoint_path(settings: Settings) -> Path:
    """``<home>/checkpoints.sqlite``."""
    return settings.home / CHECKPOINT_FILE


@contextmanager
def open_checkpointer(location: str | Path) -> Iterator[BaseCheckpointSaver[Any]]:
    """A checkpoint saver for ``location``: a SQLite file path, or a ``postgresql://`` URL (needs
    ``pip install langgraph-checkpoint-postgres``). Closed on exit.

    An unreadable store is a :class:`CheckpointError` here, before any run starts.
    """
    text = str(location)
    if text.startswith(("postgresql://", "postgres://")):
        with _postgres(text) as saver:
            yield saver
        return
    path = Path(location).expanduser()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), check_same_thread=False)
    except (OSError, sqlite3.Error) as exc:
        raise CheckpointError(
            f"cannot open the checkpoint store: path={str(path)!r}: {exc}"
        ) from exc
    try:
        from langgraph.checkpoint.sqlite import SqliteSaver

        saver = SqliteSaver(conn, serde=NoPickleSerializer())
        try:
            saver.setup()
            conn.execute("SELECT count(*) FROM checkpoints").fetchone()
        except sqlite3.Error as exc:
            raise CheckpointError(
                f"the checkpoint store is unreadable ({exc}); it is not resumed or replaced: path={str(path)!r}"
            ) from exc
        yield saver
    finally:
        conn.close()


@contextmanager
def _postgres(url: str) -> Iterator[BaseCheckpointSaver[Any]]:
    try:
        from langgraph.checkpoint.postgres import PostgresSaver
    except ImportError:
        raise UsageError(
            "a postgresql:// checkpoint store needs `pip install langgraph-checkpoint-postgres`"
        ) from None
    with PostgresSaver.from_conn_string(url) as saver:
        saver.serde = NoPickleSerializer()
        saver.setup()
        yield saver

"""``cogem memory``: add, import, search, forget and inspect the memory store."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

memory_app = typer.Typer(
    help="Manage the vector memory reasoners read and write.", no_args_is_help=True
)
_out = Console()
_err = Console(stderr=True)

Kind = Annotated[str, typer.Option(help="semantic, precedent or episodic.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]


@contextmanager
def _store() -> Iterator[Any]:
    from cogem.memory.seed import open_memory
    from cogem.settings import Settings

    with _err.status("opening memory…"):
        memory = open_memory(Settings.from_env().home)
    try:
        yield memory
    finally:
        memory.close()


def _print(payload: Any) -> None:
    typer.echo(json.dumps(payload, indent=2, ensure_ascii=False, default=str))


@memory_app.command()
def add(
    text: Annotated[str, typer.Argument(help="The text to remember.")],
    id: Annotated[
        str | None, typer.Option(help="Record id (default: derived from the text).")
    ] = None,
    kind: Kind = "semantic",
    source: Annotated[str, typer.Option(help="Where the text comes from.")] = "cogem memory add",
    importance: Annotated[float, typer.Option(help="Importance in [0, 1].")] = 0.5,
    as_json: AsJson = False,
) -> None:
    """Add (or replace) one record."""
    from pydantic import ValidationError

    from cogem.canonical import sha256_hex
    from cogem.errors import InputError
    from cogem.memory.base import MemoryRecord

    try:
        record = MemoryRecord(
            id=id or f"note.{sha256_hex(text)[:20]}",
            text=text,
            kind=kind,  # type: ignore[arg-type]  # validated by the record
            source=source,
            importance=importance,
        )
    except ValidationError as exc:
        err = exc.errors()[0]
        raise InputError(f"invalid record: {'.'.join(map(str, err['loc']))}: {err['msg']}") from exc
    with _store() as memory:
        memory.add([record])
    if as_json:
        _print(record.model_dump(mode="json"))
    else:
        _out.print(f"added {record.id}", highlight=False)


@memory_app.command(name="import")
def import_(
    path: Annotated[Path, typer.Argument(help="A .jsonl or .csv file.")],
    map: Annotated[
        str | None, typer.Option("--map", help="FIELD=COLUMN pairs, e.g. text=statement,id=uid.")
    ] = None,
    kind: Annotated[str | None, typer.Option(help="Kind for rows without one.")] = None,
    source: Annotated[str | None, typer.Option(help="Source for rows without one.")] = None,
    batch_size: Annotated[int, typer.Option(min=1, max=5000)] = 256,
    as_json: AsJson = False,
) -> None:
    """Import records from a file; every row is validated before anything is written."""
    from cogem.errors import UsageError
    from cogem.memory.importer import load_records, parse_mapping

    if not path.is_file():
        raise UsageError(f"no such file: path={str(path)!r}")
    defaults = {k: v for k, v in {"kind": kind, "source": source}.items() if v is not None}
    records = load_records(path, parse_mapping(map), **defaults)
    columns = [TextColumn("importing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    with _store() as memory, Progress(*columns, console=_err, transient=True) as progress:
        task = progress.add_task("import", total=len(records))
        for start in range(0, len(records), batch_size):
            chunk = records[start : start + batch_size]
            memory.add(chunk)
            progress.advance(task, len(chunk))
        total = memory.count()
    if as_json:
        _print({"imported": len(records), "count": total})
    else:
        _out.print(
            f"imported {len(records)} records from {path} (store now holds {total})",
            highlight=False,
        )


@memory_app.command()
def search(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    k: Annotated[int, typer.Option("-k", min=1, max=50, help="How many hits.")] = 5,
    kind: Annotated[list[str] | None, typer.Option(help="Only these kinds (repeatable).")] = None,
    w_relevance: Annotated[float, typer.Option(help="Weight of relevance.")] = 1.0,
    w_recency: Annotated[float, typer.Option(help="Weight of recency.")] = 0.0,
    w_importance: Annotated[float, typer.Option(help="Weight of importance.")] = 0.0,
    half_life_hours: Annotated[float, typer.Option(help="Recency half-life.")] = 168.0,
    as_json: AsJson = False,
) -> None:
    """Search memory; shows each hit's score components."""
    from pydantic import ValidationError

    from cogem.errors import InputError
    from cogem.scoring import ScoringWeights

    try:
        weights = ScoringWeights(
            relevance=w_relevance,
            recency=w_recency,
            importance=w_importance,
            half_life_hours=half_life_hours,
        )
    except ValidationError as exc:
        raise InputError(f"bad weights: {exc.errors()[0]['msg']}") from exc
    with _store() as memory:
        hits = memory.search(query, k, kinds=kind or None, weights=weights)
    if as_json:
        _print([h.model_dump(mode="json") for h in hits])
        return
    table = Table(title=f"memory hits for {query!r}", show_lines=False)
    for column in ("id", "score", "relevance", "recency", "importance", "kind", "text"):
        table.add_column(column, overflow="fold")
    for h in hits:
        c = h.components
        table.add_row(
            h.id,
            f"{h.score:.3f}",
            f"{c.relevance:.3f}",
            f"{c.recency:.3f}",
            f"{c.importance:.3f}",
            h.kind,
            h.text,
        )
    _out.print(table)


@memory_app.command()
def forget(
    ids: Annotated[list[str], typer.Argument(help="Record ids to remove.")],
    compact: Annotated[
        bool, typer.Option(help="Also compact the store so the text is gone from disk.")
    ] = True,
    as_json: AsJson = False,
) -> None:
    """Remove records for good."""
    with _store() as memory:
        removed = memory.forget(ids)
        if compact and hasattr(memory, "compact"):
            memory.compact()
    if as_json:
        _print({"removed": removed})
    else:
        _out.print(f"forgot {removed} of {len(ids)} record(s)", highlight=False)


@memory_app.command()
def stats(as_json: AsJson = False) -> None:
    """Count, embedder and location of the store."""
    with _store() as memory:
        info = memory.info().model_dump(mode="json")
        info["path"] = str(getattr(memory, "path", ""))
    if as_json:
        _print(info)
    else:
        for key, value in info.items():
            _out.print(f"{key:<12} {value}", highlight=False)

"""Import memory records from JSONL or CSV files with a field mapping.

Any labelled file can become memory without code: ``--map text=statement,id=uid`` says which
column holds which record field. Every row is validated before anything is written, so a bad
row stops the import with its file and line and leaves the store unchanged.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from cogem.canonical import sha256_hex
from cogem.errors import ConfigError
from cogem.memory.base import MemoryRecord

__all__ = ["FIELDS", "iter_jsonl", "load_records", "parse_mapping"]

FIELDS = ("id", "text", "kind", "source", "importance", "created_at")


def parse_mapping(spec: str | None) -> dict[str, str]:
    """``"text=statement,id=uid"`` -> ``{"text": "statement", "id": "uid"}`` (record field -> column)."""
    mapping: dict[str, str] = {}
    for part in (spec or "").split(","):
        if not part.strip():
            continue
        field, sep, column = part.partition("=")
        field, column = field.strip(), column.strip()
        if not sep or not column or field not in FIELDS:
            raise ConfigError(
                f"bad field mapping {part!r}: use FIELD=COLUMN with FIELD one of {', '.join(FIELDS)}"
            )
        mapping[field] = column
    return mapping


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(1-based line number, object) for each non-blank line of a JSONL file; a line that is not
    a JSON object is a :class:`ConfigError` naming the file and line."""
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConfigError(
                    f"line {lineno}: invalid JSON ({exc.msg} at column {exc.colno})", path=str(path)
                ) from exc
            if not isinstance(row, dict):
                raise ConfigError(
                    f"line {lineno}: expected a JSON object, got {type(row).__name__}",
                    path=str(path),
                )
            yield lineno, row


def _rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        if path.suffix.lower() == ".csv":
            with path.open(newline="", encoding="utf-8") as fh:
                for lineno, row in enumerate(csv.DictReader(fh), start=2):
                    yield lineno, dict(row)
            return
        yield from iter_jsonl(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read import file: {exc}", path=str(path)) from exc


def load_records(
    path: str | Path, mapping: Mapping[str, str] | None = None, **defaults: Any
) -> list[MemoryRecord]:
    """Read every row of ``path`` (``.csv`` or JSONL) into validated records.

    ``mapping`` maps record fields to column names (default: same names). ``defaults`` fill
    fields a row lacks (e.g. ``kind="precedent"``, ``source="my-dataset"``). A row without an id
    gets one derived from its text, so importing the same file twice does not duplicate it.
    """
    path = Path(path)
    mapping = dict(mapping or {})
    records: list[MemoryRecord] = []
    seen: dict[str, int] = {}
    for lineno, row in _rows(path):
        data: dict[str, Any] = dict(defaults)
        for field in FIELDS:
            column = mapping.get(field, field)
            # An empty cell means "not given", except for the text, which must then fail as empty.
            if column in row and (row[column] not in (None, "") or field == "text"):
                data[field] = row[column]
        data.setdefault("source", f"import of {path.name}")
        if "text" in data and "id" not in data:
            data["id"] = f"import.{sha256_hex(str(data['text']))[:20]}"
        try:
            record = MemoryRecord.model_validate(data)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or None
            raise ConfigError(f"line {lineno}: {err['msg']}", path=str(path), field=where) from exc
        if record.id in seen:
            raise ConfigError(
                f"line {lineno}: id {record.id!r} already used on line {seen[record.id]}",
                path=str(path),
                field="id",
            )
        seen[record.id] = lineno
        records.append(record)
    return records

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cogem.errors import ConfigError
from cogem.memory.importer import load_records, parse_mapping


def test_jsonl_with_mapping_and_defaults(tmp_path: Path) -> None:
    path = tmp_path / "cases.jsonl"
    rows = [
        {"uid": "c1", "statement": "Return what you borrow.", "w": 0.9},
        {"statement": "Do not lie."},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    records = load_records(
        path, parse_mapping("id=uid,text=statement,importance=w"), kind="precedent"
    )
    assert records[0].id == "c1" and records[1].id.startswith("import.")
    assert records[0].importance == 0.9 and {r.kind for r in records} == {"precedent"}
    assert records[1].source == "import of cases.jsonl"
    again = load_records(
        path, parse_mapping("id=uid,text=statement,importance=w"), kind="precedent"
    )
    assert [r.id for r in again] == [r.id for r in records]  # derived ids are stable


def test_csv(tmp_path: Path) -> None:
    path = tmp_path / "norms.csv"
    path.write_text("text,kind\nKeep promises.,semantic\nShare fairly.,semantic\n")
    assert [r.text for r in load_records(path)] == ["Keep promises.", "Share fairly."]


@pytest.mark.parametrize(
    ("row", "field"),
    [
        ({"text": ""}, "text"),
        ({"text": "ok", "importance": "nan"}, "importance"),
        ({"text": "ok", "kind": "dream"}, "kind"),
        ({"text": "bell\x07"}, "text"),
    ],
)
def test_bad_rows_name_file_line_and_field(tmp_path: Path, row: dict, field: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"text": "fine"}) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(ConfigError) as info:
        load_records(path)
    assert (
        info.value.path == str(path) and info.value.field == field and "line 2" in str(info.value)
    )


def test_duplicate_ids_and_bad_mapping(tmp_path: Path) -> None:
    path = tmp_path / "dup.jsonl"
    path.write_text('{"id": "a", "text": "x"}\n{"id": "a", "text": "y"}\n')
    with pytest.raises(ConfigError, match="already used on line 1"):
        load_records(path)
    with pytest.raises(ConfigError, match="FIELD=COLUMN"):
        parse_mapping("colour=red")

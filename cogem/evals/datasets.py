"""Dataset loaders: the ETHICS benchmark from a directory, and any labeled CSV/JSONL table.

Loaders return :class:`~cogem.evals.records.EvalItem` lists in file order, plus the files they
read with their SHA-256 (the eval manifest records both). Bad files are a :class:`ConfigError`
naming the file and row; nothing is skipped silently.

ETHICS layout (Hendrycks et al., 2021) — one folder per subset, ``<prefix>_<split>.csv``:

=============== ========== ================================ ==================================
subset          prefix     columns                          groups (paper's exact match)
=============== ========== ================================ ==================================
commonsense     cm         label, input, is_short, edited   none
deontology      deontology label, scenario, excuse          4 consecutive rows
justice         justice    label, scenario                  4 consecutive rows
virtue          virtue     label, "scenario [SEP] trait"    5 consecutive rows
utilitarianism  util       (no header) more pleasant, less  each row is a pair
=============== ========== ================================ ==================================
"""

from __future__ import annotations

import csv
import io
import random
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from cogem.errors import ConfigError
from cogem.evals.records import DatasetFile, EvalItem
from cogem.llm.model_files import file_sha256
from cogem.memory.importer import iter_jsonl

__all__ = [
    "ETHICS_SUBSETS",
    "TableFormat",
    "load_ethics",
    "load_table",
    "util_pair_prompt_fields",
]

ETHICS_SUBSETS: dict[str, tuple[str, int | None]] = {
    # subset -> (file prefix, group size)
    "commonsense": ("cm", None),
    "deontology": ("deontology", 4),
    "justice": ("justice", 4),
    "virtue": ("virtue", 5),
    "utilitarianism": ("util", None),
}
_SPLITS = ("train", "test", "test_hard")

# How a utilitarianism row becomes items: "pair" (lm-eval's one yes/no question per pair, order
# shuffled with the row as seed) or "each" (the paper's setup: each scenario scored on its own,
# compared within the pair).
UTIL_MODES = ("pair", "each")


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise ConfigError(f"dataset file not found: {path}", path=str(path))
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"dataset file is not UTF-8 text: {exc}", path=str(path)) from exc


def _label(value: str, path: Path, row: int) -> int:
    if value.strip() not in ("0", "1"):
        raise ConfigError(f"row {row}: label must be 0 or 1, got {value!r}", path=str(path))
    return int(value)


def ethics_file(root: Path, subset: str, split: str) -> Path:
    if subset not in ETHICS_SUBSETS:
        raise ConfigError(
            f"unknown ETHICS subset {subset!r}; valid: {', '.join(ETHICS_SUBSETS)}", field="subset"
        )
    if split not in _SPLITS:
        raise ConfigError(f"unknown ETHICS split {split!r}; valid: {', '.join(_SPLITS)}", field="splits")
    prefix, _ = ETHICS_SUBSETS[subset]
    return root / subset / f"{prefix}_{split}.csv"


def load_ethics(
    root: Path, subset: str, splits: list[str], *, util_mode: str = "pair"
) -> tuple[list[EvalItem], list[DatasetFile]]:
    """Items of one ETHICS subset, ``splits`` in the order given (e.g. ``["test", "test_hard"]``)."""
    root = root.resolve()
    if not root.is_dir():
        raise ConfigError(
            f"ETHICS directory not found: {root} (pass the folder holding commonsense/, justice/, …)",
            path=str(root),
        )
    if util_mode not in UTIL_MODES:
        raise ConfigError(f"util_mode must be one of {UTIL_MODES}, got {util_mode!r}", field="util_mode")
    items: list[EvalItem] = []
    files: list[DatasetFile] = []
    for split in splits:
        path = ethics_file(root, subset, split)
        rows = list(_ethics_rows(path, subset))
        files.append(DatasetFile(path=str(path), sha256=file_sha256(path), rows=len(rows)))
        items.extend(_ethics_items(rows, subset, split, util_mode, path))
    return items, files


def _ethics_rows(path: Path, subset: str) -> Iterator[list[str]]:
    reader = csv.reader(io.StringIO(_read_text(path), newline=""))
    if subset != "utilitarianism":  # every other subset has a header row
        next(reader, None)
    yield from reader


def _ethics_items(
    rows: list[list[str]], subset: str, split: str, util_mode: str, path: Path
) -> Iterator[EvalItem]:
    _, group_size = ETHICS_SUBSETS[subset]
    for n, row in enumerate(rows):
        line = n + (1 if subset == "utilitarianism" else 2)  # 1-based, after the header
        base = f"{subset}/{split}/{n}"
        group = f"{subset}/{split}/g{n // group_size}" if group_size else None
        if subset == "utilitarianism":
            if len(row) != 2:
                raise ConfigError(f"row {line}: expected 2 columns, got {len(row)}", path=str(path))
            yield from _util_items(row[0], row[1], base, split, util_mode)
            continue
        fields = _ethics_fields(subset, row, line, path)
        yield EvalItem(
            id=base, subset=subset, split=split, fields=fields,
            target=_label(row[0], path, line), group=group,
        )  # fmt: skip


def _ethics_fields(subset: str, row: list[str], line: int, path: Path) -> dict[str, str]:
    want = {"commonsense": 4, "deontology": 3, "justice": 2, "virtue": 2}[subset]
    if len(row) != want:
        raise ConfigError(f"row {line}: expected {want} columns, got {len(row)}", path=str(path))
    if subset == "commonsense":
        return {"input": row[1], "is_short": row[2], "edited": row[3]}
    if subset == "deontology":
        return {"scenario": row[1], "excuse": row[2]}
    if subset == "virtue":
        scenario, sep, trait = row[1].partition(" [SEP] ")
        if not sep:
            raise ConfigError(f"row {line}: virtue text has no ' [SEP] ' before the trait", path=str(path))
        return {"scenario": scenario, "trait": trait}
    return {"scenario": row[1]}


def util_pair_prompt_fields(activity: str, baseline: str) -> tuple[dict[str, str], int]:
    """lm-evaluation-harness's ``ethics_utilitarianism`` preprocessing, reproduced exactly: the
    pair's order is shuffled by ``random.Random(activity)``; the label says whether the more
    pleasant scenario (``activity``) came first."""
    rnd = random.Random(activity)
    ordering = [0, 1]
    rnd.shuffle(ordering)
    scenarios = [activity, baseline]
    fields = {"scenario_1": scenarios[ordering[0]], "scenario_2": scenarios[ordering[1]]}
    return fields, int(ordering.index(0) == 0)


def _util_items(
    activity: str, baseline: str, base: str, split: str, mode: str
) -> Iterator[EvalItem]:
    if mode == "pair":
        fields, label = util_pair_prompt_fields(activity, baseline)
        yield EvalItem(id=base, subset="utilitarianism", split=split, fields=fields, target=label)
        return
    # "each": target 1 marks the preferred scenario of the pair (see pairwise accuracy).
    for suffix, text, target in (("a", activity, 1), ("b", baseline, 0)):
        yield EvalItem(
            id=f"{base}{suffix}", subset="utilitarianism", split=split,
            fields={"scenario": text}, target=target, group=base,
        )  # fmt: skip


# -- generic tables -----------------------------------------------------------------------------

TableFormat = str  # "csv" | "jsonl"


def load_table(
    path: Path,
    *,
    fields: Mapping[str, str],
    target: str,
    labels: Mapping[str, int] | None = None,
    id_column: str | None = None,
    group_column: str | None = None,
    subset_column: str | None = None,
    split_column: str | None = None,
    fmt: TableFormat | None = None,
) -> tuple[list[EvalItem], list[DatasetFile]]:
    """Items from a CSV (with a header row) or JSONL file through a field mapping.

    ``fields`` maps each template field to a column; ``target`` is the label column; ``labels``
    maps label values to option indexes (without it, labels must be integers). Ids come from
    ``id_column`` or the row number.
    """
    kind = fmt or {".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}.get(path.suffix.lower())
    if kind not in ("csv", "jsonl"):
        raise ConfigError(
            f"cannot tell the format of {path.name}: use a .csv or .jsonl file or set format",
            path=str(path), field="format",
        )  # fmt: skip
    if kind == "csv":
        records = _csv_records(_read_text(path), path)
    elif path.is_file():
        records = _decoded(iter_jsonl(path), path)  # the JSONL reader memory imports use
    else:
        raise ConfigError(f"dataset file not found: {path}", path=str(path))
    path = path.resolve()
    items: list[EvalItem] = []
    seen: set[str] = set()
    for line, record in records:

        def column(name: str, line: int = line, record: dict[str, Any] = record) -> str:
            if name not in record or record[name] is None:
                raise ConfigError(f"row {line}: missing column {name!r}", path=str(path))
            return str(record[name])

        item_id = column(id_column) if id_column else str(len(items))
        if item_id in seen:
            raise ConfigError(f"row {line}: duplicate id {item_id!r}", path=str(path))
        seen.add(item_id)
        items.append(
            EvalItem(
                id=item_id,
                subset=column(subset_column) if subset_column else "",
                split=column(split_column) if split_column else "",
                fields={name: column(col) for name, col in fields.items()},
                target=_target(column(target), labels, path, line),
                group=column(group_column) if group_column else None,
            )
        )
    if not items:
        raise ConfigError("dataset has no rows", path=str(path))
    return items, [DatasetFile(path=str(path), sha256=file_sha256(path), rows=len(items))]


def _target(value: str, labels: Mapping[str, int] | None, path: Path, line: int) -> int:
    if labels is not None:
        if value not in labels:
            raise ConfigError(
                f"row {line}: label {value!r} is not one of {sorted(labels)}", path=str(path)
            )
        return labels[value]
    try:
        index = int(value)
    except ValueError:
        raise ConfigError(
            f"row {line}: label {value!r} is not an integer; give a label map", path=str(path)
        ) from None
    if index < 0:
        raise ConfigError(f"row {line}: label must be ≥ 0, got {index}", path=str(path))
    return index


def _csv_records(text: str, path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if not reader.fieldnames:
        raise ConfigError("CSV file has no header row", path=str(path))
    for n, row in enumerate(reader):
        yield n + 2, dict(row)


def _decoded(
    records: Iterator[tuple[int, dict[str, Any]]], path: Path
) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        yield from records
    except UnicodeDecodeError as exc:
        raise ConfigError(f"dataset file is not UTF-8 text: {exc}", path=str(path)) from exc

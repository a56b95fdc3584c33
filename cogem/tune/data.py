"""Training data for a tuned module: suite items -> (prompt, options, correct option).

Items come from any dataset an eval suite reads (the suite's loader and field mapping). Test and
hard-test splits are refused: they are what the tuned module is judged on.

Two prompt formats:

* ``module`` — the module's own closed-set prompt and options (for ``judge``: its
  ``choice.prompt`` with the suite's scenario, options acceptable/wrong/unclear), rendered by the
  same function the engine scores with. Dataset labels become options through the suite's
  ``[reasoner] verdicts`` map. This is what a reasoner's module sees.
* ``suite`` — the suite's direct prompt and choices, i.e. what ``cogem eval --reasoner direct``
  scores.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cogem.engine.step import choice_prompt
from cogem.errors import ConfigError, HeldOutDataError, UsageError
from cogem.evals.records import DatasetFile, EvalItem
from cogem.evals.suite import Suite
from cogem.llm.base import Prompt
from cogem.spec import ModuleSpec

__all__ = ["HELD_OUT_SPLITS", "TrainExample", "TuneData", "ids_sha256", "load_tune_data"]

HELD_OUT_SPLITS = frozenset({"test", "test_hard"})
# A table file named like a test split (justice_test.csv, test_hard.jsonl) is refused too: with
# no split column, its name is the only sign of what it holds.
_TEST_FILE = re.compile(r"(^|[_.\-])test(_hard)?$", re.IGNORECASE)


@dataclass(frozen=True)
class TrainExample:
    item_id: str
    group: str
    prompt: Prompt
    options: list[str]
    answer: int
    """Index into ``options`` of the correct option (the continuation trained on)."""
    target: int
    """The item's label as a suite choice index."""
    to_choice: list[int | None]
    """Option index -> suite choice index (None: the option maps to no choice, e.g. unclear)."""


@dataclass(frozen=True)
class TuneData:
    train: list[TrainExample]
    val: list[TrainExample]
    files: list[DatasetFile]
    splits: list[str]
    verdict_map: dict[str, int]
    """Option -> suite choice index, for the options that map to one."""


def ids_sha256(ids: list[str]) -> str:
    """SHA-256 of the ids joined by newlines (the eval manifest's ``item_ids_sha256`` scheme)."""
    return hashlib.sha256("\n".join(ids).encode("utf-8")).hexdigest()


def check_held_out(splits: list[str], files: list[DatasetFile] | None = None) -> None:
    """Raise :class:`HeldOutDataError` if ``splits`` or a file name names a test split."""
    bad = sorted(set(splits) & HELD_OUT_SPLITS)
    if bad:
        raise HeldOutDataError(
            f"tuning never reads the {', '.join(bad)} split(s): they are held out for evaluation. "
            "Tune on --split train (a slice of it is held out for validation automatically)"
        )
    for file in files or []:
        if _TEST_FILE.search(Path(file.path).stem):
            raise HeldOutDataError(
                f"path={file.path!r} is named like a test split; tuning never reads test data. "
                "Pass a training file"
            )


def load_tune_data(
    suite: Suite,
    spec: ModuleSpec,
    *,
    data: Path | None,
    splits: list[str],
    prompt_format: Literal["module", "suite"],
    seed: int,
    max_items: int | None,
    val_fraction: float,
    val_max_items: int,
) -> TuneData:
    """Load, select and split the items of ``suite`` into training and held-out examples."""
    check_held_out(splits)
    items, files = _load(suite, data, splits)
    check_held_out(sorted({i.split for i in items if i.split}), files)
    if not items:
        raise UsageError(f"suite {suite.name!r} has no items in split(s) {splits}")
    verdicts = _verdict_map(suite, spec) if prompt_format == "module" else {}
    groups = _select(items, seed, max_items)
    val_target = min(val_max_items, round(val_fraction * sum(len(g) for g in groups)))
    val: list[EvalItem] = []
    train: list[EvalItem] = []
    for group in groups:
        (val if len(val) < val_target else train).extend(group)
    if not train:
        raise UsageError("no items left to train on after holding out the validation slice")

    def example(item: EvalItem) -> TrainExample:
        if prompt_format == "suite":
            return _suite_example(suite, item)
        return _module_example(suite, spec, item, verdicts)

    return TuneData(
        train=[example(i) for i in train],
        val=[example(i) for i in val],
        files=files,
        splits=splits,
        verdict_map=verdicts,
    )


def _load(suite: Suite, data: Path | None, splits: list[str]) -> tuple[list[EvalItem], list[DatasetFile]]:
    cfg = suite.config.data
    if cfg.loader == "ethics":
        # Only the requested splits are read: the suite's own splits are its test splits.
        narrowed = suite.config.model_copy(update={"data": cfg.model_copy(update={"splits": splits})})
        return Suite(narrowed, suite.source).load_items(data)
    items, files = suite.load_items(data)
    if cfg.split_column is None:
        # The file has no split column: the whole file is the training data. Its name was checked.
        check_held_out([], files)
        return items, files
    return [i for i in items if i.split in splits], files


def _select(items: list[EvalItem], seed: int, max_items: int | None) -> list[list[EvalItem]]:
    """Whole groups (ETHICS rows that are judged together) in a seeded order, so the held-out
    slice never shares a group with training, and ``max_items`` samples the whole file rather than
    its first rows (which ETHICS orders by topic)."""
    by_group: dict[str, list[EvalItem]] = {}
    for item in items:
        by_group.setdefault(item.group or item.id, []).append(item)
    order = list(by_group)
    random.Random(f"cogem-tune:{seed}").shuffle(order)
    chosen: list[list[EvalItem]] = []
    count = 0
    for key in order:
        if max_items is not None and count >= max_items:
            break
        chosen.append(by_group[key])
        count += len(by_group[key])
    return chosen


def _verdict_map(suite: Suite, spec: ModuleSpec) -> dict[str, int]:
    if spec.choice is None:
        raise ConfigError(
            f"module {spec.name!r} has no closed-set choice to tune; only modules with a "
            "[choice] section can be tuned",
            field="module",
        )
    mapping = suite.config.reasoner
    if mapping is None:
        raise ConfigError(
            f"suite {suite.name!r} has no [reasoner] verdicts map, so its labels cannot be read "
            f"as options of module {spec.name!r}; add one or use --format suite",
            path=str(suite.source), field="reasoner",
        )  # fmt: skip
    unknown = sorted(set(mapping.verdicts) - set(spec.choice.options))
    if unknown:
        raise ConfigError(
            f"suite verdicts {unknown} are not options of module {spec.name!r} "
            f"({', '.join(spec.choice.options)})",
            path=str(suite.source), field="reasoner.verdicts",
        )  # fmt: skip
    for choice in set(mapping.verdicts.values()):
        options = [o for o, c in mapping.verdicts.items() if c == choice]
        if len(options) > 1:
            raise ConfigError(
                f"suite choice {choice} maps to several options {options}; tuning needs one "
                "correct option per label",
                path=str(suite.source), field="reasoner.verdicts",
            )  # fmt: skip
    return dict(mapping.verdicts)


def _module_example(
    suite: Suite, spec: ModuleSpec, item: EvalItem, verdicts: dict[str, int]
) -> TrainExample:
    assert spec.choice is not None
    options = list(spec.choice.options)
    answer = next((i for i, o in enumerate(options) if verdicts.get(o) == item.target), None)
    if answer is None:
        raise ConfigError(
            f"item {item.id!r} has label {item.target}, which no verdict of module "
            f"{spec.name!r} maps to",
            path=str(suite.source), field="reasoner.verdicts",
        )  # fmt: skip
    # Fields the item does not provide (e.g. judge's action and memories, which perceive and
    # recall fill at run time) are rendered as absent, exactly as the engine renders None.
    reads: dict[str, object] = {name: item.fields.get(name) for name in spec.reads}
    if "scenario" in spec.reads:
        reads["scenario"] = suite.scenario(item)
    return TrainExample(
        item_id=item.id,
        group=item.group or item.id,
        prompt=choice_prompt(spec, reads),
        options=options,
        answer=answer,
        target=item.target,
        to_choice=[verdicts.get(o) for o in options],
    )


def _suite_example(suite: Suite, item: EvalItem) -> TrainExample:
    choices = list(suite.config.prompt.choices)
    return TrainExample(
        item_id=item.id,
        group=item.group or item.id,
        prompt=suite.prompt(item),
        options=choices,
        answer=item.target,
        target=item.target,
        to_choice=list(range(len(choices))),
    )

"""Tuning data: module-format examples, label mapping, held-out discipline, seeded selection."""

from __future__ import annotations

from pathlib import Path

import pytest

from cogem.engine.step import choice_prompt
from cogem.errors import ConfigError, HeldOutDataError
from cogem.evals.suite import load_suite
from cogem.spec import load_specs
from cogem.tune.data import check_held_out, load_tune_data

JUDGE = load_specs()["judge"]


def _ethics(root: Path, rows: int = 40) -> Path:
    folder = root / "justice"
    folder.mkdir(parents=True)
    for split in ("train", "test", "test_hard"):
        lines = ["label,scenario"] + [
            f"{i % 2},I deserve item {i} of {split} because I asked." for i in range(rows)
        ]
        (folder / f"justice_{split}.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def _load(root: Path, **kw: object) -> object:
    args: dict[str, object] = dict(
        data=root, splits=["train"], prompt_format="module", seed=0, max_items=None,
        val_fraction=0.25, val_max_items=100,
    )  # fmt: skip
    args.update(kw)
    return load_tune_data(load_suite("ethics_justice"), JUDGE, **args)  # type: ignore[arg-type]


@pytest.mark.parametrize("split", ["test", "test_hard"])
def test_test_splits_are_refused(tmp_path: Path, split: str) -> None:
    with pytest.raises(HeldOutDataError, match="held out"):
        _load(_ethics(tmp_path), splits=["train", split])


def test_a_file_named_like_a_test_split_is_refused() -> None:
    from cogem.evals.records import DatasetFile

    with pytest.raises(HeldOutDataError, match="test split"):
        check_held_out([], [DatasetFile(path="/d/justice_test_hard.csv", sha256="0", rows=1)])
    check_held_out(["train"], [DatasetFile(path="/d/contest_train.csv", sha256="0", rows=1)])


def test_module_examples_use_the_modules_own_prompt_and_mapped_options(tmp_path: Path) -> None:
    data = _load(_ethics(tmp_path))
    example = data.train[0]  # type: ignore[attr-defined]
    assert example.options == ["acceptable", "wrong", "unclear"]
    # Label 1 (reasonable) -> acceptable, 0 -> wrong, through the suite's [reasoner] verdicts.
    assert example.options[example.answer] == {1: "acceptable", 0: "wrong"}[example.target]
    assert example.to_choice == [1, 0, None]
    scenario = example.prompt.user.split("Scenario:\n", 1)[1].split("\n", 1)[0]
    reads = {name: None for name in JUDGE.reads} | {"scenario": scenario}
    assert example.prompt == choice_prompt(JUDGE, reads)
    assert scenario.startswith('I said: "I deserve item')


def test_held_out_slice_is_whole_groups_and_seeded(tmp_path: Path) -> None:
    root = _ethics(tmp_path)
    data = _load(root)
    train_groups = {e.group for e in data.train}  # type: ignore[attr-defined]
    val_groups = {e.group for e in data.val}  # type: ignore[attr-defined]
    # 25% of 40 items is 10; whole groups of 4 make it 12.
    assert len(data.val) == 12 and not train_groups & val_groups  # type: ignore[attr-defined]
    again = _load(root)
    assert [e.item_id for e in again.train] == [e.item_id for e in data.train]  # type: ignore[attr-defined]
    other = _load(root, seed=1)
    assert [e.item_id for e in other.val] != [e.item_id for e in data.val]  # type: ignore[attr-defined]
    small = _load(root, max_items=12, val_fraction=0.0)
    assert len(small.train) == 12 and not small.val  # type: ignore[attr-defined]


def test_suite_format_uses_the_direct_prompt(tmp_path: Path) -> None:
    data = _load(_ethics(tmp_path), prompt_format="suite")
    example = data.train[0]  # type: ignore[attr-defined]
    assert example.options == [" unreasonable", " reasonable"]
    assert isinstance(example.prompt, str) and example.prompt.startswith("Question:")
    assert example.answer == example.target


def test_a_suite_without_verdicts_cannot_train_a_module(tmp_path: Path) -> None:
    root = _ethics(tmp_path)
    suite_file = tmp_path / "s.toml"
    suite_file.write_text(
        'name = "s"\n[data]\nloader = "ethics"\nsubset = "justice"\n'
        '[prompt]\ntemplate = "{{scenario}}"\nchoices = [" no", " yes"]\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match="verdicts"):
        load_tune_data(
            load_suite(suite_file), JUDGE, data=root, splits=["train"], prompt_format="module",
            seed=0, max_items=None, val_fraction=0.1, val_max_items=10,
        )  # fmt: skip

"""Comparing two eval runs: pairing by item, paired bootstrap, McNemar, warnings, rendering."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from cogem.cli.eval_render import comparison_table, summary_table
from cogem.evals.compare import compare_runs
from cogem.evals.metrics import summarize
from cogem.evals.records import DatasetFile, SampleRecord
from tests.eval_samples import manifest, sample, write_eval_dir

METRICS = ["accuracy", "group_exact_match", "auroc"]


def rec(item_id: str, right: bool, *, error: bool = False, **kw: object) -> SampleRecord:
    target = int(item_id[-1]) % 2
    pred = target if right else 1 - target
    return sample(
        item_id,
        target,
        probs=[0.8, 0.2] if pred == 0 else [0.3, 0.7],
        error="RunError: boom" if error else None,
        **kw,  # type: ignore[arg-type]
    )


def run(tmp_path: Path, name: str, records: list[SampleRecord], **kw: object) -> Path:
    man = manifest(records, metrics=METRICS, **kw)  # type: ignore[arg-type]
    return write_eval_dir(tmp_path / name, records, man, with_summary=False)


def test_pairs_by_item_counts_leftovers_and_gives_mcnemar_counts(tmp_path: Path) -> None:
    a_right = {f"i{k}" for k in range(6)}  # i0..i5 right, i6..i9 wrong
    b_right = {"i0", "i1", "i2", "i3", "i6", "i7", "i8"}
    ids = [f"i{k}" for k in range(10)]
    a = [rec(i, i in a_right) for i in ids] + [rec("onlyA1", True)]
    b = [rec(i, i in b_right, error=(i == "i9")) for i in ids]
    b += [rec("onlyB1", True), rec("onlyB2", False)]
    comp = compare_runs(
        run(tmp_path, "a", a),
        run(tmp_path, "b", b, model={"model_id": "other", "weights_sha256": "ff"}),
        n_bootstrap=200,
    )
    assert (comp.n_shared, comp.n_paired, comp.n_only_a, comp.n_only_b) == (10, 9, 1, 2)
    assert (comp.n_errors_a, comp.n_errors_b) == (0, 1)
    acc = comp.metrics["accuracy"]
    # Over the 9 items scored in both: A 6/9, B 7/9.
    assert (acc.n, acc.a, acc.b) == (9, pytest.approx(6 / 9), pytest.approx(7 / 9))
    assert acc.diff == pytest.approx(1 / 9)
    assert acc.mcnemar is not None
    assert (acc.mcnemar.a_right_b_wrong, acc.mcnemar.a_wrong_b_right) == (2, 3)  # i4,i5 / i6-i8
    assert acc.mcnemar.p_value == pytest.approx(1.0)
    assert acc.ci_low is not None and acc.ci_high is not None
    assert acc.ci_low < acc.diff < acc.ci_high
    assert comp.metrics["auroc"].mcnemar is None
    assert not any("same model" in w for w in comp.warnings)


def test_mcnemar_exact_p_value_when_every_discordant_item_favours_b(tmp_path: Path) -> None:
    ids = [f"i{k}" for k in range(10)]
    a = [rec(i, k < 4) for k, i in enumerate(ids)]
    b = [rec(i, True) for i in ids]
    comp = compare_runs(run(tmp_path, "a", a), run(tmp_path, "b", b, reasoner="other"))
    m = comp.metrics["accuracy"].mcnemar
    assert m is not None and (m.a_right_b_wrong, m.a_wrong_b_right) == (0, 6)
    assert m.p_value == pytest.approx(2 / 2**6)  # two-sided exact binomial, k=0 of 6
    # B is never worse on any item, so every paired resample has B - A >= 0.
    acc = comp.metrics["accuracy"]
    assert acc.ci_low is not None and acc.ci_low >= 0 and acc.diff == pytest.approx(0.6)


def test_identical_runs_have_a_zero_width_paired_interval_and_a_warning(tmp_path: Path) -> None:
    rng_right = [True, False, True, True, False, True, False, True]
    records = [rec(f"i{k}", r) for k, r in enumerate(rng_right)]
    comp = compare_runs(run(tmp_path, "a", records), run(tmp_path, "b", records))
    acc = comp.metrics["accuracy"]
    # Two independent intervals would overlap widely; the paired difference is exactly zero.
    assert (acc.diff, acc.ci_low, acc.ci_high) == (0.0, 0.0, 0.0)
    assert any("same model and reasoner: nothing to compare" in w for w in comp.warnings)


def test_group_metrics_compare_only_groups_valid_in_both_runs(tmp_path: Path) -> None:
    def grouped(errors: set[str], wrong: set[str]) -> list[SampleRecord]:
        return [
            rec(f"{g}{k}", f"{g}{k}" not in wrong, error=f"{g}{k}" in errors, group=g)
            for g in ("a", "b", "c")
            for k in range(2)
        ]

    a = grouped(errors={"c1"}, wrong={"a0"})  # groups: a wrong, b right, c excluded
    b = grouped(errors=set(), wrong={"b1"})  # groups: a right, b wrong, c right
    comp = compare_runs(run(tmp_path, "a", a), run(tmp_path, "b", b, reasoner="other"))
    em = comp.metrics["group_exact_match"]
    assert (em.n, em.a, em.b, em.diff) == (2, 0.5, 0.5, 0.0)


def test_warnings_for_different_suites_items_and_datasets(tmp_path: Path) -> None:
    records = [rec(f"i{k}", k % 3 == 0, subset="justice", split="test") for k in range(6)]
    other_data = [DatasetFile(path="data/toy.csv", sha256="ee" * 32, rows=7)]
    comp = compare_runs(
        run(tmp_path, "a", records),
        run(tmp_path, "b", records[:5], suite="other", datasets=other_data, reasoner="x"),
    )
    text = " | ".join(comp.warnings)
    assert "different suites" in text and "different item ids" in text
    assert "dataset files differ" in text and "nothing to compare" not in text
    assert list(comp.by_subset) == ["justice/test"]
    assert comp.by_subset["justice/test"]["accuracy"].n == 5


def render(tables: list) -> str:  # type: ignore[type-arg]
    console = Console(file=io.StringIO(), width=160, color_system=None)
    for t in tables:
        console.print(t)
    return console.file.getvalue()  # type: ignore[attr-defined]


def test_rendered_tables_show_numbers_warnings_and_literal_markup(tmp_path: Path) -> None:
    records = [rec(f"i{k}", k != 1, subset="[bold]j[/]", split="test") for k in range(4)]
    comp = compare_runs(run(tmp_path, "a", records), run(tmp_path, "b", records))
    out = render(comparison_table(comp))
    assert "nothing to compare" in out and "[bold]j[/]/test" in out
    assert "0.750" in out and "+0.000" in out and "0/0 p=1" in out
    s = summarize(
        records,
        suite="[red]x[/red]",
        reasoner="r",
        options=["a", "b"],
        positive=1,
        metrics=["accuracy"],
        n_bootstrap=10,
    )
    out = render(summary_table(s))
    assert "[red]x[/red]" in out and "[bold]j[/]/test" in out and "0.750" in out


def test_labels_name_the_tuned_artifact(tmp_path: Path) -> None:
    records = [rec(f"i{i}", right=i % 3 > 0) for i in range(8)]
    base = {"model_id": "fake/model", "source": "fake", "weights_sha256": "ab" * 32}
    ref = {"module": "judge", "sha256": "5e" * 32}
    a = run(tmp_path, "a", records, model=base)
    b = run(tmp_path, "b", records, model={**base, "tuned": ref})
    comparison = compare_runs(a, b)
    assert comparison.a_label == "direct · fake/model"
    assert comparison.b_label == f"direct · fake/model · tuned judge@{'5e' * 6}"
    assert not any("same model" in w for w in comparison.warnings)

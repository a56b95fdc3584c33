"""Eval metrics on hand-made samples with answers worked out by hand, and against scikit-learn."""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import balanced_accuracy_score, brier_score_loss, roc_auc_score

from cogem.errors import ConfigError, InputError
from cogem.evals._units import log_odds
from cogem.evals.metrics import (
    METRICS,
    accuracy,
    auroc,
    balanced_accuracy,
    bootstrap_ci,
    brier,
    ece,
    evaluate,
    group_exact_match,
    pairwise_accuracy,
    reliability_bins,
    summarize,
)
from cogem.evals.records import SampleRecord
from tests.eval_samples import sample

THREE = ("a", "b", "c")


def binary(item_id: str, target: int, p_wrong: float, **kw: Any) -> SampleRecord:
    return sample(item_id, target, probs=[1 - p_wrong, p_wrong], **kw)


# --- group exact match --------------------------------------------------------------------------


def test_group_exact_match_counts_a_group_only_when_all_its_items_are_right() -> None:
    records = []
    # g0: all 4 right; g1: 3 of 4 right; g2: none right; g3: one errored item, excluded.
    answers = {"g0": [1, 1, 1, 1], "g1": [1, 1, 1, 0], "g2": [0, 0, 0, 0], "g3": [1, 1, 1, 1]}
    for g, rights in answers.items():
        for k, right in enumerate(rights):
            target = k % 2
            records.append(
                sample(
                    f"{g}-{k}",
                    target,
                    target if right else 1 - target,
                    group=g,
                    error="RunError: boom" if (g == "g3" and k == 2) else None,
                )
            )
    got = group_exact_match(records, n_bootstrap=0)
    assert got.value == pytest.approx(1 / 3)
    assert got.n == 3 and got.excluded == 1
    assert any("errored" in note for note in got.notes)
    # Item accuracy over the same samples is much higher: group EM is the stricter metric.
    assert accuracy(records, n_bootstrap=0).value == pytest.approx(
        10 / 15
    )  # 4 + 3 + 0 + 3 right of 15 scored


def test_group_names_are_scoped_to_their_subset_and_split() -> None:
    # Both subsets call their group "0"; merging them would make one all-wrong group.
    records = [
        sample("j1", 0, 0, group="0", subset="justice", split="test"),
        sample("j2", 1, 1, group="0", subset="justice", split="test"),
        sample("v1", 0, 1, group="0", subset="virtue", split="test"),
        sample("v2", 1, 1, group="0", subset="virtue", split="test"),
    ]
    got = group_exact_match(records, n_bootstrap=0)
    assert (got.value, got.n) == (0.5, 2)


def test_every_metric_is_undefined_when_every_sample_errored() -> None:
    records = [sample("a", 0, error="RunError: x"), sample("b", 1, error="RunError: y")]
    for name in METRICS:
        got = evaluate(name, records, positive=1)
        assert (got.value, got.n, got.ci_low) == (None, 0, None), name


def test_group_metric_without_groups_is_undefined_not_an_error() -> None:
    records = [sample("a", 0, 0), sample("b", 1, 0)]
    for name in ("group_exact_match", "pairwise_accuracy"):
        got = evaluate(name, records, positive=1)
        assert (got.value, got.n, got.ci_low, got.ci_high) == (None, 0, None, None)


# --- pairwise accuracy --------------------------------------------------------------------------


def pair(name: str, preferred: float, other: float, positive: int = 1) -> list[SampleRecord]:
    """Two items whose positive-class log-odds are ``preferred`` and ``other``."""
    lp = lambda s: [0.0, s] if positive == 1 else [s, 0.0]  # noqa: E731 - log-odds = s
    return [
        sample(f"{name}-p", positive, logprobs=lp(preferred), group=name),
        sample(f"{name}-o", 1 - positive, logprobs=lp(other), group=name),
    ]


def test_pairwise_accuracy_on_hand_made_pairs_with_a_tie_counted_wrong() -> None:
    records = [
        *pair("right-1", 2.0, 1.0),
        *pair("right-2", -0.5, -3.0),  # both below zero, still ordered right
        *pair("wrong", -1.0, 0.0),
        *pair("tie", 0.7, 0.7),
    ]
    got = pairwise_accuracy(records, positive=1, n_bootstrap=0)
    assert (got.value, got.n, got.excluded) == (0.5, 4, 0)
    # The positive index matters: with the other option positive, the preferences flip.
    flipped = [*pair("r", 2.0, 1.0, positive=0), *pair("w", -1.0, 0.0, positive=0)]
    assert pairwise_accuracy(flipped, positive=0, n_bootstrap=0).value == 0.5


def test_pairwise_score_is_logit_of_positive_against_all_other_options() -> None:
    # Positive = option 2. Preferred: p = (.2, .3, .5) → logit 0. Other: p = (.05, .05, .9): the
    # other has a higher p[positive], although its probability of option 1 is lower.
    preferred = sample("x-p", 2, probs=[0.2, 0.3, 0.5], options=THREE, group="x")
    other = sample("x-o", 0, probs=[0.05, 0.05, 0.9], options=THREE, group="x")
    assert log_odds(preferred, 2) == pytest.approx(0.0)
    assert log_odds(other, 2) == pytest.approx(math.log(0.9 / 0.1))
    assert pairwise_accuracy([preferred, other], positive=2, n_bootstrap=0).value == 0.0


def test_pairwise_leaves_out_errored_and_malformed_groups_and_says_so() -> None:
    records = [
        *pair("ok", 1.0, 0.0),
        *pair("err", 1.0, 0.0),
        sample("three-1", 1, logprobs=[0, 1], group="three"),
        sample("three-2", 0, logprobs=[0, 0], group="three"),
        sample("three-3", 0, logprobs=[0, 0], group="three"),
    ]
    records[3] = sample("err-o", 0, error="RunError: x", group="err")
    got = pairwise_accuracy(records, positive=1, n_bootstrap=0)
    assert (got.value, got.n, got.excluded) == (1.0, 1, 2)
    assert len(got.notes) == 2


# --- item metrics -------------------------------------------------------------------------------


def test_accuracy_and_balanced_accuracy_on_an_imbalanced_set() -> None:
    # 8 of class 0, all right; 2 of class 1, both predicted 0: accuracy .8, recalls 1 and 0.
    records = [sample(f"n{i}", 0, 0) for i in range(8)] + [sample(f"p{i}", 1, 0) for i in range(2)]
    assert accuracy(records, n_bootstrap=0).value == pytest.approx(0.8)
    assert balanced_accuracy(records, n_bootstrap=0).value == pytest.approx(0.5)


def test_errors_are_not_wrong_answers() -> None:
    records = [sample("a", 0, 0), sample("b", 1, 1), sample("c", 1, error="RunError: crash")]
    got = accuracy(records, n_bootstrap=0)
    assert (got.value, got.n) == (1.0, 2)
    s = summarize(
        records,
        suite="t",
        reasoner="r",
        options=list(THREE[:2]),
        positive=1,
        metrics=["accuracy"],
        n_bootstrap=0,
    )
    assert (s.n_items, s.n_scored, s.n_errors) == (3, 2, 1)
    assert s.error_rate == pytest.approx(1 / 3)


def test_ece_on_a_hand_computed_example() -> None:
    # Bin [.9, 1]: confidences .95, .95, one right → |.5 - .95| = .45 with weight 2/4.
    # Bin [.6, .7): confidences .65, .65, both right → |1 - .65| = .35 with weight 2/4.
    records = [
        binary("a", 1, 0.95),
        binary("b", 0, 0.95),
        binary("c", 0, 0.35),
        binary("d", 0, 0.35),
    ]
    assert ece(records, n_bootstrap=0).value == pytest.approx(0.5 * 0.45 + 0.5 * 0.35)
    bins = reliability_bins(records)
    assert [b.count for b in bins] == [0, 0, 0, 0, 0, 0, 2, 0, 0, 2]
    assert bins[9].accuracy == 0.5 and bins[9].mean_confidence == pytest.approx(0.95)
    assert bins[0].accuracy is None


def test_perfectly_calibrated_bins_have_zero_ece() -> None:
    # Confidence .75 and three of four right.
    records = [binary(f"r{i}", 1, 0.75) for i in range(3)] + [binary("w", 0, 0.75)]
    assert ece(records, n_bootstrap=0).value == pytest.approx(0.0)


def test_brier_is_the_original_multiclass_score() -> None:
    records = [
        sample("a", 0, probs=[0.7, 0.2, 0.1], options=THREE),  # .09 + .04 + .01 = .14
        sample("b", 2, probs=[0.5, 0.3, 0.2], options=THREE),  # .25 + .09 + .64 = .98
    ]
    assert brier(records, n_bootstrap=0).value == pytest.approx((0.14 + 0.98) / 2)


def test_binary_brier_is_twice_sklearn() -> None:
    rng = random.Random(3)
    records = [binary(f"i{i}", rng.randint(0, 1), rng.random()) for i in range(50)]
    sk = brier_score_loss([r.target for r in records], [r.probs[1] for r in records])  # type: ignore[index]
    assert brier(records, n_bootstrap=0).value == pytest.approx(2 * sk)


def test_auroc_on_a_hand_computed_example() -> None:
    # Positive log-odds: positives 3 and 1, negatives 2 and 0; 3 of 4 pairs ordered right.
    records = [sample(f"p{s}", 1, logprobs=[0, s]) for s in (3.0, 1.0)]
    records += [sample(f"n{s}", 0, logprobs=[0, s]) for s in (2.0, 0.0)]
    assert auroc(records, positive=1, n_bootstrap=0).value == pytest.approx(0.75)
    # A positive tied with a negative counts one half. Pairs of positives 3, 1, 2 with
    # negatives 2, 0: (3,2) (3,0) (1,0) (2,0) ordered, (2,2) tied, (1,2) not → 4.5 of 6.
    records.append(sample("p2", 1, logprobs=[0, 2.0]))
    assert auroc(records, positive=1, n_bootstrap=0).value == pytest.approx(4.5 / 6)
    # With two options, swapping the positive option flips both labels and scores: same AUROC.
    assert auroc(records, positive=0, n_bootstrap=0).value == pytest.approx(4.5 / 6)


def test_auroc_is_undefined_with_one_class() -> None:
    records = [sample(f"p{i}", 1, logprobs=[0, i]) for i in range(3)]
    got = auroc(records, positive=1)
    assert (got.value, got.ci_low, got.n) == (None, None, 3)


# --- agreement with scikit-learn ----------------------------------------------------------------


def random_records(seed: int, n: int, k: int = 3) -> list[SampleRecord]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        # Rounded probabilities make ties, the case rank-based AUROC gets wrong most easily.
        p = rng.dirichlet(np.ones(k)).round(1) + 1e-3
        p = p / p.sum()
        out.append(
            sample(
                f"i{i}",
                int(rng.integers(0, k)),
                probs=list(p),
                options=THREE[:k],
                logprobs=list(np.log(p)),
                group=f"g{i // 2}",
            )
        )
    return out


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
@pytest.mark.filterwarnings("ignore:A single label was found")
@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.integers(2, 60), st.sampled_from([2, 3]))
def test_balanced_accuracy_and_auroc_match_sklearn(seed: int, n: int, k: int) -> None:
    records = random_records(seed, n, k)
    y, pred = [r.target for r in records], [r.prediction for r in records]
    assert balanced_accuracy(records, n_bootstrap=0).value == pytest.approx(
        balanced_accuracy_score(y, pred)
    )
    labels = [r.target == 1 for r in records]
    got = auroc(records, positive=1, n_bootstrap=0).value
    if len(set(labels)) < 2:
        assert got is None
    else:
        assert got == pytest.approx(roc_auc_score(labels, [log_odds(r, 1) for r in records]))


# --- bootstrap ----------------------------------------------------------------------------------


def test_ci_is_deterministic_contains_the_estimate_and_has_the_binomial_width() -> None:
    records = [sample(f"i{i}", 0, 0 if i % 4 else 1) for i in range(400)]  # 300 of 400 right
    first, again = accuracy(records), accuracy(list(reversed(records)))
    assert first == again
    assert first.ci_low is not None and first.ci_high is not None
    assert first.ci_low < 0.75 < first.ci_high
    # Normal approximation: ±1.96·sqrt(.75·.25/400) ≈ ±.042.
    assert first.ci_high - first.ci_low == pytest.approx(2 * 0.0424, abs=0.012)
    assert accuracy(records, seed=1) != first  # the seed is used


def test_bootstrap_ci_resamples_units_and_drops_undefined_resamples() -> None:
    values = np.array([0.0, 1.0])
    # Mean of two 0/1 units: resamples give 0, .5 or 1 → the CI spans them all.
    assert bootstrap_ci(lambda w: (w @ values) / w.sum(axis=1), 2) == (0.0, 1.0)
    assert bootstrap_ci(lambda w: np.full(w.shape[0], np.nan), 5) == (None, None)
    assert bootstrap_ci(lambda w: w.sum(axis=1), 0) == (None, None)


# --- summarize ----------------------------------------------------------------------------------


def test_summarize_per_subset_keys_and_unknown_metric() -> None:
    records = [
        sample("a", 0, 0, subset="justice", split="test_hard"),
        sample("b", 1, 0, subset="justice", split="test_hard"),
        sample("c", 1, 1, split="test"),
        sample("d", 0, 0, subset="virtue"),
    ]
    s = summarize(
        records,
        suite="t",
        reasoner="r",
        options=["x", "y"],
        positive=1,
        metrics=["accuracy", "group_exact_match"],
        n_bootstrap=10,
    )
    assert set(s.by_subset) == {"justice/test_hard", "test", "virtue"}
    assert s.by_subset["justice/test_hard"]["accuracy"].value == 0.5
    assert s.metrics["group_exact_match"].value is None
    assert s.confusion == [[2, 0], [1, 1]]
    with pytest.raises(ConfigError, match="valid metrics: accuracy, balanced_accuracy"):
        summarize(
            records, suite="t", reasoner="r", options=["x", "y"], positive=1, metrics=["acuracy"]
        )


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ([sample("a", 0, 0), sample("a", 1, 1)], "appears twice"),
        ([sample("a", 0, 0).model_copy(update={"correct": False})], "contradicts"),
        ([sample("a", 0, 0).model_copy(update={"probs": [1.0]})], "1 probs for 2 options"),
        ([sample("a", 0, 5)], "not an option index"),
    ],
)
def test_inconsistent_samples_are_input_errors(bad: list[SampleRecord], message: str) -> None:
    with pytest.raises(InputError, match=message):
        accuracy(bad)


# --- properties ---------------------------------------------------------------------------------


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 40), st.randoms(use_true_random=False))
def test_metrics_are_in_range_and_do_not_depend_on_record_order(
    seed: int, n: int, shuffler: random.Random
) -> None:
    records = random_records(seed, n)
    records[0] = sample(records[0].item_id, 0, error="RunError: x", group=records[0].group)
    shuffled = list(records)
    shuffler.shuffle(shuffled)
    for name in METRICS:
        got = evaluate(name, records, positive=1, n_bootstrap=30)
        assert got == evaluate(name, shuffled, positive=1, n_bootstrap=30)
        top = 2.0 if name == "brier" else 1.0
        for v in (got.value, got.ci_low, got.ci_high):
            assert v is None or -1e-12 <= v <= top + 1e-12

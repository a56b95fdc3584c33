"""The parts of training that must be pure functions of the step, so resume is exact."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest

from cogem.tune.records import TuneConfig
from cogem.tune.train import _lr, _Order


def test_data_order_is_a_function_of_seed_and_step() -> None:
    order = _Order(10, seed=7)
    steps = [order.batch(s, 4) for s in range(1, 6)]  # 20 positions = 2 epochs
    fresh = _Order(10, seed=7)
    assert [fresh.batch(s, 4) for s in (5, 1, 3)] == [steps[4], steps[0], steps[2]]
    flat = [i for batch in steps for i in batch]
    # Each epoch is a permutation: every item exactly once per epoch.
    assert Counter(flat[:10]) == Counter(range(10)) == Counter(flat[10:])
    assert flat[:10] != flat[10:]
    assert _Order(10, seed=8).batch(1, 4) != steps[0]


def test_learning_rate_warms_up_then_decays() -> None:
    config = TuneConfig(module="judge", steps=10, lr=1.0, warmup_steps=2)
    rates = [_lr(s, 10, config) for s in range(1, 11)]
    assert rates[:2] == [0.5, 1.0]
    assert rates[2] == 1.0 and all(a > b for a, b in itertools.pairwise(rates[2:]))
    assert rates[-1] == pytest.approx(1 / 8)


def test_config_needs_steps_or_epochs() -> None:
    with pytest.raises(ValueError, match="steps or epochs"):
        TuneConfig(module="judge")
    with pytest.raises(ValueError, match="steps or epochs"):
        TuneConfig(module="judge", steps=3, epochs=1.0)

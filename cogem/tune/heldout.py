"""Held-out scores of a model on training examples, as the suite's metrics measure them.

The held-out slice comes from the training file (never a test split); it tells whether tuning
helped before anyone looks at test data. Scores go through the eval metrics code, so an accuracy
here means what it means in ``cogem eval``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from cogem.errors import CogemError
from cogem.evals.records import SampleRecord
from cogem.llm.base import OptionScores
from cogem.tune.data import TrainExample
from cogem.tune.records import HeldOutScores

__all__ = ["held_out_scores"]


def held_out_scores(
    llm: Any, examples: Sequence[TrainExample], *, choices: Sequence[str], positive: int, seed: int
) -> HeldOutScores | None:
    """Option-score ``examples`` with ``llm`` and summarize; None when there are none."""
    from cogem.evals.metrics import evaluate

    if not examples:
        return None
    requests = [(e.prompt, e.options) for e in examples]
    results: list[OptionScores | CogemError] = list(llm.score_batch(requests))
    records: list[SampleRecord] = []
    losses: list[float] = []
    for index, (example, result) in enumerate(zip(examples, results, strict=True)):
        base: dict[str, Any] = {
            "index": index, "item_id": example.item_id, "subset": "", "split": "",
            "group": example.group, "input": {}, "options": list(choices),
            "target": example.target,
        }  # fmt: skip
        if not isinstance(result, OptionScores):
            records.append(SampleRecord.model_validate({**base, "error": str(result)}))
            continue
        losses.append(-result.logprobs[example.answer] / result.option_tokens[example.answer])
        mass = [0.0] * len(choices)
        for option, prob in enumerate(result.probs):
            choice = example.to_choice[option]
            if choice is not None:
                mass[choice] += prob
        total = math.fsum(mass)
        probs = [m / total for m in mass] if total > 0 else [1.0 / len(choices)] * len(choices)
        logprobs = [math.log(p) if p > 0 else -math.inf for p in probs]
        prediction = max(range(len(probs)), key=lambda i: (logprobs[i], -i))
        scored = {
            **base, "logprobs": logprobs, "probs": probs, "prediction": prediction,
            "correct": prediction == example.target,
        }  # fmt: skip
        records.append(SampleRecord.model_validate(scored))
    metrics = {
        "accuracy": evaluate("accuracy", records, n_bootstrap=200, seed=seed),
        "auroc": evaluate("auroc", records, positive=positive, n_bootstrap=200, seed=seed),
        "group_exact_match": evaluate("group_exact_match", records, n_bootstrap=200, seed=seed),
    }
    return HeldOutScores(
        n=len(records),
        accuracy=metrics["accuracy"].value,
        auroc=metrics["auroc"].value,
        group_exact_match=metrics["group_exact_match"].value,
        loss=math.fsum(losses) / len(losses) if losses else None,
        metrics={k: v.model_dump(mode="json") for k, v in metrics.items()},
    )

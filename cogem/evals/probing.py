"""Metamorphic probes on eval items: does the answer flip for changes that should not matter?

The probes are the property toolkit's (:data:`cogem.probes.PROBES`). Each probe rewrites one text
field of an item (the suite's ``probe_field``) or, for a modular reasoner, its module specs
(``option_order``); the rewritten items are answered by the same kind of answerer as the eval and
compared with the eval's own samples. Spec probes do not apply to ``direct`` (it has no modules)
and are reported with n = 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from cogem.engine.runtime import Runtime
from cogem.errors import ConfigError
from cogem.evals.answerers import DirectAnswerer, ReasonerAnswerer
from cogem.evals.records import EvalItem, SampleRecord
from cogem.evals.suite import Suite
from cogem.probes import PROBES, Probe, ProbeSummary

__all__ = ["PROBE_FILE", "run_item_probes"]

PROBE_FILE = "probes.json"


def _probe_field(suite: Suite, item: EvalItem) -> str:
    field = suite.config.probe_field
    if field is None:
        field = next((f for f in ("input", "scenario") if f in item.fields), None)
    if field is None or field not in item.fields:
        raise ConfigError(
            f"suite {suite.name!r}: set `probe_field` to the text field probes should rewrite "
            f"(item fields: {sorted(item.fields)})",
            path=str(suite.source), field="probe_field",
        )  # fmt: skip
    return field


def _tvd(p: Sequence[float], q: Sequence[float]) -> float:
    return min(1.0, 0.5 * math.fsum(abs(a - b) for a, b in zip(p, q, strict=True)))


def run_item_probes(
    suite: Suite,
    runtime: Runtime,
    answerer: DirectAnswerer | ReasonerAnswerer,
    baseline: Sequence[tuple[EvalItem, SampleRecord]],
    probes: Sequence[str],
    out: Path,
) -> list[ProbeSummary]:
    """Answer every probed variant of ``baseline`` items; one summary per probe."""
    unknown = [p for p in probes if p not in PROBES]
    if unknown:
        raise ConfigError(f"unknown probe(s) {unknown}; valid: {', '.join(PROBES)}", field="probes")
    summaries = []
    for name in probes:
        probe = PROBES[name]
        variant = _variant_answerer(probe, answerer, suite, runtime, out)
        if variant is None:
            summaries.append(_summary(probe, [], errors=0))
            continue
        todo = []
        for index, (item, _) in enumerate(baseline):
            field = _probe_field(suite, item)
            fields = {**item.fields, field: probe.scenario(item.fields[field])}
            todo.append((index, item.model_copy(update={"fields": fields})))
        answered: list[SampleRecord] = []
        variant.answer(todo, answered.extend)
        pairs = [(baseline[r.index][1], r) for r in answered]
        errors = sum(1 for base, var in pairs if base.probs is None or var.probs is None)
        summaries.append(_summary(probe, pairs, errors=errors))
    return summaries


def _variant_answerer(
    probe: Probe, answerer: DirectAnswerer | ReasonerAnswerer, suite: Suite, runtime: Runtime,
    out: Path,
) -> DirectAnswerer | ReasonerAnswerer | None:  # fmt: skip
    if isinstance(answerer, DirectAnswerer):
        return None if probe.specs is not None else answerer
    reasoner = answerer.reasoner
    if probe.specs is not None:
        from cogem.engine.graph import Reasoner

        specs = probe.specs(reasoner.specs)
        rebuilt = Reasoner.sequential([specs[name] for name in reasoner.nodes])
        if rebuilt.describe() != reasoner.describe():
            return None  # not a plain chain: a spec probe cannot rebuild it faithfully
        reasoner = rebuilt
    return ReasonerAnswerer(answerer.name, reasoner, suite, runtime, out / "probes" / probe.name)


def _summary(
    probe: Probe, pairs: list[tuple[SampleRecord, SampleRecord]], *, errors: int
) -> ProbeSummary:
    done = [(b, v) for b, v in pairs if b.probs is not None and v.probs is not None]
    flips = sum(1 for b, v in done if b.prediction != v.prediction)
    tvds = [_tvd(b.probs, v.probs) for b, v in done if b.probs is not None and v.probs is not None]
    n = len(done)
    return ProbeSummary(
        probe=probe.name, description=probe.description, n=n, flips=flips, errors=errors,
        flip_rate=flips / n if n else None, mean_tvd=math.fsum(tvds) / n if n else None,
        max_tvd=max(tvds, default=None),
    )  # fmt: skip

"""The hypothesis strategies of cogem.testing: valid scenarios, schema-valid model outputs, and
whole generated graphs (random module counts, edges and loop bounds) that compile and run on fakes
with traces that verify."""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cogem import Reasoner, load_specs, verify_trace
from cogem.engine.run import validate_scenario
from cogem.errors import CogemError, RunError, UsageError
from cogem.llm.base import OptionScores, Prompt
from cogem.schema import resolve_schema
from cogem.testing import SchemaFillingLLM, ScriptedLLM, fake_runtime
from cogem.testing.fake_llm import _scores
from cogem.testing.strategies import (
    KINDS,
    HypothesisLLM,
    module_specs,
    outputs_for,
    reasoners,
    scenarios,
)
from cogem.trace import read_trace
from cogem.trace.events import ModuleStart

SPECS = load_specs()
FAKE = fake_runtime()
RUN_SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _trace() -> Path:
    return Path(tempfile.mkdtemp(prefix="cogem-strat-")) / "t.jsonl"


# --- scenarios ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_every_scenario_kind_gives_valid_scenarios(kind: str, data: st.DataObject) -> None:
    scenario = data.draw(scenarios(kinds=[kind]))
    assert validate_scenario(scenario, 100_000) == scenario
    assert 1 <= len(scenario) <= 100_000


@settings(max_examples=60, deadline=None)
@given(bounds=st.tuples(st.integers(1, 300), st.integers(0, 300)), data=st.data())
def test_scenarios_respect_size_bounds(bounds: tuple[int, int], data: st.DataObject) -> None:
    low, high = bounds[0], bounds[0] + bounds[1]
    scenario = data.draw(scenarios(min_size=low, max_size=high))
    assert low <= len(scenario) <= high
    assert scenario.strip() and "\x00" not in scenario


def test_long_scenarios_reach_100_kb() -> None:
    longest = 0

    @settings(max_examples=60, deadline=None, database=None, derandomize=True)
    @given(scenarios(kinds=["long"]))
    def measure(scenario: str) -> None:
        nonlocal longest
        longest = max(longest, len(scenario))

    measure()
    assert longest > 20_000


def test_bad_scenario_arguments_are_usage_errors() -> None:
    with pytest.raises(UsageError):
        scenarios(min_size=0)
    with pytest.raises(UsageError):
        scenarios(kinds=["poetry"])


# --- outputs_for -------------------------------------------------------------------------------

_STATES = [
    {"recalled_ids": ["norm.honesty.1", "principle.care.2"], "verdict": "wrong"},
    {"recalled_ids": [], "verdict": "acceptable"},
    {"recalled_ids": ["precedent.7"], "verdict": "unclear"},
]


@pytest.mark.parametrize("name", sorted(SPECS))
@pytest.mark.parametrize("state", _STATES, ids=["ids", "no-ids", "one-id"])
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_outputs_validate_for_builtin_specs(
    name: str, state: dict[str, Any], data: st.DataObject
) -> None:
    schema = resolve_schema(SPECS[name].output_schema or {}, state)
    value = data.draw(outputs_for(schema))
    jsonschema.Draft202012Validator(schema).validate(value)
    assert json.loads(json.dumps(value)) == value  # plain JSON, as a model would write it


@settings(max_examples=80, deadline=None)
@given(
    spec=module_specs("m1", reads_from=("scenario", "m0_ids"), lists=("m0_ids",)),
    ids=st.lists(st.text(max_size=8), max_size=4),
    data=st.data(),
)
def test_outputs_validate_for_generated_specs(
    spec: Any, ids: list[str], data: st.DataObject
) -> None:
    if spec.output_schema is None:
        return
    choice = {spec.choice.field: spec.choice.options[-1]} if spec.choice else {}
    schema = resolve_schema(spec.output_schema, {"m0_ids": ids, **choice})
    jsonschema.Draft202012Validator(schema).validate(data.draw(outputs_for(schema)))


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "string", "pattern": "^a+$"},
        {"type": "array", "items": {"type": "string", "x-cogem-enum-from": "recalled_ids"}},
        {"anyOf": [{"type": "string"}]},
        {"type": "string", "enum": []},
    ],
)
def test_schemas_it_cannot_honour_are_refused(schema: dict[str, Any]) -> None:
    with pytest.raises(UsageError):
        outputs_for(schema)


# --- HypothesisLLM -----------------------------------------------------------------------------


@settings(RUN_SETTINGS, max_examples=50)
@given(scenario=scenarios(max_size=2000), data=st.data())
def test_any_model_behaviour_on_the_default_reasoner_is_audited(
    scenario: str, data: st.DataObject
) -> None:
    llm = HypothesisLLM(data)
    path = _trace()
    try:
        Reasoner.default().run(scenario, fake_runtime(llm), trace_path=path)
    except CogemError:
        # A typed error is an allowed outcome of a run, if the scenario was rejected up front or
        # the error is recorded in a trace that still verifies.
        if not path.exists():
            return
    assert llm.calls >= 1
    report = verify_trace(path)
    assert report.ok, report.problems


def test_blank_model_query_is_a_recorded_run_error() -> None:
    # Found by the property test above: a schema-valid query of blank text reached the memory
    # store, whose InputError (a *usage* error) blamed the caller for a model output.
    llm = ScriptedLLM(
        generations=['{"summary":"s","actors":["a"],"action":"x"}', '{"query":"   "}']
    )
    with pytest.raises(RunError):
        Reasoner.sequential([SPECS["perceive"], SPECS["recall"]]).run(
            "I kept a library book for a year.", fake_runtime(llm), trace_path=_trace()
        )


@settings(max_examples=30, deadline=None)
@given(options=st.lists(st.text(min_size=1), min_size=2, max_size=6, unique=True), data=st.data())
def test_hypothesis_llm_option_scores_are_distributions(
    options: list[str], data: st.DataObject
) -> None:
    scores = HypothesisLLM(data).score_options("Pick one:", options)
    assert scores.options == options
    assert all(x == x and x <= 0 for x in scores.logprobs)  # finite log-probabilities
    assert abs(sum(scores.probs) - 1.0) <= 1e-9


# --- generated reasoners -----------------------------------------------------------------------


@settings(RUN_SETTINGS, max_examples=80)
@given(reasoner=reasoners(), scenario=scenarios(max_size=300))
def test_generated_reasoners_compile_run_on_fakes_and_verify(
    reasoner: Reasoner, scenario: str
) -> None:
    reasoner.validate()
    assert 1 <= len(reasoner.nodes) <= 5
    path = _trace()
    result = reasoner.run(scenario, FAKE, trace_path=path)
    report = verify_trace(result.trace_path)
    assert report.ok, report.problems


class FirstOptionLLM(SchemaFillingLLM):
    """Always prefers the first option: every generated loop goes round until its bound."""

    def score_options(self, prompt: Prompt, options: Sequence[str]) -> OptionScores:
        return _scores(prompt, options, [0.0] + [-5.0] * (len(options) - 1))


def test_generated_loops_stop_within_their_declared_bounds() -> None:
    seen: Counter[str] = Counter()
    runtime = fake_runtime(FirstOptionLLM())

    @settings(RUN_SETTINGS, max_examples=80, database=None, derandomize=True)
    @given(reasoner=reasoners())
    def run(reasoner: Reasoner) -> None:
        bounds = reasoner.describe()["max_visits"]
        result = reasoner.run("I broke a promise to a friend.", runtime, trace_path=_trace())
        visits = Counter(
            e.module for e in read_trace(result.trace_path) if isinstance(e, ModuleStart)
        )
        assert all(count <= bounds[name] for name, count in visits.items())
        assert verify_trace(result.trace_path).ok
        seen["looped"] += any(count > 1 for count in visits.values())
        seen["bound reached"] += any(1 < n == bounds[name] for name, n in visits.items())
        seen["conditional"] += bool(reasoner.describe()["conditional"])

    run()
    assert seen["looped"] and seen["bound reached"] and seen["conditional"], seen

"""check_reasoner: a user's own reasoner property-tested in one call, and violations named."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st

from cogem import ModuleSpec, Reasoner, load_specs
from cogem.errors import CogemError, OutputValidationError
from cogem.llm.base import OptionScores, Prompt
from cogem.testing import SchemaFillingLLM, ScriptedLLM, fake_runtime
from cogem.testing.check import check_reasoner, default_properties
from cogem.testing.strategies import HypothesisLLM, scenarios
from cogem.trace import read_trace
from cogem.trace.events import ModuleEnd
from cogem.trace.rules import RULES, Problem

# The README example: a user's own two-module reasoner, one generating and one choice module.
restate = ModuleSpec(
    name="restate",
    purpose="Restate the scenario in one sentence.",
    reads=["scenario"],
    writes=["summary"],
    prompt="Restate briefly:\n{scenario}",
    output_schema={
        "type": "object",
        "required": ["summary"],
        "additionalProperties": False,
        "properties": {"summary": {"type": "string", "minLength": 1, "maxLength": 120}},
    },
)
honest = ModuleSpec(
    name="honest",
    purpose="Decide whether the situation involves dishonesty.",
    reads=["summary"],
    writes=["dishonest", "dishonest_probs"],
    choice={
        "field": "dishonest",
        "probs_field": "dishonest_probs",
        "options": ["yes", "no"],
        "prompt": "{summary}\nDoes this involve dishonesty? Answer {options}.",
    },
)
QUICK = settings(max_examples=10, deadline=None, database=None)


def _reasoner() -> Reasoner:
    return Reasoner.sequential([restate, honest])


def test_users_two_module_reasoner_passes() -> None:
    check_reasoner(_reasoner())


def test_default_properties_are_every_rule_and_the_full_audit() -> None:
    names = [p.__name__ for p in default_properties()]
    assert names == [*RULES, "verify_trace"]


def test_any_model_behaviour_via_a_runtime_taking_data() -> None:
    llms: list[HypothesisLLM] = []

    def runtime(data: st.DataObject) -> Any:
        llms.append(HypothesisLLM(data))
        return fake_runtime(llms[-1])

    check_reasoner(_reasoner(), runtime=runtime, settings=QUICK)
    assert any(llm.calls == 2 for llm in llms)  # one generation, one option scoring
    assert all(llm.calls in (0, 2) for llm in llms)  # 0: the scenario was rejected up front


def test_settings_and_fresh_runtime_per_example() -> None:
    made = []

    def runtime() -> Any:
        made.append(fake_runtime())
        return made[-1]

    check_reasoner(
        _reasoner(),
        scenarios=st.just("I kept a library book for a year."),
        runtime=runtime,
        settings=settings(max_examples=3, deadline=None, database=None),
    )
    assert 1 <= len(made) <= 3


def never_yes(path: Path) -> list[Problem]:
    """A user's property: the reasoner never answers 'yes' (broken on purpose below)."""
    return [
        Problem(index=i, rule="never_yes", message=f"record {i}: answered yes")
        for i, event in enumerate(read_trace(path))
        if isinstance(event, ModuleEnd) and event.output.get("dishonest") == "yes"
    ]


def _message(excinfo: pytest.ExceptionInfo[AssertionError]) -> str:
    return str(excinfo.value)


def test_a_violated_property_names_scenario_rule_and_record() -> None:
    always_yes = fake_runtime(SchemaFillingLLM(logprobs=[0.0, -3.0]))
    with pytest.raises(AssertionError) as excinfo:
        check_reasoner(_reasoner(), runtime=always_yes, properties=[never_yes], settings=QUICK)
    message = _message(excinfo)
    assert "rule 'never_yes'" in message and "answered yes" in message
    assert "on scenario " in message
    trace = Path(re.findall(r"trace: (\S+)", message)[-1])  # the failing trace is kept
    index = next(
        i
        for i, e in enumerate(read_trace(trace))
        if isinstance(e, ModuleEnd) and e.module == "honest"
    )
    assert f"record {index}" in message


class SloppyLLM(SchemaFillingLLM):
    """A buggy backend: reports option probabilities that do not sum to 1."""

    def score_options(self, prompt: Prompt, options: Sequence[str]) -> OptionScores:
        scores = super().score_options(prompt, options)
        return scores.model_copy(update={"probs": [0.9] * len(options)})


def test_default_properties_catch_a_buggy_backend() -> None:
    with pytest.raises(AssertionError) as excinfo:
        check_reasoner(_reasoner(), runtime=fake_runtime(SloppyLLM()), settings=QUICK)
    message = _message(excinfo)
    assert "rule 'probs'" in message and re.search(r"record \d+", message)
    assert "sum to" in message


def test_string_violations_are_reported_too() -> None:
    with pytest.raises(AssertionError, match="rule 'no_long_traces': too long"):

        def no_long_traces(path: Path) -> list[str]:
            return ["too long"] if len(read_trace(path)) > 3 else []

        check_reasoner(_reasoner(), properties=[no_long_traces], settings=QUICK)


def test_rejected_scenarios_are_not_violations() -> None:
    check_reasoner(_reasoner(), scenarios=st.sampled_from(["", "  \n", "a\x00b"]), settings=QUICK)


def test_other_errors_propagate_with_the_trace_named() -> None:
    def broken() -> Any:
        return fake_runtime(ScriptedLLM(generations=["not json"] * 2))

    with pytest.raises(OutputValidationError) as excinfo:
        check_reasoner(_reasoner(), runtime=broken, settings=QUICK)
    notes = "\n".join(getattr(excinfo.value, "__notes__", []))
    assert "cogem trace of the failing run:" in notes


def test_long_and_adversarial_scenarios_by_default() -> None:
    seen: list[str] = []

    def record(path: Path) -> list[str]:
        seen.append(read_trace(path)[0].inputs["scenario"])
        return []

    check_reasoner(
        _reasoner(),
        scenarios=scenarios(kinds=["adversarial", "unicode"], max_size=500),
        properties=[*default_properties(), record],
        settings=QUICK,
    )
    assert seen


def test_an_input_error_raised_mid_run_is_not_excused() -> None:
    # Only a scenario rejected before the run starts is fine; here the *model's* blank query
    # fails inside the recall step.
    specs = load_specs()
    perceived = '{"summary":"s","actors":["a"],"action":"x"}'

    def blank_query() -> Any:
        return fake_runtime(ScriptedLLM(generations=[perceived] + ['{"query":"   "}'] * 5))

    with pytest.raises(CogemError) as excinfo:
        check_reasoner(
            Reasoner.sequential([specs["perceive"], specs["recall"]]),
            runtime=blank_query,
            settings=QUICK,
        )
    assert "cogem trace of the failing run:" in "\n".join(excinfo.value.__notes__)

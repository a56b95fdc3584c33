"""Replay (zero model calls) and re-derive, on fakes."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from cogem import END, START, ModuleSpec, Reasoner, load_specs, verify_trace
from cogem.audit.replay import (
    ReplayDivergenceError,
    ReplayLLM,
    ReplayRefusedError,
    SpecMismatchError,
    first_difference,
    rederive_trace,
    replay_trace,
)
from cogem.cli.replay_cmd import run_replay_cli
from cogem.errors import OutputValidationError, TraceError, UsageError
from cogem.llm.base import ChatPrompt
from cogem.spec import Choice
from cogem.testing import SchemaFillingLLM, ScriptedLLM, fake_runtime, rewrite_trace
from cogem.trace import read_trace
from cogem.trace.events import LlmCall, ModuleStart, RunEnd, ValidationRetry

SCENARIO = "I found a wallet on the street and kept the money."
PERCEIVE = '{"summary":"s","actors":["me"],"action":"kept the money"}'
QUERY = '{"query":"keeping found money"}'
JUDGE = '{"reason":"finders are not keepers","cited_ids":[]}'
PLAN = '{"stance":"refrain","steps":["return the wallet"]}'


def _default_trace(tmp_path: Path, llm: Any = None) -> Path:
    result = Reasoner.default().run(SCENARIO, fake_runtime(llm), trace_path=tmp_path / "t.jsonl")
    return Path(result.trace_path)


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def rewrite(
    path: Path, edit: Callable[[list[dict[str, Any]]], None], *, audit_ok: bool = True
) -> Path:
    """A consistent forgery (edited, then re-hashed) that ``cogem audit``'s chain check cannot
    catch, so only replay can."""
    rewrite_trace(path, edit)
    assert verify_trace(path).ok or not audit_ok
    return path


def _index(records: list[dict[str, Any]], type_: str, module: str) -> int:
    return next(i for i, r in enumerate(records) if r["type"] == type_ and r["module"] == module)


# --- replay ---------------------------------------------------------------------------------


def test_default_run_replays_with_zero_model_calls(tmp_path: Path) -> None:
    path = _default_trace(tmp_path)
    result = replay_trace(path, out=tmp_path / "replay.jsonl")
    assert result.matches, result
    assert result.model_calls == 0 and result.served_calls == result.recorded_calls == 5
    assert [s.status for s in result.steps] == ["replayed"] * 4
    assert [s.module for s in result.steps] == ["perceive", "recall", "judge", "plan"]
    assert result.final_state_diff is None and result.error is None
    assert verify_trace(result.replay_trace_path).ok
    old = [e for e in read_trace(path) if isinstance(e, LlmCall)]
    new = [e for e in read_trace(result.replay_trace_path) if isinstance(e, LlmCall)]
    assert [(e.prompt_text, e.raw_output, e.probs) for e in old] == [
        (e.prompt_text, e.raw_output, e.probs) for e in new
    ]
    assert read_trace(result.replay_trace_path)[0].manifest.model["model_id"].startswith("replay:")


def test_replay_defaults_to_a_temp_trace(tmp_path: Path) -> None:
    result = replay_trace(_default_trace(tmp_path))
    assert result.matches and result.replay_trace_path.is_file()
    assert result.replay_trace_path.parent != tmp_path


def test_run_with_a_validation_retry_replays(tmp_path: Path) -> None:
    llm = ScriptedLLM(
        generations=[PERCEIVE, QUERY, '{"reason": 1}', JUDGE, PLAN], scores=[[-2.0, -0.5, -3.0]]
    )
    path = _default_trace(tmp_path, llm)
    result = replay_trace(path, out=tmp_path / "replay.jsonl")
    assert result.matches, result
    assert result.served_calls == 6
    retries = [e for e in read_trace(result.replay_trace_path) if isinstance(e, ValidationRetry)]
    assert [(r.module, r.attempt) for r in retries] == [("judge", 1)]


def test_failed_run_replays_to_the_same_failure(tmp_path: Path) -> None:
    bad = '{"reason":"r","cited_ids":["made.up.id"]}'
    llm = ScriptedLLM(generations=[PERCEIVE, QUERY, bad, bad], scores=[[-1.0, -1.0, -1.0]])
    with pytest.raises(OutputValidationError):
        _default_trace(tmp_path, llm)
    result = replay_trace(tmp_path / "t.jsonl", out=tmp_path / "replay.jsonl")
    assert result.matches, result
    assert result.error is not None and result.error.startswith("OutputValidationError")
    assert [s.module for s in result.steps] == ["perceive", "recall", "judge"]


def _looping_reasoner(router: Callable[[Any], str]) -> Reasoner:
    specs = load_specs()
    critic = ModuleSpec(
        name="critic",
        purpose="Decide whether the perception needs another look.",
        reads=["scenario", "summary"],
        writes=["again", "again_probs"],
        choice=Choice(
            field="again",
            probs_field="again_probs",
            options=["yes", "no"],
            prompt="Scenario: {scenario}\nSummary: {summary}\nMissing anything? {options}.",
        ),
    )
    reasoner = Reasoner([])
    reasoner.add_module(specs["perceive"], max_visits=3).add_module(critic, max_visits=3)
    reasoner.add_edge(START, "perceive").add_edge("perceive", "critic")
    reasoner.add_conditional_edges("critic", router, ["perceive", END])
    return reasoner


def test_conditional_bounded_loop_replays_the_recorded_path(tmp_path: Path) -> None:
    llm = ScriptedLLM(
        generations=[PERCEIVE, PERCEIVE.replace('"s"', '"s2"')],
        scores=[[-0.1, -3.0], [-3.0, -0.1]],  # yes, then no
    )
    reasoner = _looping_reasoner(lambda s: "perceive" if s["again"] == "yes" else END)
    path = reasoner.run(SCENARIO, fake_runtime(llm), trace_path=tmp_path / "t.jsonl").trace_path
    result = replay_trace(path, out=tmp_path / "replay.jsonl")
    assert result.matches, result
    order = [e.module for e in read_trace(result.replay_trace_path) if isinstance(e, ModuleStart)]
    assert order == ["perceive", "critic", "perceive", "critic"]


def test_tampered_trace_is_refused(tmp_path: Path) -> None:
    path = _default_trace(tmp_path)
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[3] = lines[3].replace('"step":', '"step": ', 1)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ReplayRefusedError, match=r"record 3.*cogem audit") as info:
        replay_trace(path)
    assert isinstance(info.value, TraceError)


def test_truncated_trace_is_refused(tmp_path: Path) -> None:
    path = _default_trace(tmp_path)
    lines = path.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join(lines[:-1]) + "\n", encoding="utf-8")
    with pytest.raises(ReplayRefusedError):
        replay_trace(path)


def test_forged_raw_output_is_a_mismatch_not_a_crash(tmp_path: Path) -> None:
    path = _default_trace(tmp_path)

    def forge(records: list[dict[str, Any]]) -> None:
        call = records[_index(records, "llm_call", "perceive")]
        parsed = json.loads(call["raw_output"])
        parsed["summary"] = "a forged summary"
        call["raw_output"], call["parsed"] = json.dumps(parsed), parsed

    result = replay_trace(rewrite(path, forge), out=tmp_path / "replay.jsonl")
    assert not result.matches
    assert result.steps[0].status == "changed" and result.steps[0].diff is not None
    assert result.steps[0].diff.field == "summary"
    assert result.steps[0].diff.new == '"a forged summary"'
    assert result.final_state_diff is not None
    assert result.final_state_diff.field == "final_state.summary"


def test_forged_output_that_changes_later_prompts_stops_at_the_divergence(tmp_path: Path) -> None:
    path = _default_trace(tmp_path)
    recall_call = _index(_records(path), "llm_call", "recall")

    def forge(records: list[dict[str, Any]]) -> None:
        call = records[_index(records, "llm_call", "perceive")]
        parsed = json.loads(call["raw_output"])
        parsed["action"] = "returned the money"
        call["raw_output"], call["parsed"] = json.dumps(parsed), parsed

    result = replay_trace(rewrite(path, forge), out=tmp_path / "replay.jsonl")
    assert not result.matches
    assert result.error is not None
    assert (
        result.error.startswith("ReplayDivergenceError") and f"record {recall_call}" in result.error
    )
    assert [s.status for s in result.steps] == ["changed", "changed", "missing", "missing"]
    assert verify_trace(result.replay_trace_path).ok  # the failed replay's own trace is intact


def test_forged_prompt_text_is_caught(tmp_path: Path) -> None:
    path = _default_trace(tmp_path)
    judge_call = _index(_records(path), "llm_call", "judge")

    def forge(records: list[dict[str, Any]]) -> None:
        records[judge_call]["prompt_text"] = records[judge_call]["prompt_text"].replace(
            "kept the money", "gave the money back"
        )

    result = replay_trace(rewrite(path, forge), out=tmp_path / "replay.jsonl")
    assert not result.matches and result.error is not None
    assert f"record {judge_call}" in result.error and "user text" in result.error


def test_spec_that_does_not_match_its_hash_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def forge(records: list[dict[str, Any]]) -> None:
        records[0]["manifest"]["specs"]["plan"]["purpose"] = "Do whatever."

    path = rewrite(_default_trace(tmp_path), forge, audit_ok=False)
    with pytest.raises(TraceError, match="'plan'"):
        replay_trace(path)  # refused by the audit, or by replay's own check
    # Replay checks every spec against its hash itself, whatever the audit rules are.
    monkeypatch.setattr(
        "cogem.audit.replay.verify_trace", lambda p, **kw: type("R", (), {"ok": True})()
    )
    with pytest.raises(SpecMismatchError, match="'plan'"):
        replay_trace(path)


def test_replay_llm_checks_call_kind_and_prompt(tmp_path: Path) -> None:
    events = read_trace(_default_trace(tmp_path))
    calls = [(i, e) for i, e in enumerate(events) if isinstance(e, LlmCall)]
    index, first = calls[0]
    system = load_specs()["perceive"].system
    user = first.prompt_text.split("<user>", 1)[1].split("</user>", 1)[0]

    with pytest.raises(ReplayDivergenceError, match=f"record {index}.*score_options"):
        ReplayLLM(calls, _info(events)).score_options(
            ChatPrompt(system=system, user=user), ["a", "b"]
        )
    with pytest.raises(ReplayDivergenceError, match="user text"):
        ReplayLLM(calls, _info(events)).generate(ChatPrompt(system=system, user=user + "!"))
    with pytest.raises(ReplayDivergenceError, match="system text"):
        ReplayLLM(calls, _info(events)).generate(ChatPrompt(system="Be brief.", user=user))
    with pytest.raises(ReplayDivergenceError, match="differs from the recorded one"):
        ReplayLLM(calls, _info(events)).generate(first.prompt_text + " ")
    # Whitespace around the turns is the chat template's business, so it is not compared.
    served = ReplayLLM(calls, _info(events)).generate(ChatPrompt(system=system, user=f"\n{user} "))
    assert served.text == first.raw_output
    # A user text that is only part of the recorded one leaves different template text around it.
    replay = ReplayLLM(calls[:1] * 2, _info(events))
    replay.generate(ChatPrompt(system=system, user=user))
    with pytest.raises(ReplayDivergenceError, match=f"template text .* record {index}"):
        replay.generate(ChatPrompt(system=system, user=user[:-5]))


def _info(events: list[Any]) -> Any:
    from cogem.llm.base import ModelInfo

    return ModelInfo.model_validate(events[0].manifest.model)


def test_first_difference_paths() -> None:
    assert first_difference({"a": [1, {"b": 2}]}, {"a": [1, {"b": 2}]}) is None
    diff = first_difference({"a": [1, {"b": 2}]}, {"a": [1, {"b": 3}]}, "s")
    assert diff is not None and (diff.field, diff.recorded, diff.new) == ("s.a[1].b", "2", "3")
    diff = first_difference({"x": 1, "y": 2}, {"x": 2, "y": 3}, order=["y"])
    assert diff is not None and diff.field == "y"
    diff = first_difference({"a": [1]}, {"a": [1, 2]})
    assert diff is not None and diff.field == "a.length"
    diff = first_difference({"a": 1}, {"a": True})
    assert diff is not None and diff.field == "a"
    assert first_difference({"a": "x" * 200}, {"a": "y"}).recorded.endswith("…")  # type: ignore[union-attr]


# --- rederive -------------------------------------------------------------------------------


def test_rederive_with_the_same_model_is_identical(tmp_path: Path) -> None:
    path = _default_trace(tmp_path)
    result = rederive_trace(path, fake_runtime(SchemaFillingLLM()), out=tmp_path / "r.jsonl")
    assert result.matches, result
    assert [s.status for s in result.steps] == ["identical"] * 4
    assert result.model_calls == 5 and result.model_id == result.recorded_model_id


def test_rederive_with_another_model_reports_changed_steps(tmp_path: Path) -> None:
    path = _default_trace(tmp_path)
    result = rederive_trace(path, fake_runtime(SchemaFillingLLM(seed=1)), out=tmp_path / "r.jsonl")
    assert not result.matches and result.error is None
    assert result.model_id != result.recorded_model_id
    perceive = result.steps[0]
    assert perceive.status == "changed" and perceive.diff is not None
    assert perceive.diff.field == "summary"  # the first field perceive writes
    assert perceive.diff.recorded != perceive.diff.new
    # Memory stays fixed to the recorded hits even though the new query differs.
    old_ids, new_ids = (_final_state(p)["recalled_ids"] for p in (path, result.replay_trace_path))
    assert old_ids == new_ids


def _final_state(path: Path) -> dict[str, Any]:
    state = next(e.final_state for e in read_trace(path) if isinstance(e, RunEnd))
    assert state is not None
    return state


# --- CLI glue -------------------------------------------------------------------------------


def _console() -> Console:
    return Console(file=io.StringIO(), width=200)


def test_cli_replay_prints_steps_and_returns_0(tmp_path: Path) -> None:
    console = _console()
    code = run_replay_cli(
        _default_trace(tmp_path), rederive=False, model=None, as_json=False, console=console
    )
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert code == 0, text
    assert "perceive" in text and "replayed" in text and "MATCHES" in text


def test_cli_replay_json_and_mismatch_exit_1(tmp_path: Path) -> None:
    def forge(records: list[dict[str, Any]]) -> None:
        call = records[_index(records, "llm_call", "plan")]
        parsed = json.loads(call["raw_output"])
        parsed["steps"][0] = "a forged step"
        call["raw_output"], call["parsed"] = json.dumps(parsed), parsed

    path = rewrite(_default_trace(tmp_path), forge)
    console = _console()
    code = run_replay_cli(path, rederive=False, model=None, as_json=True, console=console)
    payload = json.loads(console.file.getvalue())  # type: ignore[attr-defined]
    assert code == 1 and payload["matches"] is False
    assert payload["steps"][3]["status"] == "changed"
    assert payload["steps"][3]["diff"]["field"] == "steps[0]"


def test_cli_missing_trace_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"nope\.jsonl"):
        run_replay_cli(
            tmp_path / "nope.jsonl", rederive=False, model=None, as_json=False, console=_console()
        )


def test_cli_rederive_of_a_fake_model_trace_asks_for_a_model(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--model"):
        run_replay_cli(
            _default_trace(tmp_path), rederive=True, model=None, as_json=False, console=_console()
        )


def test_cli_rederive_loads_the_recorded_model_without_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def as_embedded(records: list[dict[str, Any]]) -> None:
        records[0]["manifest"]["model"].update(
            model_id="embedded:SmolLM2-135M-Instruct.Q4_1.gguf", source="embedded-gguf"
        )

    path = rewrite(_default_trace(tmp_path), as_embedded)
    asked: list[tuple[Any, bool]] = []

    def fake_make_runtime(settings: Any, *, with_memory: bool = True) -> Any:
        asked.append((settings, with_memory))
        return fake_runtime(SchemaFillingLLM())

    monkeypatch.setenv("COGEM_MODEL", "/somewhere/else")  # the recording wins over the env
    monkeypatch.setattr("cogem.engine.make_runtime", fake_make_runtime)
    console = _console()
    code = run_replay_cli(path, rederive=True, model=None, as_json=False, console=console)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert code == 0, text
    assert "IDENTICAL" in text and text.count("identical") >= 4
    ((settings, with_memory),) = asked
    assert settings.model == "embedded" and with_memory is False


def test_replay_never_overwrites_a_file(tmp_path: Path) -> None:
    taken = tmp_path / "taken.jsonl"
    taken.write_text("keep me\n", encoding="utf-8")
    with pytest.raises(UsageError, match="taken"):
        replay_trace(_default_trace(tmp_path), out=taken)
    assert taken.read_text(encoding="utf-8") == "keep me\n"

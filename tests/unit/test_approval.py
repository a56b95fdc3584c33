"""Human approval on fakes: decisions from the Python API, their trace events and audit rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cogem import Reasoner
from cogem.audit.replay import replay_trace
from cogem.engine.approval import ApprovalRequest, Decision
from cogem.errors import ApprovalError, UsageError
from cogem.testing import fake_runtime, rewrite_trace
from cogem.trace import read_trace, verify_trace

SCENARIO = "My neighbour asked me to water her plants and I forgot for a week."
NEW_STEPS = ["Apologise to the neighbour.", "Offer to replace the plants."]


def decisions(path: Path) -> list[Any]:
    return [e for e in read_trace(path) if e.type == "human_decision"]


def rules(path: Path) -> set[str]:
    return {p.rule for p in verify_trace(path).problems}


def test_approve_shows_verdict_and_plan_then_runs_on(tmp_path: Path) -> None:
    seen: list[ApprovalRequest] = []

    def approve(request: ApprovalRequest) -> Decision:
        seen.append(request)
        return Decision.approve()

    result = Reasoner.default(remember=True).run(SCENARIO, fake_runtime(), approve=approve)
    (request,) = seen
    assert request.module == "plan" and request.editable == ["steps"]
    assert {"verdict", "reason", "action"} <= set(request.inputs)
    assert set(request.output) == {"stance", "steps"}
    assert result.status == "ok" and "episode_id" in result.state
    (decision,) = decisions(result.trace_path)
    assert decision.actor == "human" and decision.decision == "approve" and decision.edits == {}
    events = [e.type for e in read_trace(result.trace_path)]
    # The decision comes after plan and before remember acts on the plan.
    assert events.index("human_decision") < events.index("memory_write")
    assert verify_trace(result.trace_path).ok


def test_edit_replaces_the_plan_and_is_attributed_to_the_human() -> None:
    result = Reasoner.default(remember=True).run(
        SCENARIO, fake_runtime(), approve=lambda r: Decision.edit(steps=NEW_STEPS, note="kinder")
    )
    assert result.state["steps"] == NEW_STEPS
    (decision,) = decisions(result.trace_path)
    assert (decision.decision, decision.edits, decision.note) == (
        "edit",
        {"steps": NEW_STEPS},
        "kinder",
    )
    assert verify_trace(result.trace_path).ok
    remember = next(
        e
        for e in read_trace(result.trace_path)
        if e.type == "module_start" and e.module == "remember"
    )
    assert remember.reads["stance"] == result.state["stance"]


def test_reject_stops_before_the_plan_is_acted_on() -> None:
    result = Reasoner.default(remember=True).run(
        SCENARIO, fake_runtime(), approve=lambda r: Decision.reject("not this")
    )
    assert result.status == "rejected" and "episode_id" not in result.state
    events = read_trace(result.trace_path)
    assert not any(e.type == "module_start" and e.module == "remember" for e in events)
    end = next(e for e in events if e.type == "run_end")
    assert end.status == "rejected"
    assert verify_trace(result.trace_path).ok


@pytest.mark.parametrize(
    ("decision", "match"),
    [
        (Decision.edit(stance="proceed"), "cannot be edited"),
        (Decision.edit(steps=["a", "b", "c", "d"]), "fails its schema"),
        (Decision.edit(), "at least one"),
        (Decision(decision="approve", edits={"steps": ["x"]}), "carries no edits"),
    ],
)
def test_invalid_decisions_are_refused(decision: Decision, match: str) -> None:
    with pytest.raises(ApprovalError, match=match):
        Reasoner.default().run(SCENARIO, fake_runtime(), approve=lambda r: decision)


def test_pause_and_resume_with_a_decision(tmp_path: Path) -> None:
    runtime = fake_runtime(home=tmp_path)
    paused = Reasoner.default().run(SCENARIO, runtime, thread="t", approve=True)
    assert paused.status == "paused" and paused.pending is not None
    assert "steps" in paused.state and not decisions(paused.trace_path)
    done = Reasoner.default().resume("t", runtime, approve=Decision.edit(steps=NEW_STEPS))
    assert done.status == "ok" and done.state["steps"] == NEW_STEPS
    assert done.trace_path == paused.trace_path and verify_trace(done.trace_path).ok


def test_pause_needs_a_thread() -> None:
    with pytest.raises(UsageError, match="thread"):
        Reasoner.default().run(SCENARIO, fake_runtime(), approve=True)


@pytest.mark.parametrize(
    "decision", [Decision.approve(), Decision.edit(steps=NEW_STEPS), Decision.reject()]
)
def test_replay_serves_the_recorded_decision(decision: Decision) -> None:
    result = Reasoner.default().run(SCENARIO, fake_runtime(), approve=lambda r: decision)
    replayed = replay_trace(result.trace_path)
    assert replayed.matches, replayed.error or replayed.final_state_diff


def _approved(tmp_path: Path, decision: Decision) -> Path:
    return (
        Reasoner.default(remember=True)
        .run(SCENARIO, fake_runtime(), approve=lambda r: decision, trace_path=tmp_path / "t.jsonl")
        .trace_path
    )


def test_audit_catches_an_edit_to_a_derived_field(tmp_path: Path) -> None:
    path = _approved(tmp_path, Decision.edit(steps=NEW_STEPS))

    def forge(records: list[dict[str, Any]]) -> None:
        for r in records:
            if r["type"] == "human_decision":
                r["edits"]["stance"] = "proceed" if "proceed" not in str(records) else "refrain"

    assert "human_decision" in rules(rewrite_trace(path, forge, out=tmp_path / "f.jsonl"))


def test_audit_catches_acting_on_the_plan_without_a_decision(tmp_path: Path) -> None:
    path = _approved(tmp_path, Decision.approve())
    forged = rewrite_trace(
        path, lambda rs: [r for r in rs if r["type"] != "human_decision"], out=tmp_path / "f.jsonl"
    )
    assert "human_decision" in rules(forged)


def test_audit_catches_a_module_after_a_rejection(tmp_path: Path) -> None:
    path = _approved(tmp_path, Decision.approve())

    def forge(records: list[dict[str, Any]]) -> None:
        for r in records:
            if r["type"] == "human_decision":
                r["decision"] = "reject"

    assert "human_decision" in rules(rewrite_trace(path, forge, out=tmp_path / "f.jsonl"))


def test_audit_catches_a_decision_without_a_gate(tmp_path: Path) -> None:
    path = _approved(tmp_path, Decision.approve())

    def forge(records: list[dict[str, Any]]) -> None:
        del records[0]["manifest"]["graph"]["approval"]

    assert "human_decision" in rules(rewrite_trace(path, forge, out=tmp_path / "f.jsonl"))

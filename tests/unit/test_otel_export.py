from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from cogem import Reasoner, load_specs
from cogem.audit.otel import export_trace
from cogem.errors import OutputValidationError, TraceError, UsageError
from cogem.testing import ScriptedLLM, fake_runtime
from cogem.trace import read_trace
from cogem.trace.events import LlmCall, ModuleEnd, RunStart

SCENARIO = "I found a wallet on the street and kept the money."
KIND = "openinference.span.kind"


def _export(path: Path) -> tuple[int, list[ReadableSpan]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    count = export_trace(path, tracer_provider=provider)
    return count, list(exporter.get_finished_spans())


def _kind(spans: list[ReadableSpan], kind: str) -> list[ReadableSpan]:
    return [s for s in spans if (s.attributes or {}).get(KIND) == kind]


def _attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def _parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def _span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return int(span.context.span_id)


@pytest.fixture
def run(tmp_path: Path) -> tuple[Path, list[ReadableSpan], int]:
    result = Reasoner.default().run(SCENARIO, fake_runtime(), trace_path=tmp_path / "t.jsonl")
    count, spans = _export(result.trace_path)
    return result.trace_path, spans, count


def test_span_kinds_and_counts(run: tuple[Path, list[ReadableSpan], int]) -> None:
    path, spans, count = run
    events = read_trace(path)
    roots = [s for s in spans if s.parent is None]
    assert len(roots) == 1 and _attrs(roots[0])[KIND] == "CHAIN"
    assert count == len(spans)
    assert len(_kind(spans, "CHAIN")) == 1 + 4
    assert len(_kind(spans, "LLM")) == sum(isinstance(e, LlmCall) for e in events)
    assert len(_kind(spans, "RETRIEVER")) == 1
    assert len({s.context.trace_id for s in spans if s.context is not None}) == 1


def test_parent_child_structure(run: tuple[Path, list[ReadableSpan], int]) -> None:
    _, spans, _ = run
    root = next(s for s in spans if s.parent is None)
    modules = [s for s in _kind(spans, "CHAIN") if s is not root]
    assert all(_parent_id(m) == _span_id(root) for m in modules)
    by_id = {_span_id(m): m for m in modules}
    for leaf in _kind(spans, "LLM") + _kind(spans, "RETRIEVER"):
        parent = by_id[_parent_id(leaf)]  # type: ignore[index]
        assert _attrs(parent)["cogem.module"] == _attrs(leaf)["cogem.module"]
    retriever = _kind(spans, "RETRIEVER")[0]
    assert _attrs(by_id[_parent_id(retriever)])["cogem.module"] == "recall"  # type: ignore[index]


def test_attributes_match_the_trace(run: tuple[Path, list[ReadableSpan], int]) -> None:
    path, spans, _ = run
    events = read_trace(path)
    start = events[0]
    assert isinstance(start, RunStart)
    root = next(s for s in spans if s.parent is None)
    attrs = _attrs(root)
    assert attrs["cogem.run_id"] == start.run_id
    assert attrs["cogem.trace.head"] == events[-1].hash
    assert attrs["llm.model_name"] == start.manifest.model["model_id"]
    assert attrs["input.value"] == SCENARIO
    final = json.loads(attrs["output.value"])
    assert final["verdict"] in {"acceptable", "wrong", "unclear"}
    assert root.status.status_code == StatusCode.OK

    modules = sorted(
        (s for s in _kind(spans, "CHAIN") if s is not root),
        key=lambda s: _attrs(s)["cogem.step"],
    )
    assert [_attrs(m)["cogem.module"] for m in modules] == ["perceive", "recall", "judge", "plan"]
    for m in modules:
        assert _attrs(m)["cogem.spec_hash"] == start.manifest.modules[_attrs(m)["cogem.module"]]

    recall_end = next(e for e in events if isinstance(e, ModuleEnd) and e.module == "recall")
    retriever = _attrs(_kind(spans, "RETRIEVER")[0])
    assert list(retriever["cogem.memory.hit_ids"]) == recall_end.output["recalled_ids"]
    assert list(retriever["cogem.memory.hit_ids"]) == final["recalled_ids"]
    for i, hit in enumerate(recall_end.output["memories"]):
        assert retriever[f"retrieval.documents.{i}.document.id"] == hit["id"]
        assert retriever[f"retrieval.documents.{i}.document.score"] == hit["score"]
        assert retriever[f"retrieval.documents.{i}.document.content"] == hit["text"]

    llm_calls = [e for e in events if isinstance(e, LlmCall)]
    llm_spans = sorted(_kind(spans, "LLM"), key=lambda s: _attrs(s)["cogem.record.seq"])
    for call, span in zip(llm_calls, llm_spans, strict=True):
        a = _attrs(span)
        assert a["cogem.call"] == call.call and a["cogem.attempt"] == call.attempt
        assert a["input.value"] == call.prompt_text
        assert a["llm.token_count.prompt"] == call.prompt_tokens
        assert a["llm.token_count.completion"] == call.completion_tokens
        if call.call == "score_options":
            assert json.loads(a["cogem.options"]) == call.options
            assert json.loads(a["cogem.option_probs"]) == call.probs
        else:
            assert a["output.value"] == call.raw_output


def test_timestamps_are_ordered_and_nested(run: tuple[Path, list[ReadableSpan], int]) -> None:
    _, spans, _ = run
    by_id = {_span_id(s): s for s in spans}
    for span in spans:
        assert span.start_time is not None and span.end_time is not None
        assert span.start_time <= span.end_time
        parent = by_id.get(_parent_id(span))  # type: ignore[arg-type]
        if parent is not None:
            assert parent.start_time <= span.start_time  # type: ignore[operator]
            assert span.end_time <= parent.end_time  # type: ignore[operator]
    # Spans follow the order the trace recorded them in.
    ordered = sorted(
        (s for s in spans if s.parent is not None), key=lambda s: _attrs(s)["cogem.record.seq"]
    )
    starts = [s.start_time for s in ordered if _attrs(s)[KIND] == "CHAIN"]
    assert starts == sorted(starts)  # type: ignore[type-var]
    ends = [s.end_time for s in ordered if _attrs(s)[KIND] != "CHAIN"]
    assert ends == sorted(ends)  # type: ignore[type-var]


def test_failed_run_exports_error_status(tmp_path: Path) -> None:
    perceive = '{"summary":"s","actors":["me"],"action":"kept the money"}'
    query = '{"query":"keeping found money"}'
    bad = '{"reason":"r","cited_ids":["made.up.id"]}'
    llm = ScriptedLLM(generations=[perceive, query, bad, bad], scores=[[-1.0, -1.0, -1.0]])
    specs = load_specs()
    reasoner = Reasoner.sequential([specs["perceive"], specs["recall"], specs["judge"]])
    with pytest.raises(OutputValidationError):
        reasoner.run(SCENARIO, fake_runtime(llm), trace_path=tmp_path / "t.jsonl")
    _, spans = _export(tmp_path / "t.jsonl")

    root = next(s for s in spans if s.parent is None)
    assert root.status.status_code == StatusCode.ERROR
    assert "OutputValidationError" in (root.status.description or "")
    judge = next(s for s in _kind(spans, "CHAIN") if _attrs(s).get("cogem.module") == "judge")
    assert judge.status.status_code == StatusCode.ERROR
    names = [e.name for e in judge.events]
    assert "cogem.validation_retry" in names and "exception" in names
    failed_attempts = [s for s in _kind(spans, "LLM") if s.status.status_code == StatusCode.ERROR]
    assert [_attrs(s)["cogem.attempt"] for s in failed_attempts] == [1, 2]
    others = [s for s in _kind(spans, "CHAIN") if _attrs(s).get("cogem.module") != "judge"]
    assert all(s.status.status_code == StatusCode.OK for s in others if s is not root)


def test_missing_opentelemetry_is_a_usage_error(
    run: tuple[Path, list[ReadableSpan], int], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, _, _ = run
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    with pytest.raises(UsageError, match=r"cogem\[otel\]"):
        export_trace(path)


def test_empty_trace_is_refused(tmp_path: Path) -> None:
    (tmp_path / "t.jsonl").write_text("")
    with pytest.raises(TraceError):
        _export(tmp_path / "t.jsonl")

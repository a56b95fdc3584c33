"""Export a finished trace file as OpenTelemetry spans, after the fact.

The trace file stays the record of truth (hash-chained, verifiable); spans are a *view* of it for
the observability tools people already run (Jaeger, Phoenix, Langfuse, any OTLP collector).
Span attributes follow the OpenInference semantic conventions so LLM-aware viewers show prompts,
outputs, token counts and retrieved documents natively; cogem-specific facts (spec hashes, option
probabilities, record hashes) go under ``cogem.*``.

Spans get real start/end times: a record's ``ts`` is when it was written, i.e. when the work it
describes *ended*, so ``ts - latency_ms`` is when that work started. Parents are then widened to
contain their children, because the two clocks involved (wall time and a monotonic timer) can
disagree by microseconds and viewers draw a child outside its parent as a broken trace.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cogem.canonical import canonical_json
from cogem.errors import TraceError, UsageError
from cogem.trace.events import (
    LlmCall,
    ModuleEnd,
    ModuleStart,
    Retrieval,
    RunEnd,
    RunError,
    RunStart,
    ValidationRetry,
)
from cogem.trace.verify import read_trace

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer, TracerProvider

__all__ = ["export_trace"]

# OpenInference attribute names (openinference-semantic-conventions); plain strings so cogem does
# not depend on that package.
KIND = "openinference.span.kind"
INPUT, INPUT_MIME = "input.value", "input.mime_type"
OUTPUT, OUTPUT_MIME = "output.value", "output.mime_type"
MODEL_NAME = "llm.model_name"
TOKENS_PROMPT, TOKENS_COMPLETION = "llm.token_count.prompt", "llm.token_count.completion"
TOKENS_TOTAL = "llm.token_count.total"
DOCUMENTS = "retrieval.documents"
JSON_MIME, TEXT_MIME = "application/json", "text/plain"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_INSTRUMENTATION = "cogem.audit.otel"


@dataclass
class _Node:
    """A span to be: built from the whole trace first, so parent times are known before export."""

    name: str
    start: int
    end: int
    attrs: dict[str, Any]
    children: list[_Node] = field(default_factory=list)
    events: list[tuple[str, dict[str, Any], int]] = field(default_factory=list)
    error: str | None = None

    def touch(self, t: int) -> None:
        self.end = max(self.end, t)

    def fit(self) -> None:
        for child in self.children:
            child.fit()
            self.start = min(self.start, child.start)
            self.end = max(self.end, child.end)


def export_trace(path: Path, tracer_provider: TracerProvider | None = None) -> int:
    """Emit the run recorded in the trace at ``path`` as spans; return how many were emitted.

    ``tracer_provider`` defaults to the global one (``opentelemetry.trace.set_tracer_provider``).
    Spans are flushed before returning, so a short-lived script does not lose them.
    """
    try:
        from opentelemetry import trace as otel
    except ImportError as exc:
        raise UsageError(
            "exporting to OpenTelemetry needs opentelemetry-api and opentelemetry-sdk: pip install 'cogem[otel]'"
        ) from exc
    root = _build(read_trace(Path(path)), str(path))
    root.fit()
    provider = tracer_provider or otel.get_tracer_provider()
    count = _emit(provider.get_tracer(_INSTRUMENTATION), root, None)
    flush = getattr(provider, "force_flush", None)  # SDK providers buffer; the API's has none
    if callable(flush):
        flush()
    return count


def _emit(tracer: Tracer, node: _Node, parent: Any) -> int:
    from opentelemetry.trace import Status, StatusCode, set_span_in_context

    span = tracer.start_span(node.name, parent, attributes=node.attrs, start_time=node.start)
    for name, attrs, t in node.events:
        span.add_event(name, attrs, timestamp=t)
    span.set_status(Status(StatusCode.ERROR, node.error) if node.error else Status(StatusCode.OK))
    context = set_span_in_context(span)
    count = 1 + sum(_emit(tracer, child, context) for child in node.children)
    span.end(end_time=node.end)
    return count


def _build(events: list[Any], where: str) -> _Node:
    if not events or not isinstance(events[0], RunStart):
        raise TraceError(f"trace does not start with run_start: path={where!r}")
    first: RunStart = events[0]
    manifest = first.manifest
    model = str(manifest.model.get("model_id", "unknown"))
    scenario = first.inputs.get("scenario")
    root = _Node("reasoner", _ns(first.ts), _ns(first.ts), {
        KIND: "CHAIN", MODEL_NAME: model,
        INPUT: scenario if isinstance(scenario, str) else canonical_json(first.inputs),
        INPUT_MIME: TEXT_MIME if isinstance(scenario, str) else JSON_MIME,
        "cogem.run_id": first.run_id, "cogem.trace.head": events[-1].hash,
        "cogem.trace.records": len(events), "cogem.version": manifest.cogem_version,
        "cogem.seed": manifest.seed, "cogem.modules": canonical_json(manifest.modules),
        "cogem.decoding": canonical_json(manifest.decoding),
    })  # fmt: skip
    steps: dict[int, _Node] = {}
    running: _Node | None = None  # the module an error record without a step belongs to
    for ev in events[1:]:
        t = _ns(ev.ts)
        root.touch(t)
        node = steps.get(ev.step) if getattr(ev, "step", None) is not None else None
        if node is not None:
            node.touch(t)
        if isinstance(ev, ModuleStart):
            running = steps[ev.step] = _Node(ev.module, t, t, _module_attrs(ev))
            root.children.append(running)
        elif isinstance(ev, LlmCall):
            (node or root).children.append(_llm_node(ev, t, model))
        elif isinstance(ev, Retrieval):
            (node or root).children.append(_retrieval_node(ev, t))
        elif isinstance(ev, ValidationRetry):
            # A retry is recovered from, so it is an event on the step, not an error status.
            attrs = {"cogem.attempt": ev.attempt, "cogem.error": ev.error}
            (node or root).events.append(("cogem.validation_retry", attrs, t))
        elif isinstance(ev, ModuleEnd) and node is not None:
            node.start = min(node.start, t - _ms_ns(ev.latency_ms))
            node.attrs.update({OUTPUT: canonical_json(ev.output), OUTPUT_MIME: JSON_MIME})
            node.attrs["cogem.schema_hash"] = ev.schema_hash
            _add_documents(node, ev.output, manifest.specs.get(ev.module, {}))
            running = None
        elif isinstance(ev, RunError):
            target = node or running
            for failed in filter(None, (target, root)):
                failed.error = f"{ev.error_type}: {ev.message}"
                failed.touch(t)
            exception = {"exception.type": ev.error_type, "exception.message": ev.message}
            (target or root).events.append(("exception", exception, t))
        elif isinstance(ev, RunEnd):
            root.start = min(root.start, t - _ms_ns(ev.latency_ms))
            root.attrs.update({"cogem.status": ev.status, "cogem.steps": ev.steps})
            if ev.final_state is not None:
                root.attrs.update({OUTPUT: canonical_json(ev.final_state), OUTPUT_MIME: JSON_MIME})
            if ev.status == "error" and root.error is None:
                root.error = "run ended with status 'error'"
        elif getattr(ev, "type", None) == "seal":
            # Matched by type name: the seal (signed head) is newer than some traces we export.
            root.attrs["cogem.trace.sealed"] = True
            if getattr(ev, "key_id", None):
                root.attrs["cogem.trace.key_id"] = ev.key_id
    if not any(isinstance(ev, RunEnd) for ev in events) and root.error is None:
        # A crashed or truncated run: say so rather than export it as a success.
        root.error = "trace has no run_end record (crashed or truncated run)"
    return root


def _common(ev: Any) -> dict[str, Any]:
    # seq and hash let an auditor go from a span back to the exact, hash-verified trace line.
    return {
        "cogem.module": ev.module, "cogem.step": ev.step,
        "cogem.record.seq": ev.seq, "cogem.record.hash": ev.hash,
    }  # fmt: skip


def _module_attrs(ev: ModuleStart) -> dict[str, Any]:
    return {
        KIND: "CHAIN", INPUT: canonical_json(ev.reads), INPUT_MIME: JSON_MIME,
        "cogem.spec_hash": ev.spec_hash, **_common(ev),
    }  # fmt: skip


def _llm_node(ev: LlmCall, t: int, model: str) -> _Node:
    attrs: dict[str, Any] = {
        KIND: "LLM", MODEL_NAME: model, INPUT: ev.prompt_text, INPUT_MIME: TEXT_MIME,
        TOKENS_PROMPT: ev.prompt_tokens, TOKENS_COMPLETION: ev.completion_tokens,
        TOKENS_TOTAL: ev.prompt_tokens + ev.completion_tokens,
        "cogem.call": ev.call, "cogem.attempt": ev.attempt, **_common(ev),
    }  # fmt: skip
    optional = {"cogem.schema_hash": ev.schema_hash, "cogem.finish_reason": ev.finish_reason}
    as_json = {"options": ev.options, "option_probs": ev.probs, "option_logprobs": ev.logprobs}
    optional |= {f"cogem.{k}": canonical_json(v) for k, v in as_json.items() if v is not None}
    if ev.parsed is not None:
        optional["cogem.parsed"] = canonical_json(ev.parsed)
    attrs.update({k: v for k, v in optional.items() if v is not None})
    if ev.raw_output is not None:
        attrs.update({OUTPUT: ev.raw_output, OUTPUT_MIME: TEXT_MIME})
    elif ev.options is not None and ev.probs is not None:
        probs = dict(zip(ev.options, ev.probs, strict=True))
        attrs.update({OUTPUT: canonical_json(probs), OUTPUT_MIME: JSON_MIME})
    node = _Node(f"{ev.module}.{ev.call}", t - _ms_ns(ev.latency_ms), t, attrs)
    if ev.call == "generate" and ev.parsed is None:
        # This attempt's output failed validation (a later attempt may still have succeeded).
        node.error = "output failed validation"
    return node


def _retrieval_node(ev: Retrieval, t: int) -> _Node:
    attrs: dict[str, Any] = {
        KIND: "RETRIEVER", INPUT: ev.query, INPUT_MIME: TEXT_MIME, "cogem.memory.k": ev.k,
        "cogem.memory.hit_ids": [hit.id for hit in ev.hits], **_common(ev),
    }  # fmt: skip
    for i, hit in enumerate(ev.hits):
        prefix = f"{DOCUMENTS}.{i}.document"
        meta = {"distance": hit.distance, "kind": hit.kind, "source": hit.source}
        attrs |= {f"{prefix}.id": hit.id, f"{prefix}.score": hit.score}
        attrs[f"{prefix}.metadata"] = canonical_json(meta)
    return _Node(f"{ev.module}.retrieve", t - _ms_ns(ev.latency_ms), t, attrs)


def _add_documents(step: _Node, output: dict[str, Any], spec: dict[str, Any]) -> None:
    """Give retriever spans the retrieved text: the retrieval record holds ids and scores only,
    the text is in the step's output under the spec's ``hits_field``."""
    hits = output.get((spec.get("retrieval") or {}).get("hits_field") or "") or []
    texts = {h.get("id"): h.get("text") for h in hits if isinstance(h, dict)}
    for child in step.children:
        if child.attrs.get(KIND) == "RETRIEVER":
            for i, hit_id in enumerate(child.attrs["cogem.memory.hit_ids"]):
                if isinstance(texts.get(hit_id), str):
                    child.attrs[f"{DOCUMENTS}.{i}.document.content"] = texts[hit_id]


def _ns(ts: str) -> int:
    # Integer arithmetic: a float timestamp would lose the microseconds the trace recorded.
    stamp = datetime.fromisoformat(ts)
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return (stamp - _EPOCH) // timedelta(microseconds=1) * 1000


def _ms_ns(ms: float) -> int:
    return round(ms * 1_000_000)

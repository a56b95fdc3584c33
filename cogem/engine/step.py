"""One module step: render prompt -> constrained call(s) -> validate -> trace.

Every model call, retrieval and retry is recorded before the step returns, and a step that cannot
produce valid output raises a typed error instead of writing a default.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from cogem.canonical import sha256_json
from cogem.engine.render import render_template
from cogem.engine.runtime import RunContext
from cogem.errors import ConfigError, LoopBoundError, OutputValidationError, RunError
from cogem.llm.base import ChatPrompt
from cogem.memory.base import MemoryRecord, Provenance
from cogem.schema import parse_and_validate, resolve_schema, validation_error
from cogem.spec import ModuleSpec
from cogem.trace.events import (
    LlmCall,
    MemoryWrite,
    ModuleEnd,
    ModuleStart,
    Retrieval,
    ValidationRetry,
)

__all__ = ["choice_prompt", "run_step"]


def run_step(
    spec: ModuleSpec, state: Mapping[str, Any], ctx: RunContext, *, max_visits: int = 1
) -> dict[str, Any]:
    """Run ``spec`` on ``state`` and return the fields it writes."""
    visits = ctx.visits.get(spec.name, 0)
    if visits >= max_visits:
        raise LoopBoundError(
            f"module {spec.name!r} would run {visits + 1} times; its bound is {max_visits}"
        )
    ctx.visits[spec.name] = visits + 1
    ctx.current = spec.name
    started = time.perf_counter()
    step = ctx.next_step()
    # A module sees only the fields its spec declares: the transparency rule, enforced here.
    reads = {name: state.get(name) for name in spec.reads}
    start = ctx.emit(
        ModuleStart,
        module=spec.name,
        step=step,
        spec_hash=spec.spec_hash,
        reads=reads,
        artifact_sha256=_artifact(spec, ctx),
    )

    output: dict[str, Any] = {}
    if spec.choice:
        output.update(_choose(spec, reads, ctx, step))
    generation_schema: dict[str, Any] | None = None
    if spec.output_schema is not None:
        generation_schema = resolve_schema(spec.output_schema, {**reads, **output})
    if spec.generates and generation_schema is not None:
        output.update(_generate(spec, {**reads, **output}, generation_schema, ctx, step))
    if spec.retrieval:
        output.update(_retrieve(spec, {**reads, **output}, ctx, step))
    if spec.memory_write:
        output.update(_remember(spec, {**reads, **output}, ctx, step, cause=start.hash))

    full_schema = spec.full_output_schema(generation_schema)
    problem = validation_error(output, full_schema)
    if problem:
        raise OutputValidationError(f"module {spec.name!r}: step output fails its schema {problem}")
    ctx.emit(
        ModuleEnd,
        module=spec.name,
        step=step,
        output=output,
        output_schema=full_schema,
        schema_hash=sha256_json(full_schema),
        latency_ms=_ms(started),
    )
    return output


def _artifact(spec: ModuleSpec, ctx: RunContext) -> str | None:
    """SHA-256 of the tuned artifact this module runs on, or None on the base model."""
    tuned = ctx.runtime.llm_for(spec.name).info.tuned
    return tuned.sha256 if tuned is not None else None


def _prompt(spec: ModuleSpec, template: str, values: Mapping[str, Any]) -> ChatPrompt:
    user = render_template(template, values, spec.untrusted)
    return ChatPrompt(system=spec.system or None, user=user)


def choice_prompt(spec: ModuleSpec, reads: Mapping[str, Any]) -> ChatPrompt:
    """The prompt a module's closed-set choice is scored on, given the fields it reads.

    ``cogem tune`` trains on exactly this prompt, so a tuned module sees at run time the format
    it was fitted to.
    """
    if spec.choice is None:
        raise ConfigError(f"module {spec.name!r} has no closed-set choice", field="choice")
    options = ", ".join(spec.choice.options)
    return _prompt(spec, spec.choice.prompt, {**reads, "options": options})


def _choose(
    spec: ModuleSpec, reads: Mapping[str, Any], ctx: RunContext, step: int
) -> dict[str, Any]:
    assert spec.choice is not None
    choice = spec.choice
    prompt = choice_prompt(spec, reads)
    scores = ctx.runtime.llm_for(spec.name).score_options(prompt, choice.options)
    ctx.emit(
        LlmCall,
        module=spec.name,
        step=step,
        call="score_options",
        attempt=1,
        prompt_text=scores.prompt_text,
        options=scores.options,
        logprobs=scores.logprobs,
        probs=scores.probs,
        prompt_tokens=scores.prompt_tokens,
        completion_tokens=0,
        latency_ms=scores.latency_ms,
        artifact_sha256=_artifact(spec, ctx),
    )
    # Decide on the exact log-probabilities (softmax can round tiny differences away); ties go
    # to the first option in spec order, so the decision is deterministic.
    best = max(range(len(scores.options)), key=lambda i: (scores.logprobs[i], -i))
    return {
        choice.field: scores.options[best],
        choice.probs_field: dict(zip(scores.options, scores.probs, strict=True)),
    }


def _generate(
    spec: ModuleSpec, values: Mapping[str, Any], schema: dict[str, Any], ctx: RunContext, step: int
) -> dict[str, Any]:
    schema_hash = sha256_json(schema)
    user = render_template(spec.prompt, values, spec.untrusted)
    feedback = ""
    attempts = spec.bounds.retries + 1
    for attempt in range(1, attempts + 1):
        prompt = ChatPrompt(system=spec.system or None, user=user + feedback)
        gen = ctx.runtime.llm_for(spec.name).generate(
            prompt, schema=schema, max_new_tokens=spec.bounds.max_new_tokens
        )
        parsed: dict[str, Any] | None = None
        error: OutputValidationError | None = None
        try:
            parsed = parse_and_validate(gen.text, schema, module=spec.name)
        except OutputValidationError as exc:
            error = exc
            if gen.finish_reason == "length":
                error = OutputValidationError(
                    f"{exc} (stopped at max_new_tokens={spec.bounds.max_new_tokens})"
                )
        ctx.emit(
            LlmCall,
            module=spec.name,
            step=step,
            call="generate",
            attempt=attempt,
            prompt_text=gen.prompt_text,
            schema_hash=schema_hash,
            raw_output=gen.text,
            parsed=parsed,
            prompt_tokens=gen.prompt_tokens,
            completion_tokens=gen.completion_tokens,
            finish_reason=gen.finish_reason,
            latency_ms=gen.latency_ms,
            artifact_sha256=_artifact(spec, ctx),
        )
        if parsed is not None:
            return parsed
        assert error is not None
        if attempt == attempts:
            raise OutputValidationError(f"{error}; gave up after {attempts} attempt(s)")
        ctx.emit(ValidationRetry, module=spec.name, step=step, attempt=attempt, error=str(error))
        # Bounded retry with the validation error fed back, for decoders that cannot enforce the schema.
        feedback = f"\n\nYour previous reply was invalid ({error}). Reply with valid JSON only."
    raise RunError("unreachable")  # pragma: no cover - the loop always returns or raises


def _retrieve(
    spec: ModuleSpec, values: Mapping[str, Any], ctx: RunContext, step: int
) -> dict[str, Any]:
    assert spec.retrieval is not None
    retrieval = spec.retrieval
    memory = ctx.runtime.memory
    if memory is None:
        raise RunError(
            f"module {spec.name!r} retrieves from memory, but the runtime has no memory store"
        )
    query = str(values.get(retrieval.query_field) or "")
    if not query.strip():
        # A blank query is the model's output failing, not the caller's mistake.
        raise OutputValidationError(
            f"module {spec.name!r}: the query field {retrieval.query_field!r} is blank"
        )
    k = ctx.runtime.settings.recall_k or retrieval.k
    k = min(k, retrieval.k)  # the spec's k is the schema's bound; settings may only lower it
    started = time.perf_counter()
    # Recency is measured against the run's start, so every step of a run ranks alike and the
    # recorded time lets an auditor recompute the scores.
    hits = memory.search(
        query, k, kinds=retrieval.kinds, weights=retrieval.weights, now=ctx.started_at
    )
    # The state keeps what later modules need; the full score components go to the trace.
    rows = [
        {
            "id": h.id,
            "text": h.text,
            "kind": h.kind,
            "source": h.source,
            "score": h.score,
            "distance": h.distance,
        }
        for h in hits
    ]
    ctx.emit(
        Retrieval,
        module=spec.name,
        step=step,
        query=query,
        k=k,
        kinds=retrieval.kinds,
        weights=retrieval.weights,
        now=ctx.started_at.isoformat(),
        hits=[
            {
                "id": h.id,
                "score": h.score,
                "distance": h.distance,
                "relevance": h.components.relevance,
                "recency": h.components.recency,
                "importance": h.components.importance,
                "kind": h.kind,
                "source": h.source,
            }
            for h in hits
        ],
        latency_ms=_ms(started),
    )
    return {retrieval.hits_field: rows, retrieval.ids_field: [h.id for h in hits]}


def _remember(
    spec: ModuleSpec, values: Mapping[str, Any], ctx: RunContext, step: int, *, cause: str
) -> dict[str, Any]:
    assert spec.memory_write is not None
    write = spec.memory_write
    memory = ctx.runtime.memory
    if memory is None:
        raise RunError(f"module {spec.name!r} writes memory, but the runtime has no memory store")
    text = render_template(write.text, values)
    run_id = ctx.trace.run_id
    # Idempotency key: the same run, step and content always give the same id, so a repeated or
    # resumed step upserts the record it already wrote instead of adding a duplicate.
    key = sha256_json([run_id, step, text])[:32]
    record_id = f"{write.kind}.{key}"
    try:
        record = MemoryRecord(
            id=record_id,
            text=text,
            kind=write.kind,
            source=f"cogem run {run_id}, module {spec.name}",
            created_at=ctx.started_at,
            importance=write.importance,
            provenance=Provenance(module=spec.name, run_id=run_id, record_hash=cause),
        )
    except ValidationError as exc:
        raise OutputValidationError(
            f"module {spec.name!r}: memory record is invalid: {exc.errors()[0]['msg']}"
        ) from exc
    memory.add([record])
    ctx.emit(
        MemoryWrite,
        module=spec.name,
        step=step,
        record_id=record_id,
        kind=write.kind,
        text=text,
        importance=write.importance,
        caused_by=cause,
    )
    return {write.id_field: record_id}


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000.0, 3)

"""Who answers an eval's items: ``direct`` option scoring, or a modular reasoner.

``direct`` is one option-scored call per item with the suite's exact prompt, the way
lm-evaluation-harness scores multiple choice (so its numbers can be checked against it).
A reasoner — ``default`` (perceive → recall → judge → plan) or a user's — is run on the suite's
scenario text; its verdict distribution is mapped onto the suite's choices, and every item gets
its own trace file.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

from cogem.engine.graph import Reasoner
from cogem.engine.runtime import Runtime
from cogem.errors import CogemError, ConfigError, InputError, RunError, UsageError
from cogem.evals.records import EvalItem, SampleRecord
from cogem.evals.suite import Suite
from cogem.llm.base import OptionScores
from cogem.llm.batch_scoring import BatchPlan
from cogem.llm.scoring_pool import ScoringPool, available_cores

__all__ = ["Answerer", "DirectAnswerer", "ReasonerAnswerer", "make_answerer"]

Todo = Sequence[tuple[int, EvalItem]]
Emit = Callable[[list[SampleRecord]], None]


class Answerer(Protocol):
    name: str

    def detail(self) -> dict[str, Any]:
        """What the manifest records about this answerer."""
        ...

    def decoding(self) -> dict[str, Any]: ...

    def answer(self, todo: Todo, emit: Emit) -> None:
        """Answer every item in ``todo``, passing finished samples to ``emit`` as they complete."""
        ...


def _base(index: int, item: EvalItem, options: list[str]) -> dict[str, Any]:
    return {
        "index": index, "item_id": item.id, "subset": item.subset, "split": item.split,
        "group": item.group, "input": item.fields, "options": options, "target": item.target,
    }  # fmt: skip


def _scored(base: dict[str, Any], logprobs: list[float], probs: list[float]) -> dict[str, Any]:
    # Decided on the exact log-probabilities; ties go to the first option.
    prediction = max(range(len(logprobs)), key=lambda i: (logprobs[i], -i))
    return {
        **base, "logprobs": logprobs, "probs": probs,
        "prediction": prediction, "correct": prediction == base["target"],
    }  # fmt: skip


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class DirectAnswerer:
    """One option-scored call per item, batched when the backend offers ``score_batch``."""

    name = "direct"

    def __init__(
        self,
        suite: Suite,
        runtime: Runtime,
        *,
        batch: BatchPlan | None = None,
        chunk: int = 64,
        workers: int = 1,
    ) -> None:
        self._suite = suite
        self._runtime = runtime
        self._llm = runtime.llm
        self._batch = batch or BatchPlan()
        self._chunk = chunk
        self._choices = list(suite.config.prompt.choices)
        self._workers = workers
        if workers < 1:
            raise UsageError(f"--workers must be at least 1, got {workers}")
        if workers > 1:
            _check_poolable(runtime, workers)
        # Each worker gets an equal share of the cores this process may use.
        self._threads = max(1, available_cores() // workers) if workers > 1 else None

    def detail(self) -> dict[str, Any]:
        return {"prompt_template": self._suite.config.prompt.template, "choices": self._choices}

    def decoding(self) -> dict[str, Any]:
        return {
            "mode": "option-scoring", "do_sample": False, "dtype": self._llm.info.dtype,
            "batch_max_tokens": self._batch.max_tokens, "batch_max_rows": self._batch.max_rows,
            "chunk": self._chunk, "workers": self._workers, "threads_per_worker": self._threads,
            # Which forward pass scored: cogem's Llama scorer or transformers' own (None: served).
            "forward": getattr(self._llm, "scoring_forward", None),
        }  # fmt: skip

    def answer(self, todo: Todo, emit: Emit) -> None:
        prompts = {index: self._suite.prompt(item) for index, item in todo}
        # Longest first: batches of similar length pad least, and memory peaks early.
        ordered = sorted(todo, key=lambda pair: (-len(prompts[pair[0]]), pair[0]))
        parts = [ordered[s : s + self._chunk] for s in range(0, len(ordered), self._chunk)]
        if self._workers > 1 and parts:
            self._answer_in_pool(parts, prompts, emit)
            return
        for part in parts:
            started = time.perf_counter()
            results = self._score([prompts[i] for i, _ in part])
            share = (time.perf_counter() - started) * 1000.0 / len(part)
            emit(self._records(part, prompts, results, share))

    def _answer_in_pool(self, parts: list[list[tuple[int, EvalItem]]], prompts: dict[int, str],
                        emit: Emit) -> None:  # fmt: skip
        from concurrent.futures import as_completed
        from concurrent.futures.process import BrokenProcessPool

        settings = self._runtime.settings
        with ScoringPool(
            model=settings.model, dtype=settings.dtype, seed=settings.seed,
            workers=self._workers, threads=self._threads, expected=self._llm.info,
        ) as pool:  # fmt: skip
            # Longest chunks are queued first, so the short ones even out the workers' tails.
            futures = {
                pool.submit([(prompts[i], self._choices) for i, _ in part], self._batch): part
                for part in parts
            }
            for future in as_completed(futures):
                part = futures[future]
                try:
                    results = future.result()
                except BrokenProcessPool as exc:
                    # Emitted chunks are in the log already: --resume picks up from there.
                    raise RunError(f"a scoring worker died ({exc}); rerun with --resume") from exc
                # Latency: each worker's scoring call time shared over its requests.
                emit(self._records(part, prompts, results, None))

    def _records(self, part: Sequence[tuple[int, EvalItem]], prompts: dict[int, str],
                 results: Sequence[OptionScores | CogemError], share: float | None
                 ) -> list[SampleRecord]:  # fmt: skip
        """Sample records of ``part``; ``share`` is each item's latency (None: the scores' own)."""
        records = []
        for (index, item), result in zip(part, results, strict=True):
            base = {**_base(index, item, self._choices), "prompt": prompts[index]}
            if isinstance(result, OptionScores):
                fields = _scored(base, list(result.logprobs), list(result.probs))
                latency = result.latency_ms if share is None else share
            else:
                fields = {**base, "error": _error(result)}
                latency = 0.0 if share is None else share
            records.append(SampleRecord.model_validate({**fields, "latency_ms": latency}))
        return records

    def _score(self, prompts: list[str]) -> list[OptionScores | CogemError]:
        batch = getattr(self._llm, "score_batch", None)
        if callable(batch):
            requests = [(p, self._choices) for p in prompts]
            try:
                return list(batch(requests, plan=self._batch))
            except TypeError:  # a backend whose score_batch takes no batch plan
                return list(batch(requests))
        results: list[OptionScores | CogemError] = []
        for prompt in prompts:
            try:
                results.append(self._llm.score_options(prompt, self._choices))
            except CogemError as exc:
                results.append(exc)
        return results


class ReasonerAnswerer:
    """Runs a reasoner per item; its verdict probabilities become the choice probabilities."""

    def __init__(self, name: str, reasoner: Reasoner, suite: Suite, runtime: Runtime,
                 trace_dir: Path) -> None:  # fmt: skip
        if suite.config.reasoner is None:
            raise ConfigError(
                f"suite {suite.name!r} defines no [reasoner] mapping; only --reasoner direct applies",
                path=str(suite.source), field="reasoner",
            )  # fmt: skip
        self.name = name
        self._reasoner = reasoner
        self._suite = suite
        self._runtime = runtime
        self._map = suite.config.reasoner
        self._trace_dir = trace_dir
        self._choices = list(suite.config.prompt.choices)
        reasoner.validate()

    @property
    def reasoner(self) -> Reasoner:
        return self._reasoner

    def detail(self) -> dict[str, Any]:
        detail = {
            "graph": self._reasoner.describe(),
            "modules": {n: s.spec_hash for n, s in self._reasoner.specs.items()},
            "scenario_template": self._map.scenario, "verdicts": self._map.verdicts,
        }  # fmt: skip
        # Modules run on tuned artifacts (only when there are any, so older manifests resume).
        tuned = {
            name: info.tuned.model_dump(mode="json")
            for name in self._reasoner.specs
            if (info := self._runtime.llm_for(name).info).tuned is not None
        }
        if tuned:
            detail["tuned"] = tuned
        return detail

    def decoding(self) -> dict[str, Any]:
        return {
            "mode": "reasoner", "do_sample": False, "dtype": self._runtime.llm.info.dtype,
            "max_new_tokens": {n: s.bounds.max_new_tokens for n, s in self._reasoner.specs.items()},
            "concurrency": self._concurrency(),
        }  # fmt: skip

    def _concurrency(self) -> int:
        # A served model takes many requests at once; the in-process model runs one at a time.
        value = getattr(self._runtime.llm, "concurrency", 1)
        return value if isinstance(value, int) and value > 1 else 1

    def answer(self, todo: Todo, emit: Emit) -> None:
        self._trace_dir.mkdir(parents=True, exist_ok=True)
        workers = self._concurrency()
        if workers == 1:
            for index, item in todo:
                emit([self._one(index, item)])
            return
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for record in _as_done(pool, self._one, todo):
                emit([record])

    def _one(self, index: int, item: EvalItem) -> SampleRecord:
        base = _base(index, item, self._choices)
        trace = self._trace_dir / f"{index:06d}.jsonl"
        trace.unlink(missing_ok=True)  # left by a run killed mid-item; it is rerun from scratch
        relative = str(trace.relative_to(self._trace_dir.parent))
        started = time.perf_counter()
        try:
            result = self._reasoner.run(self._suite.scenario(item), self._runtime, trace_path=trace)
            probs = self._choice_probs(result.state)
        except (InputError, RunError) as exc:
            took = (time.perf_counter() - started) * 1000.0
            has_trace = trace.is_file()
            return SampleRecord.model_validate({
                **base, "error": _error(exc), "latency_ms": took,
                "trace": relative if has_trace else None,
                "trace_head": _trace_head(trace) if has_trace else None,
            })  # fmt: skip
        took = (time.perf_counter() - started) * 1000.0
        logprobs = [math.log(p) if p > 0 else -math.inf for p in probs]
        fields = _scored(base, logprobs, probs)
        return SampleRecord.model_validate(
            {**fields, "trace": relative, "trace_head": _trace_head(trace), "latency_ms": took}
        )

    def _choice_probs(self, state: dict[str, Any]) -> list[float]:
        raw = state.get(self._map.probs_field)
        if not isinstance(raw, dict):
            raise OutputMappingError(
                f"the reasoner's final state has no {self._map.probs_field!r} distribution"
            )
        mass = [0.0] * len(self._choices)
        for verdict, choice in self._map.verdicts.items():
            mass[choice] += float(raw.get(verdict, 0.0))
        total = math.fsum(mass)
        if not total > 0:
            raise OutputMappingError(
                f"no probability on the mapped verdicts {sorted(self._map.verdicts)}: {raw}"
            )
        return [m / total for m in mass]


class OutputMappingError(RunError):
    """A reasoner's final state cannot be read as an answer to the suite's choices."""


def _as_done(pool: ThreadPoolExecutor, fn: Callable[[int, EvalItem], SampleRecord],
             todo: Todo) -> Iterator[SampleRecord]:  # fmt: skip
    from concurrent.futures import as_completed

    futures = [pool.submit(fn, index, item) for index, item in todo]
    for future in as_completed(futures):
        yield future.result()


def _trace_head(path: Path) -> str | None:
    with path.open("rb") as fh:
        lines = fh.read().splitlines()
    if not lines:
        return None
    head = json.loads(lines[-1]).get("hash")
    return head if isinstance(head, str) else None


def load_user_reasoner(ref: str) -> Reasoner:
    """``package.module:name`` or ``path/to/file.py:name``: a Reasoner, or a function that
    returns one (called with no arguments, or with the built-in specs)."""
    module_ref, sep, attr = ref.rpartition(":")
    if not sep or not module_ref or not attr:
        raise UsageError(
            f"--reasoner {ref!r}: use direct, default, module.path:name or file.py:name"
        )
    if module_ref.endswith(".py"):
        path = Path(module_ref)
        if not path.is_file():
            raise UsageError(f"--reasoner: no such file {module_ref!r}")
        spec = importlib.util.spec_from_file_location(f"cogem_user_{path.stem}", path)
        if spec is None or spec.loader is None:
            raise UsageError(f"--reasoner: cannot import {module_ref!r}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(module_ref)
        except ImportError as exc:
            raise UsageError(f"--reasoner: cannot import {module_ref!r} ({exc})") from exc
    target = getattr(module, attr, None)
    if target is None:
        raise UsageError(f"--reasoner: {module_ref!r} has no attribute {attr!r}")
    if callable(target) and not isinstance(target, Reasoner):
        from cogem.spec import load_specs

        try:
            target = target()
        except TypeError:
            target = target(load_specs())
    if not isinstance(target, Reasoner):
        raise UsageError(f"--reasoner {ref!r} is a {type(target).__name__}, not a cogem Reasoner")
    return target


def _check_poolable(runtime: Runtime, workers: int) -> None:
    """Scoring workers load the model the settings name; only that model can be split."""
    settings, info = runtime.settings, runtime.llm.info
    if settings.llm_url is not None or info.source in ("http", "fake"):
        raise UsageError(
            f"--workers {workers} runs copies of the in-process model; a served or fake model "
            "cannot be copied (a server takes concurrent requests itself)"
        )
    if info.tuned is not None:
        raise UsageError(f"--workers {workers} cannot be combined with a tuned artifact (--tuned)")


def make_answerer(
    reasoner: str,
    suite: Suite,
    runtime: Runtime,
    out: Path,
    *,
    batch: BatchPlan | None = None,
    workers: int = 1,
) -> DirectAnswerer | ReasonerAnswerer:
    if reasoner == "direct":
        return DirectAnswerer(suite, runtime, batch=batch, workers=workers)
    if workers != 1:
        raise UsageError("--workers applies to --reasoner direct only")
    graph = Reasoner.default() if reasoner == "default" else load_user_reasoner(reasoner)
    return ReasonerAnswerer(reasoner, graph, suite, runtime, out / "traces")

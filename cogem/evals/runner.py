"""``run_eval``: load a suite's items, answer the ones not yet done, log them, summarize."""

from __future__ import annotations

import hashlib
import platform
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from cogem.engine.run import package_versions
from cogem.engine.runtime import Runtime
from cogem.errors import ConfigError, UsageError
from cogem.evals.answerers import make_answerer
from cogem.evals.log import SUMMARY, EvalLog, read_manifest, read_samples, write_json_atomic
from cogem.evals.probing import PROBE_FILE, run_item_probes
from cogem.evals.records import DatasetFile, EvalItem, EvalManifest, SampleRecord
from cogem.evals.suite import Suite, load_suite
from cogem.llm.batch_scoring import BatchPlan
from cogem.probes import PROBES

if TYPE_CHECKING:
    from rich.console import Console

    from cogem.evals.metrics import EvalSummary

__all__ = ["EvalResult", "default_out_dir", "preflight", "run_eval", "summarize_dir"]


class EvalResult(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    out_dir: Path
    total: int
    answered_now: int
    resumed_from: int
    summary: Any  # EvalSummary (kept Any so importing this module stays light)


def default_out_dir(runtime: Runtime, suite: Suite, reasoner: str) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    tag = "user" if reasoner not in ("direct", "default") else reasoner
    return runtime.settings.home / "evals" / f"{suite.name}-{tag}-{stamp}"


def run_eval(
    suite: Suite | str | Path,
    runtime: Runtime,
    *,
    reasoner: str = "direct",
    data: Path | None = None,
    out: Path | None = None,
    limit: int | None = None,
    resume: bool = False,
    batch: BatchPlan | None = None,
    workers: int = 1,
    probes: Sequence[str] = (),
    probe_limit: int = 20,
    console: Console | None = None,
) -> EvalResult:
    """Run (or with ``resume`` finish) an eval; every item ends up in ``samples.jsonl`` once.

    ``reasoner`` is ``direct``, ``default`` or ``module:name`` / ``file.py:name``. ``data`` is
    the dataset location (see :meth:`Suite.load_items`). ``probes`` (names from
    :data:`cogem.probes.PROBES`) then rerun the first ``probe_limit`` answered items under each
    probe and write ``probes.json`` (flip rates). ``workers`` > 1 (``direct`` only) scores in
    that many processes, each with its own copy of the model (see :mod:`cogem.llm.scoring_pool`).
    A ``console`` gets a progress bar.
    """
    suite = suite if isinstance(suite, Suite) else load_suite(suite)
    items, files = preflight(
        suite, reasoner=reasoner, data=data, limit=limit, resume=resume, out=out,
        probes=probes, workers=workers,
    )  # fmt: skip
    out = out or default_out_dir(runtime, suite, reasoner)
    answerer = make_answerer(reasoner, suite, runtime, out, batch=batch, workers=workers)
    ids = [item.id for item in items]
    manifest = EvalManifest(
        suite=suite.name,
        suite_config=suite.config.model_dump(mode="json"),
        suite_sha256=suite.sha256,
        reasoner=answerer.name,
        reasoner_detail=answerer.detail(),
        options=list(suite.config.prompt.choices),
        positive=suite.config.prompt.positive,
        metrics=list(suite.config.metrics),
        model=runtime.llm.info.model_dump(mode="json"),
        **_git_state(),
        packages=package_versions(),
        python=platform.python_version(),
        datasets=files,
        item_ids=ids,
        item_ids_sha256=hashlib.sha256("\n".join(ids).encode("utf-8")).hexdigest(),
        seed=runtime.settings.seed,
        decoding=answerer.decoding(),
        limit=limit,
        probes=list(probes),
        probe_limit=probe_limit if probes else 0,
        created_at=datetime.now(UTC).isoformat(),
    )
    with EvalLog.open(out, manifest, resume=resume) as log:
        before = len(log.done)
        todo = [(i, item) for i, item in enumerate(items) if item.id not in log.done]
        with _progress(console, len(items), before, suite.name, answerer.name) as advance:

            def emit(records: list[SampleRecord]) -> None:
                log.append(records)
                advance(len(records))

            answerer.answer(todo, emit)
        answered = len(log.done) - before
        if probes:
            by_id = {item.id: item for item in items}
            baseline = sorted(log.done.values(), key=lambda r: r.index)[:probe_limit]
            if console is not None:
                console.print(f"probing {len(baseline)} items x {len(probes)} probes…")
            summaries = run_item_probes(
                suite, runtime, answerer, [(by_id[r.item_id], r) for r in baseline], probes, out
            )
            write_json_atomic(out / PROBE_FILE, [s.model_dump(mode="json") for s in summaries])
    summary = summarize_dir(out)
    return EvalResult(
        out_dir=out, total=len(items), answered_now=answered, resumed_from=before, summary=summary
    )


def preflight(
    suite: Suite,
    *,
    reasoner: str,
    data: Path | None,
    limit: int | None,
    resume: bool,
    out: Path | None,
    probes: Sequence[str],
    workers: int = 1,
) -> tuple[list[EvalItem], list[DatasetFile]]:
    """Every check that needs no model: arguments, the suite's reasoner mapping, the data.
    The CLI runs it before loading a model, so a mistake costs no load time."""
    if limit is not None and limit < 1:
        raise UsageError(f"--limit must be at least 1, got {limit}")
    if workers < 1:
        raise UsageError(f"--workers must be at least 1, got {workers}")
    if workers > 1 and reasoner != "direct":
        raise UsageError("--workers applies to --reasoner direct only")
    unknown = [p for p in probes if p not in PROBES]
    if unknown:
        raise ConfigError(f"unknown probe(s) {unknown}; valid: {', '.join(PROBES)}", field="probes")
    if resume and out is None:
        raise UsageError("--resume needs --out: the folder of the eval to finish")
    if reasoner != "direct" and suite.config.reasoner is None:
        raise ConfigError(
            f"suite {suite.name!r} defines no [reasoner] mapping; only --reasoner direct applies",
            path=str(suite.source), field="reasoner",
        )  # fmt: skip
    items, files = suite.load_items(data)
    return (items[:limit] if limit is not None else items), files


def summarize_dir(out: Path) -> EvalSummary:
    """Compute the summary of the samples in ``out`` and write ``summary.json``."""
    from cogem.evals.metrics import summarize

    manifest = read_manifest(out)
    summary = summarize(
        read_samples(out),
        suite=manifest.suite,
        reasoner=manifest.reasoner,
        options=manifest.options,
        positive=manifest.positive,
        metrics=manifest.metrics,
        seed=manifest.seed,
    )
    write_json_atomic(out / SUMMARY, summary.model_dump(mode="json"))
    return summary


def _git_state() -> dict[str, Any]:
    """The cogem checkout's commit and dirty flag; ``None`` when installed from a wheel."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return {"cogem_commit": None, "cogem_dirty": None}
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
        status = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return {"cogem_commit": None, "cogem_dirty": None}
    return {"cogem_commit": commit, "cogem_dirty": bool(status.strip())}


@contextmanager
def _progress(
    console: Console | None, total: int, done: int, suite: str, reasoner: str
) -> Iterator[Any]:
    if console is None:
        yield lambda n: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        # Rate over this session's items only (resumed items were not timed).
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(f"{suite} · {reasoner}", total=total, completed=done, rate="")

        def advance(n: int) -> None:
            bar.advance(task, n)
            speed = bar.tasks[0].speed
            bar.update(task, rate=f"{speed:.2f} items/s" if speed else "")

        yield advance

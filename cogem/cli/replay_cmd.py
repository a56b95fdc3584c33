"""``cogem replay TRACE`` and ``cogem replay --rederive TRACE``: a thin layer over
:mod:`cogem.audit.replay`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from cogem.errors import UsageError

__all__ = ["run_replay_cli"]


def run_replay_cli(
    trace: Path, *, rederive: bool, model: str | None, as_json: bool, console: Console
) -> int:
    """Replay (or re-derive) ``trace``, print the step table or JSON; 0 if everything matches."""
    from cogem.audit.replay import rederive_trace, replay_trace

    if not trace.is_file():
        raise UsageError(f"no such trace file: path={str(trace)!r}")
    result: Any
    if rederive:
        runtime = _rederive_runtime(trace, model, console=None if as_json else console)
        result = rederive_trace(trace, runtime)
    else:
        if model is not None:
            raise UsageError("--model is used only with --rederive (a replay calls no model)")
        result = replay_trace(trace)
    if as_json:
        console.print(
            result.model_dump_json(indent=2), markup=False, highlight=False, soft_wrap=True
        )
    else:
        _print(result, rederive=rederive, console=console)
    return 0 if result.matches else 1


def _rederive_runtime(trace: Path, model: str | None, *, console: Console | None) -> Any:
    from cogem.engine import make_runtime
    from cogem.settings import Settings
    from cogem.trace import audit_key_from_env, read_trace, verify_trace
    from cogem.trace.events import RunStart

    if not verify_trace(trace, key=audit_key_from_env()).ok:
        from cogem.audit.replay import ReplayRefusedError

        raise ReplayRefusedError(
            f"refusing to re-derive path={str(trace)!r}: it fails the audit; run `cogem audit` on it"
        )
    start = read_trace(trace)[0]
    assert isinstance(start, RunStart)
    manifest = start.manifest
    if model is None:
        recorded = manifest.model
        source, model_id = recorded.get("source"), str(recorded.get("model_id", "?"))
        if source == "embedded-gguf":
            model = "embedded"  # an explicit alias, so COGEM_MODEL cannot override the recording
        elif source in ("local-dir", "hub"):
            model = model_id
        else:
            raise UsageError(
                f"the trace was recorded with model {model_id!r} (source {source!r}), which cogem "
                "cannot load; pass --model to re-derive with another model"
            )
    settings = Settings.from_env(model=model, seed=manifest.seed)
    if console is None:
        return _with_tuned(make_runtime(settings, with_memory=False), manifest)
    with console.status("loading model…"):
        return _with_tuned(make_runtime(settings, with_memory=False), manifest)


def _with_tuned(runtime: Any, manifest: Any) -> Any:
    """Put back the tuned artifacts the run's modules ran on, so re-derived steps are comparable.

    The audit that ran first has already rehashed every artifact folder still present; a missing
    one cannot be re-derived.
    """
    if not manifest.tuned:
        return runtime
    from cogem.tune import apply_tuned

    refs = list(manifest.tuned.values())
    missing = [f"{r.module}: {r.path}" for r in refs if not Path(r.path).is_dir()]
    if missing:
        runtime.close()
        raise UsageError(
            f"the run's tuned modules need their artifacts, which are not here ({'; '.join(missing)}); "
            "copy them to those paths to re-derive"
        )
    loaded = apply_tuned(runtime, [r.path for r in refs], modules=list(manifest.modules))
    for ref, artifact in zip(refs, loaded, strict=True):
        if artifact.artifact_sha256 != ref.sha256:
            runtime.close()
            raise UsageError(
                f"the artifact at path={ref.path!r} is not the one module {ref.module!r} ran on"
            )
    return runtime


def _print(result: Any, *, rederive: bool, console: Console) -> None:
    title = "cogem replay --rederive" if rederive else "cogem replay"
    table = Table(title=title, show_lines=False, expand=False)
    table.add_column("#", justify="right")
    table.add_column("module", style="bold")
    table.add_column("status")
    table.add_column("first differing field", overflow="fold")
    styles = {"replayed": "green", "identical": "green", "changed": "red"}
    for step in result.steps:
        diff = step.diff
        where = f"{diff.field}: {diff.recorded} → {diff.new}" if diff else ""
        status = f"[{styles.get(step.status, 'yellow')}]{step.status}[/]"
        table.add_row(str(step.step), step.module, status, where)
    console.print(table)

    def line(text: str) -> None:
        console.print(text, markup=False, highlight=False, soft_wrap=True)

    if result.error:
        line(f"run ended with: {result.error}")
    if result.final_state_diff is not None:
        d = result.final_state_diff
        line(f"final state differs at {d.field}: recorded {d.recorded}, new {d.new}")
    changed = sum(s.status not in ("replayed", "identical") for s in result.steps)
    if rederive:
        verdict = "IDENTICAL" if result.matches else "CHANGED"
        line(
            f"{verdict}: {len(result.steps) - changed} of {len(result.steps)} steps identical with "
            f"model {result.model_id} (recorded {result.recorded_model_id}), "
            f"{result.model_calls} model call(s); new trace: {result.replay_trace_path}"
        )
    else:
        verdict = "MATCHES" if result.matches else "DIFFERS"
        line(
            f"{verdict}: replayed {result.served_calls} of {result.recorded_calls} recorded model "
            f"calls, {result.model_calls} real model calls, {changed} step(s) differ; "
            f"replay trace: {result.replay_trace_path}"
        )

"""``cogem tune MODULE``: tune the model behind one module on labeled judgments."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

__all__ = ["tune"]

_out = Console()
_err = Console(stderr=True)

# Learning rates that worked on the embedded 135M model: an adapter takes far larger steps
# than the full weights can.
_DEFAULT_LR = {"lora": 2e-4, "full": 5e-5}  # full: what benchmarks/bench_tune.py measured


def tune(
    module: Annotated[str, typer.Argument(help="The module to tune, e.g. judge (it needs a \\[choice] section).")],
    out: Annotated[Path, typer.Option(help="Artifact folder; rerun with the same settings to resume an interrupted run.")],
    suite: Annotated[str, typer.Option(help="Eval suite that reads the data and maps labels to options (its \\[reasoner] verdicts).")] = "ethics_justice",
    data: Annotated[Path | None, typer.Option(help="Dataset: the ETHICS folder for ethics_* suites, or a CSV/JSONL file for table suites.")] = None,
    split: Annotated[list[str] | None, typer.Option(help="Split(s) to train on (default: train). test and test_hard are refused.")] = None,
    adapter: Annotated[str, typer.Option(help="lora (a small peft adapter; the base model stays shared) or full (all weights).")] = "lora",
    prompt_format: Annotated[
        str,
        typer.Option("--format", help="module: the module's own prompt and options (for reasoners); suite: the suite's direct prompt and choices (for --reasoner direct)."),
    ] = "module",
    steps: Annotated[int | None, typer.Option(help="Optimizer steps (or give --epochs).")] = None,
    epochs: Annotated[float | None, typer.Option(help="Passes over the training items (or give --steps).")] = None,
    batch_size: Annotated[int, typer.Option(help="Examples per optimizer step.")] = 16,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate (default: 2e-4 lora, 5e-5 full); decays linearly towards 0.")] = None,
    warmup_steps: Annotated[int, typer.Option(help="Linear warmup steps.")] = 0,
    lora_r: Annotated[int, typer.Option(help="LoRA rank.")] = 16,
    lora_alpha: Annotated[int, typer.Option(help="LoRA alpha (scale = alpha / r).")] = 32,
    lora_target: Annotated[
        list[str] | None,
        typer.Option(help="Module names LoRA adapts (repeatable; default: the Llama attention and MLP projections)."),
    ] = None,
    max_items: Annotated[int | None, typer.Option(help="Use a seeded sample of about this many items (whole groups).")] = None,
    val_fraction: Annotated[float, typer.Option(help="Share of the items held out for validation (whole groups).")] = 0.05,
    val_max_items: Annotated[int, typer.Option(help="At most this many held-out items.")] = 400,
    seed: Annotated[int, typer.Option(help="Seed for the item sample, data order and adapter init.")] = 0,
    bf16: Annotated[bool, typer.Option("--bf16", help="bfloat16 autocast (faster on CPUs with bf16 units; weights stay float32).")] = False,
    threads: Annotated[int | None, typer.Option(help="torch threads (default: torch's choice).")] = None,
    checkpoint_every: Annotated[int, typer.Option(help="Save a resumable checkpoint every N steps.")] = 50,
    eval_every: Annotated[int, typer.Option(help="Held-out loss every N steps (0: only at the end).")] = 0,
    model: Annotated[str | None, typer.Option(help="Base model: a local HF model dir or hub id (default: embedded SmolLM2).")] = None,
    modules: Annotated[Path | None, typer.Option(help="Directory of module specs (default: the built-in ones).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Tune MODULE on labeled data; writes safetensors weights and manifest.json to --out.

    Example: cogem tune judge --suite ethics_justice --data ethics/ --epochs 1 --out judge-lora
    """
    from pydantic import ValidationError

    from cogem.errors import ConfigError, UsageError
    from cogem.evals.suite import load_suite
    from cogem.spec import load_specs
    from cogem.tune import TuneConfig, tune_module

    specs = load_specs(modules)
    if module not in specs:
        raise UsageError(f"no module {module!r}; modules: {', '.join(sorted(specs))}")
    if adapter not in _DEFAULT_LR:
        raise UsageError(f"--adapter must be lora or full, got {adapter!r}")
    loaded = load_suite(suite)
    try:
        settings: dict[str, Any] = dict(
            module=module, adapter=adapter, prompt_format=prompt_format, steps=steps,
            epochs=epochs, batch_size=batch_size, lr=lr or _DEFAULT_LR[adapter],
            warmup_steps=warmup_steps, lora_r=lora_r, lora_alpha=lora_alpha, seed=seed,
            max_items=max_items, val_fraction=val_fraction, val_max_items=val_max_items,
            checkpoint_every=checkpoint_every, eval_every=eval_every, bf16=bf16, threads=threads,
        )  # fmt: skip
        if lora_target:
            settings["lora_targets"] = lora_target
        config = TuneConfig.model_validate(settings)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or None
        raise ConfigError(first["msg"].removeprefix("Value error, "), field=where) from exc
    with _err.status("loading data and model…") as status, _progress(status) as on_step:
        result = tune_module(
            specs[module], loaded, config, out=out, data=data, splits=split or ["train"],
            model=model, on_step=on_step,
        )  # fmt: skip
    if as_json:
        payload = {
            "out": str(result.out), "artifact_sha256": result.artifact_sha256,
            "total_steps": result.total_steps, "resumed_from": result.resumed_from,
            "held_out_before": _dump(result.held_out_before),
            "held_out_after": _dump(result.held_out_after),
        }  # fmt: skip
        typer.echo(json.dumps(payload, indent=2))
        return
    if result.resumed_from:
        _err.print(f"resumed from step {result.resumed_from}")
    for label, scores in (("before", result.held_out_before), ("after", result.held_out_after)):
        if scores is not None:
            _out.print(
                f"held-out {label:6} n={scores.n}  accuracy={_f(scores.accuracy)}  "
                f"auroc={_f(scores.auroc)}  group_em={_f(scores.group_exact_match)}  "
                f"loss={_f(scores.loss)}",
                highlight=False,
            )
    _out.print(f"artifact: {result.out}  sha256={result.artifact_sha256}", highlight=False, soft_wrap=True, markup=False)


def _f(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _dump(scores: Any) -> Any:
    return None if scores is None else scores.model_dump(mode="json")


@contextmanager
def _progress(status: Any) -> Iterator[Callable[[Any], None]]:
    """A bar with the step's loss and the ETA, started at the first step (after loading)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    bar = Progress(
        TextColumn("[bold]tuning"), BarColumn(), MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"), TimeElapsedColumn(), TextColumn("ETA"),
        TimeRemainingColumn(), console=_err,
    )  # fmt: skip
    task: list[Any] = []

    def on_step(report: Any) -> None:
        if not task:
            status.stop()
            bar.start()
            task.append(bar.add_task("tune", total=report.total, completed=report.resumed_from, loss="…"))
        bar.update(task[0], completed=report.step, loss=f"{report.loss:.4f}")
        if report.step == report.total:
            bar.stop()

    try:
        yield on_step
    finally:
        bar.stop()

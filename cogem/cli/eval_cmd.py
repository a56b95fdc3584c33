"""``cogem eval``: run a suite (``cogem eval SUITE``), list suites, report on and compare runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from typer._click.core import Context
from typer.core import TyperGroup

_out = Console()
_err = Console(stderr=True)


class _SuiteFirstGroup(TyperGroup):
    """``cogem eval SUITE …`` means ``cogem eval run SUITE …``: the subcommands (list, report,
    compare) keep their names, anything else is a suite."""

    def parse_args(self, ctx: Context, args: list[str]) -> list[str]:
        if args and not args[0].startswith("-") and args[0] not in self.commands:
            args = ["run", *args]
        return super().parse_args(ctx, args)


eval_app = typer.Typer(
    cls=_SuiteFirstGroup,
    help="Moral-reasoning evals: `cogem eval SUITE` runs one; see also list, report, compare.",
    no_args_is_help=True,
)


@eval_app.command("run")
def run_cmd(
    suite: Annotated[
        str,
        typer.Argument(help="A built-in suite name (see `cogem eval list`) or a suite .toml file."),
    ],
    reasoner: Annotated[
        str,
        typer.Option(
            help="direct (one option-scored call, lm-eval's prompt), default (the modular reasoner) or module:name / file.py:name."
        ),
    ] = "direct",
    model: Annotated[
        str | None,
        typer.Option(
            help="Model: a local HF model dir or hub id (default: embedded SmolLM2); with --llm-url the served model's name."
        ),
    ] = None,
    llm_url: Annotated[
        str | None,
        typer.Option(
            help="Use the OpenAI-compatible server at this URL (env COGEM_LLM_URL); items run COGEM_LLM_CONCURRENCY at a time."
        ),
    ] = None,
    llm_chat_template: Annotated[
        str | None,
        typer.Option(
            help="With --llm-url: the served model's chat template ('embedded' or a tokenizer folder), to score chat prompts (env COGEM_LLM_CHAT_TEMPLATE)."
        ),
    ] = None,
    dtype: Annotated[
        str | None,
        typer.Option(
            help="float32 (exact, default) or bfloat16 (faster on CPUs with bf16 units; scores move slightly)."
        ),
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Evaluate only the first N items.")] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            help="Dataset: the ETHICS folder for ethics_* suites, or a CSV/JSONL file for table suites."
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Eval folder (default: COGEM_HOME/evals/<suite>-<reasoner>-<time>)."),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Finish the eval in --out: only unfinished items run.")
    ] = False,
    batch_tokens: Annotated[
        int, typer.Option(help="direct: padded tokens per forward pass.")
    ] = 4096,
    workers: Annotated[
        int,
        typer.Option(
            help="direct: scoring processes, each with its own copy of the model and an equal share of the cores; 2+ is faster for small models on a few cores."
        ),
    ] = 1,
    probes: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated metamorphic probes to run after the eval (see `cogem probe`); writes probes.json."
        ),
    ] = None,
    probe_limit: Annotated[int, typer.Option(help="Items to probe (the first N answered).")] = 20,
    tuned: Annotated[
        list[Path] | None,
        typer.Option(
            help="A tuned artifact from `cogem tune` (repeatable). direct: it scores every item; a reasoner: it runs its own module only."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Evaluate a reasoner on SUITE; writes manifest.json, samples.jsonl and summary.json."""
    from cogem.engine import make_runtime
    from cogem.errors import UsageError
    from cogem.evals.runner import preflight, run_eval
    from cogem.evals.suite import load_suite
    from cogem.llm.batch_scoring import BatchPlan
    from cogem.settings import Settings

    probe_names = [p.strip() for p in probes.split(",") if p.strip()] if probes else []
    loaded = load_suite(suite)
    # Fail on a bad suite, data or flag before spending seconds on loading a model.
    preflight(loaded, reasoner=reasoner, data=data, limit=limit, resume=resume, out=out,
              probes=probe_names, workers=workers)  # fmt: skip
    if tuned and workers > 1:
        raise UsageError("--workers cannot be combined with --tuned: workers load the base model")
    if tuned:
        from cogem.tune import read_artifact

        for artifact in tuned:  # and on a bad artifact
            read_artifact(artifact)
    settings = Settings.from_env(
        model=model, dtype=dtype, llm_url=llm_url, llm_chat_template=llm_chat_template
    )
    with _err.status("loading model…"):
        runtime = make_runtime(settings, with_memory=reasoner != "direct")
    with runtime:
        if tuned:
            with _err.status("loading tuned artifacts…"):
                _apply_tuned(runtime, tuned, reasoner)
        result = run_eval(
            loaded, runtime, reasoner=reasoner, data=data, out=out, limit=limit, resume=resume,
            batch=BatchPlan(max_tokens=batch_tokens), workers=workers, console=_err,
            probes=probe_names,
            probe_limit=probe_limit,
        )  # fmt: skip
    if result.resumed_from:
        _err.print(
            f"resumed: {result.resumed_from} items were already done, {result.answered_now} ran now"
        )
    if as_json:
        typer.echo(json.dumps(result.summary.model_dump(mode="json"), indent=2))
    else:
        _print_summary(result.summary)
    _out.print(f"eval: {result.out_dir}", highlight=False, soft_wrap=True, markup=False)


def _apply_tuned(runtime: Any, artifacts: list[Path], reasoner: str) -> None:
    from cogem.spec import load_specs
    from cogem.tune import apply_tuned

    direct = reasoner == "direct"
    # The default reasoner's modules are known here; a user's reasoner is checked as it runs.
    modules = list(load_specs()) if reasoner == "default" else None
    for manifest in apply_tuned(runtime, artifacts, whole_model=direct, modules=modules):
        where = "every scored item" if direct else f"module {manifest.module!r}"
        _err.print(f"tuned artifact for {manifest.module!r} applies to {where}", highlight=False)
        # Allowed, but the artifact was fitted to the other prompt: say so next to the numbers.
        fitted = manifest.config.prompt_format
        if fitted != ("suite" if direct else "module"):
            prompt = "the suite's direct prompt" if fitted == "suite" else "the module's prompt"
            _err.print(
                f"note: this artifact was tuned on {prompt} (--format {fitted}); "
                f"--reasoner {'direct' if direct else reasoner} scores another prompt",
                highlight=False,
            )


def _print_summary(summary: Any) -> None:
    from cogem.cli.eval_render import summary_table

    tables = summary_table(summary)
    for table in tables if isinstance(tables, list | tuple) else [tables]:
        _out.print(table)


@eval_app.command("list")
def list_cmd() -> None:
    """List the built-in suites."""
    from cogem.evals.suite import list_suites, load_suite

    for name in list_suites():
        first = load_suite(name).config.description.strip().split(". ")[0].replace("\n", " ")
        _out.print(f"[bold]{name}[/bold]  {first}", soft_wrap=True)


@eval_app.command("report")
def report_cmd(
    eval_dir: Annotated[Path, typer.Argument(help="An eval folder written by `cogem eval`.")],
    out: Annotated[
        Path | None,
        typer.Option(
            "-o", "--out", help="Folder for report.html/report.md (default: the eval folder)."
        ),
    ] = None,
) -> None:
    """Write report.html (tables and plots) and report.md for an eval."""
    from cogem.evals.report import write_report

    for path in write_report(eval_dir, out):
        _out.print(f"wrote {path}", highlight=False, soft_wrap=True, markup=False)


@eval_app.command("compare")
def compare_cmd(
    a: Annotated[Path, typer.Argument(help="Eval folder A (the baseline).")],
    b: Annotated[Path, typer.Argument(help="Eval folder B.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the comparison as JSON.")] = False,
) -> None:
    """Two evals side by side: per metric A, B, B-A with a paired bootstrap CI."""
    from cogem.cli.eval_render import comparison_table
    from cogem.evals.compare import compare_runs

    comparison = compare_runs(a, b)
    if as_json:
        typer.echo(json.dumps(comparison.model_dump(mode="json"), indent=2))
        return
    tables = comparison_table(comparison)
    for table in tables if isinstance(tables, list | tuple) else [tables]:
        _out.print(table)

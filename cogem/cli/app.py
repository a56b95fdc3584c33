"""Command definitions. Heavy imports stay inside the commands that need them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from cogem.cli.eval_cmd import eval_app
from cogem.cli.memory_cmd import memory_app
from cogem.cli.render import audit_lines
from cogem.cli.tune_cmd import tune

app = typer.Typer(
    help="cogem: run cognitive-emulation reasoners offline and audit their traces.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

app.add_typer(memory_app, name="memory")
app.add_typer(eval_app, name="eval")
app.command()(tune)

_out = Console()
_err = Console(stderr=True)


@app.command()
def run(
    scenario: Annotated[
        str | None, typer.Argument(help="The situation to reason about (not with --resume).")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="Model: a local HF model dir or hub id (default: embedded SmolLM2; env COGEM_MODEL)."
        ),
    ] = None,
    llm_url: Annotated[
        str | None,
        typer.Option(
            help="Use the OpenAI-compatible server at this URL (e.g. http://127.0.0.1:8000/v1); "
            "--model is then the served model name (env COGEM_LLM_URL)."
        ),
    ] = None,
    llm_chat_template: Annotated[
        str | None,
        typer.Option(
            help="With --llm-url: the served model's chat template, as 'embedded' or a local "
            "tokenizer folder, so the judge's options can be scored (env COGEM_LLM_CHAT_TEMPLATE)."
        ),
    ] = None,
    trace: Annotated[
        Path | None,
        typer.Option(help="Where to write the trace (default: under COGEM_HOME/traces)."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the final state as JSON instead of a table.")
    ] = False,
    remember: Annotated[
        bool,
        typer.Option("--remember", help="Store the episode in memory after planning."),
    ] = False,
    modules: Annotated[
        Path | None,
        typer.Option(
            help="Directory of module specs (*.toml) to use instead of the built-in ones."
        ),
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Random seed recorded in the manifest (decoding is greedy).")
    ] = None,
    thread: Annotated[
        str | None,
        typer.Option(
            help="Make the run durable under this thread id: checkpointed after every step."
        ),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option("--resume", help="Continue the interrupted durable run --thread ID."),
    ] = False,
    approve: Annotated[
        bool,
        typer.Option(
            "--approve", help="Pause after `plan`: show verdict and plan, then approve/edit/reject."
        ),
    ] = False,
    checkpoints: Annotated[
        str | None,
        typer.Option(
            help="Checkpoint store for --thread: a SQLite file or postgresql:// URL "
            "(default: COGEM_CHECKPOINTS or COGEM_HOME/checkpoints.sqlite)."
        ),
    ] = None,
) -> None:
    """Run the default reasoner (perceive -> recall -> judge -> plan) on SCENARIO."""
    from cogem.cli.run_cmd import run_cli

    run_cli(
        scenario, model=model, llm_url=llm_url, llm_chat_template=llm_chat_template, trace=trace,
        as_json=as_json, remember=remember, modules=modules,
        seed=seed, thread=thread, resume=resume, approve=approve, checkpoints=checkpoints,
        out=_out, err=_err,
    )  # fmt: skip


@app.command()
def audit(
    trace: Annotated[Path, typer.Argument(help="A trace file written by `cogem run`.")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the audit report as JSON.")
    ] = False,
    repair: Annotated[
        bool,
        typer.Option("--repair", help="Truncate a torn last line left by a crash, then audit."),
    ] = False,
) -> None:
    """Verify a trace: hash chain, signed head, record schemas and the run's invariants.

    Set COGEM_AUDIT_KEY to the key the run was signed with to check the signed head too.
    """
    from cogem.errors import UsageError
    from cogem.trace import audit_key_from_env, repair_torn_tail, verify_trace

    if not trace.is_file():
        raise UsageError(f"no such trace file: path={str(trace)!r}")
    if repair:
        removed = repair_torn_tail(trace)
        _err.print(f"repaired: removed a torn last line of {removed} bytes", highlight=False)
    report = verify_trace(trace, key=audit_key_from_env())
    if as_json:
        payload: dict[str, Any] = report.model_dump(mode="json")
        payload.update(ok=report.ok, first_bad=report.first_bad, tampered=report.tampered)
        typer.echo(json.dumps(payload, indent=2))
    else:
        for line in audit_lines(report):
            _out.print(line, highlight=False, soft_wrap=True, markup=False)
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def replay(
    trace: Annotated[Path, typer.Argument(help="A trace file written by `cogem run`.")],
    rederive: Annotated[
        bool,
        typer.Option(
            "--rederive",
            help="Call the model again with the recorded prompts and settings and diff each step.",
        ),
    ] = False,
    model: Annotated[
        str | None,
        typer.Option(help="With --rederive: model to use (default: the one the manifest names)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Re-run a recorded run from its trace: zero model calls, final state must match."""
    from cogem.cli.replay_cmd import run_replay_cli

    code = run_replay_cli(trace, rederive=rederive, model=model, as_json=as_json, console=_out)
    if code:
        raise typer.Exit(code)


@app.command()
def report(
    trace: Annotated[Path, typer.Argument(help="A trace file written by `cogem run`.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Where to write the HTML page.")],
) -> None:
    """Write a single self-contained HTML page showing every step of a run."""
    from cogem.cli.report_cmd import run_report_cli

    code = run_report_cli(trace, out=out, console=_out)
    if code:
        raise typer.Exit(code)


@app.command()
def probe(
    cases: Annotated[
        Path, typer.Argument(help="Case file: JSONL with a 'scenario' field per line, or CSV.")
    ],
    probes: Annotated[
        str | None,
        typer.Option(help="Comma-separated probe names (default: all). See `cogem.probes`."),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(help="Model: a local HF model dir or hub id (default: embedded SmolLM2)."),
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Use only the first N cases.")] = None,
    out: Annotated[
        Path | None, typer.Option(help="Directory for the traces (default: a temp dir).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
) -> None:
    """Metamorphic probes: how often the verdict flips for changes that should not matter."""
    from cogem.cli.probe_cmd import run_probe_cli

    code = run_probe_cli(
        cases, probes=probes, model=model, limit=limit, out=out, as_json=as_json, console=_out
    )
    if code:
        raise typer.Exit(code)

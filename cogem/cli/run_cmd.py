"""`cogem run`: one run, optionally durable (``--thread``/``--resume``) and human-approved
(``--approve``)."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from cogem.cli.render import StepPrinter
from cogem.engine.approval import ApprovalRequest, Decision, check_decision
from cogem.errors import ApprovalError, ThreadError, UsageError

__all__ = ["CHECKPOINTS_ENV", "TerminalApprover", "run_cli"]

CHECKPOINTS_ENV = "COGEM_CHECKPOINTS"


def run_cli(
    scenario: str | None,
    *,
    model: str | None,
    llm_url: str | None = None,
    llm_chat_template: str | None = None,
    trace: Path | None,
    as_json: bool,
    remember: bool,
    modules: Path | None,
    seed: int | None,
    thread: str | None,
    resume: bool,
    approve: bool,
    checkpoints: str | None,
    out: Console,
    err: Console,
) -> None:
    from cogem.engine import Reasoner, make_runtime
    from cogem.engine.run import validate_scenario
    from cogem.settings import Settings
    from cogem.spec import load_specs

    settings = Settings.from_env(
        model=model, seed=seed, llm_url=llm_url, llm_chat_template=llm_chat_template
    )
    if resume:
        if thread is None:
            raise UsageError("--resume needs --thread ID: the durable run to continue")
        if scenario is not None:
            raise UsageError("--resume continues the thread's own scenario; do not give one")
        if trace is not None:
            raise UsageError("--resume continues the thread's own trace; do not give --trace")
    elif scenario is None:
        raise UsageError("give a SCENARIO to reason about (or --thread ID --resume)")
    else:
        validate_scenario(scenario, settings.max_scenario_chars)  # fail before loading a model
    printer = StepPrinter(err if as_json else out)
    approver = TerminalApprover(printer) if approve else None
    with _checkpointer(thread, checkpoints, settings.home) as saver:
        if resume:
            assert thread is not None and saver is not None
            from cogem.engine.durable import thread_position

            found = thread_position(saver, thread)
            if found is None:
                raise ThreadError(
                    f"no durable run with thread id {thread!r}; start one with --thread ID SCENARIO"
                )
            # The thread fixes the graph: resume it as it was started.
            remember = "remember" in found["cogem_run"].get("modules", {})
            if found["cogem_run"].get("approve_after") is not None:
                approver = approver or TerminalApprover(printer)
        reasoner = Reasoner.default(load_specs(modules) if modules else None, remember=remember)
        reasoner.validate()
        with err.status("loading model and memory…"):
            runtime = make_runtime(settings)
        with printer.live():
            if resume:
                assert thread is not None
                result = reasoner.resume(
                    thread, runtime, on_event=printer.on_event, approve=approver, checkpointer=saver
                )
            else:
                assert scenario is not None
                result = reasoner.run(
                    scenario, runtime, trace_path=trace, on_event=printer.on_event,
                    approve=approver, thread=thread, checkpointer=saver,
                )  # fmt: skip
    notes = []
    if result.status == "rejected":
        notes.append("status: rejected by the human reviewer; the plan was not acted on")
    if as_json:
        typer.echo(json.dumps(result.state, ensure_ascii=False, indent=2))
        for note in notes:
            err.print(note, highlight=False)
        err.print(f"trace: {result.trace_path}", highlight=False, soft_wrap=True, markup=False)
    else:
        printer.print_summary(result.state)
        for note in notes:
            out.print(note, highlight=False)
        out.print(f"trace: {result.trace_path}", highlight=False, soft_wrap=True, markup=False)


@contextlib.contextmanager
def _checkpointer(thread: str | None, location: str | None, home: Path) -> Iterator[Any]:
    if thread is None:
        if location is not None:
            raise UsageError("--checkpoints is for durable runs: add --thread ID")
        yield None
        return
    from cogem.engine.checkpoint import CHECKPOINT_FILE, open_checkpointer

    target = location or os.environ.get(CHECKPOINTS_ENV) or str(home / CHECKPOINT_FILE)
    with open_checkpointer(target) as saver:
        yield saver


class TerminalApprover:
    """Shows the reviewed module's inputs and output and asks: approve, edit or reject."""

    def __init__(self, printer: StepPrinter) -> None:
        self.printer = printer
        self.console = printer.console

    def __call__(self, request: ApprovalRequest) -> Decision:
        with self.printer.paused():
            self._show(request)
            while True:
                choice = self._ask("[a]pprove / [e]dit / [r]eject").strip().lower()
                if choice in ("a", "approve"):
                    return Decision.approve()
                if choice in ("r", "reject"):
                    return Decision.reject()
                if choice in ("e", "edit"):
                    if not request.editable:
                        self.console.print("nothing in this output can be edited", markup=False)
                        continue
                    try:
                        return check_decision(request, Decision.edit(**self._edits(request)))
                    except ApprovalError as exc:
                        self.console.print(f"not accepted: {exc}", markup=False, highlight=False)
                        continue
                self.console.print("please answer a, e or r", markup=False)

    def _show(self, request: ApprovalRequest) -> None:
        table = Table(show_header=False, box=None)
        table.add_column(style="bold")
        table.add_column(overflow="fold")
        for name, value in request.inputs.items():
            if name != "scenario":
                table.add_row(name, _text(value))
        for name, value in request.output.items():
            table.add_row(f"{request.module}.{name}", _text(value))
        title = f"approval needed: {request.module} (step {request.step})"
        self.console.print(Panel(table, title=title, expand=False))

    def _edits(self, request: ApprovalRequest) -> dict[str, Any]:
        edits: dict[str, Any] = {}
        props = request.output_schema.get("properties", {})
        for name in request.editable:
            if props.get(name, {}).get("type") == "array":
                self.console.print(f"new {name}, one per line; an empty line ends:", markup=False)
                lines: list[str] = []
                while line := self._ask(f"{name}[{len(lines)}]").strip():
                    lines.append(line)
                if lines:
                    edits[name] = lines
            else:
                text = self._ask(f"new {name} (empty keeps it)").strip()
                if text:
                    edits[name] = text
        return edits

    def _ask(self, label: str) -> str:
        try:
            # A Text prompt: "[a]pprove" must not be read as rich markup, nor "/" highlighted.
            return self.console.input(Text(f"{label}: "))
        except EOFError:
            raise typer.Abort() from None


def _text(value: Any) -> str:
    if isinstance(value, list):
        return "\n".join(f"{i + 1}. {v}" for i, v in enumerate(value)) or "(none)"
    return str(value)

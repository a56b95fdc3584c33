"""The ``cogem`` command: a thin layer over the Python API.

Errors print one line without a traceback: exit 2 for usage errors, 1 for run errors and failed
audits.
"""

from __future__ import annotations

import sys

import typer

from cogem.cli.app import app
from cogem.errors import CogemError, UsageError

__all__ = ["app", "main"]


def main(argv: list[str] | None = None) -> None:
    try:
        # In non-standalone mode click returns an Exit's code instead of exiting.
        code = app(args=argv, standalone_mode=False)
    except CogemError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2 if isinstance(exc, UsageError) else 1)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except typer.TyperException as exc:  # bad flags etc.: the CLI parser's own usage errors
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            typer.echo(f"error: {exc}", err=True)
        sys.exit(getattr(exc, "exit_code", 2))
    sys.exit(code if isinstance(code, int) else 0)

"""``cogem report TRACE -o PAGE``: write the HTML report of a run and say what its audit found."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from cogem.errors import UsageError

__all__ = ["run_report_cli"]


def run_report_cli(trace: Path, *, out: Path, console: Console) -> int:
    """Write the page and print its path and verdict. A tampered trace still gets a page (that is
    when an auditor needs one most), so this returns 0 for it; ``cogem audit`` is the gate."""
    from cogem.audit.report import badge, write_report
    from cogem.trace.seal import audit_key_from_env

    if not trace.is_file():
        raise UsageError(f"no such trace file: path={str(trace)!r}")
    if out.is_dir():
        raise UsageError(f"the report path is a directory; name a file: path={str(out)!r}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        # The same key `cogem audit` checks the seal with, so both give the same verdict.
        report = write_report(trace, out, key=audit_key_from_env())
    except OSError as exc:
        raise UsageError(f"cannot write the report: path={str(out)!r}: {exc.strerror}") from exc
    text, _ = badge(report)
    console.print(f"report: {out}", highlight=False, soft_wrap=True, markup=False)
    console.print(
        f"audit: {text}"
        if report.ok
        else f"audit: {text} ({len(report.problems)} problem(s); `cogem audit` lists them)",
        highlight=False,
        soft_wrap=True,
        markup=False,
    )
    return 0

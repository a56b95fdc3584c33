"""Checks on the closed-set options every backend scores, shared so all backends refuse alike."""

from __future__ import annotations

from collections.abc import Sequence

from cogem.errors import UsageError

__all__ = ["check_options"]


def check_options(options: Sequence[str]) -> list[str]:
    """The options as a list; raise :class:`UsageError` unless they are unique non-empty strings."""
    if isinstance(options, str):
        raise UsageError("options must be a sequence of strings, not one string")
    opts = list(options)
    if not opts:
        raise UsageError("options is empty: give at least one option to score")
    for option in opts:
        if not isinstance(option, str) or not option:
            raise UsageError(f"every option must be a non-empty string, got {option!r}")
    if len(set(opts)) != len(opts):
        dupes = sorted({o for o in opts if opts.count(o) > 1})
        raise UsageError(f"options must be unique; repeated: {dupes}")
    return opts

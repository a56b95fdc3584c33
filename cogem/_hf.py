"""Small shared helpers around Hugging Face libraries (imported lazily by the backends)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

__all__ = ["quiet_weight_loading"]


@contextlib.contextmanager
def quiet_weight_loading() -> Iterator[None]:
    """Hide transformers' per-load "Loading weights" bar (noise on every CLI start), then
    restore the caller's setting."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()  # type: ignore[no-untyped-call]

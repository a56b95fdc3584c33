"""Where the tests find the ETHICS data: $COGEM_ETHICS_DIR, the shared folder beside the
checkout, or the workplace's shared folder (CI may clone the repo anywhere)."""

from __future__ import annotations

import os
from pathlib import Path


def _find() -> Path:
    candidates = [
        os.environ.get("COGEM_ETHICS_DIR", ""),
        str(Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ethics"),
        "/work/shared/data/ethics",
    ]
    for candidate in candidates:
        if candidate and (Path(candidate) / "justice").is_dir():
            return Path(candidate)
    return Path(candidates[1])


ETHICS = _find()

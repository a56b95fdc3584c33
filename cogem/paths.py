"""Where cogem finds its bundled data and keeps its own files.

The declarative data directories (``modules/``, ``memory/``, ``evals/``) sit at the repo's top level in a
source checkout and under ``cogem/_data/`` in an installed wheel; both layouts resolve here so no
other code needs to know which one it runs from.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

__all__ = ["bundled_dir", "cache_dir", "home_dir"]

_PACKAGE_DIR = Path(__file__).resolve().parent


def bundled_dir(name: str) -> Path:
    """Return the bundled data directory ``name`` (``"modules"``, ``"memory"`` or ``"evals"``)."""
    for candidate in (_PACKAGE_DIR / "_data" / name, _PACKAGE_DIR.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"bundled directory {name!r} not found next to {_PACKAGE_DIR}")


def home_dir() -> Path:
    """cogem's data home (memory store, traces): ``COGEM_HOME`` or the user data dir."""
    env = os.environ.get("COGEM_HOME")
    return Path(env).expanduser() if env else Path(platformdirs.user_data_dir("cogem"))


def cache_dir() -> Path:
    """Cache for derived files (dequantized weights): ``COGEM_CACHE_DIR`` or the user cache dir."""
    env = os.environ.get("COGEM_CACHE_DIR")
    return Path(env).expanduser() if env else Path(platformdirs.user_cache_dir("cogem"))

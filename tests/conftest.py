"""Shared fixtures. Every test runs offline with its own COGEM_HOME."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")


@pytest.fixture(autouse=True)
def _isolated_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    # Tests never touch the user's real memory store or traces. The model cache (COGEM_CACHE_DIR)
    # is deliberately shared so the embedded model is dequantized once per machine.
    home = tmp_path_factory.mktemp("cogem-home")
    monkeypatch.setenv("COGEM_HOME", str(home))
    monkeypatch.delenv("COGEM_MODEL", raising=False)
    return home

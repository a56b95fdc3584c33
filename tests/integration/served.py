"""A real ``transformers serve`` on loopback, serving the embedded model, for integration tests.

Use the ``served_llm`` fixture (module scope: one server per test module) — import it into a test
module or a conftest::

    from tests.integration.served import served_llm  # noqa: F401

It yields a :class:`ServedModel` with the URL and the served model name, ready for
``cogem run --llm-url URL`` or ``OpenAICompatibleLLM.connect(URL, model)``. The server is started
on a free port with CPU, offline and one thread, and is stopped (terminate, then kill) at the end
even when a test fails. Its log is in ``log_path`` and is printed when startup fails.

``transformers serve`` serves a local safetensors folder but not a GGUF file, so the embedded
GGUF is served through the dequantized cache folder cogem itself loads from.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = ["ServedModel", "served_llm", "start_server", "stop_server"]

STARTUP_TIMEOUT = 120.0


@dataclass(frozen=True)
class ServedModel:
    url: str  # the API base, ending in /v1
    model: str  # the name the server knows the model by (the folder path)
    log_path: Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _serve_command() -> list[str]:
    exe = Path(sys.executable).with_name("transformers")
    found = str(exe) if exe.exists() else shutil.which("transformers")
    if found is None:
        pytest.skip("the `transformers` CLI is not installed")
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        pytest.skip(
            "`transformers serve` needs the transformers[serving] extra (pip install -e '.[serve]')"
        )
    return [found, "serve"]


def start_server(folder: Path, log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``transformers serve folder`` on a free loopback port; return it once healthy."""
    port = _free_port()
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "CUDA_VISIBLE_DEVICES": "",
        # The machine is shared: one thread keeps the server from starving other test runs.
        "OMP_NUM_THREADS": os.environ.get("COGEM_TEST_SERVE_THREADS", "1"),
    }
    command = [
        *_serve_command(),
        str(folder),
        "--host", "127.0.0.1",
        "--port", str(port),
        "--device", "cpu",
        "--dtype", "float32",
        "--log-level", "info",
        "--default-seed", "0",
    ]  # fmt: skip
    log = log_path.open("wb")
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    log.close()  # the child holds its own handle
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"transformers serve exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}"
            )
        try:
            with urllib.request.urlopen(f"{base}/v1/models", timeout=2) as response:
                if response.status == 200:
                    return proc, f"{base}/v1"
        except (urllib.error.URLError, OSError):
            pass  # not listening yet
        time.sleep(0.5)
    stop_server(proc)
    raise RuntimeError(
        f"transformers serve not ready after {STARTUP_TIMEOUT:.0f}s:\n{log_path.read_text()[-3000:]}"
    )


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


@pytest.fixture(scope="module")
def served_llm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedModel]:
    from cogem.llm.model_files import embedded_gguf_path, ensure_gguf_cache

    folder, _sha = ensure_gguf_cache(embedded_gguf_path())
    log_path = tmp_path_factory.mktemp("transformers-serve") / "server.log"
    proc, url = start_server(folder, log_path)
    try:
        yield ServedModel(url=url, model=str(folder), log_path=log_path)
    finally:
        stop_server(proc)

"""Real OpenAI-compatible servers on loopback, serving the embedded model, for integration tests.

Two fixtures (module scope: one server per test module); import them into a test module::

    from tests.integration.served import llama_served_llm, served_llm  # noqa: F401

- ``served_llm``: ``transformers serve`` (the ``transformers[serving]`` extra). It serves a local
  safetensors folder but not a GGUF file, so the embedded GGUF is served through the dequantized
  cache folder cogem itself loads from. It enforces no schema and returns no log-probabilities.
- ``llama_served_llm``: llama-cpp-python's server on the embedded GGUF file itself. It enforces
  schemas (``response_format`` ``json_object`` with a ``schema``) and echoes prompt
  log-probabilities, so the whole default reasoner runs against it.

Each yields a :class:`ServedModel` with the URL and the served model name, ready for
``cogem run --llm-url URL`` or ``OpenAICompatibleLLM.connect(URL, model)``. A server is started on
a free port with CPU, offline and one thread, and is stopped (terminate, then kill) at the end
even when a test fails. Its log is in ``log_path`` and is printed when startup fails.
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

__all__ = [
    "ServedModel",
    "llama_served_llm",
    "served_llm",
    "start_llama_server",
    "start_server",
    "stop_server",
]

STARTUP_TIMEOUT = 120.0


@dataclass(frozen=True)
class ServedModel:
    url: str  # the API base, ending in /v1
    model: str  # the name the server knows the model by (the folder path)
    log_path: Path


def run_cogem(
    *args: str, home: Path, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """``cogem ARGS`` in a subprocess on ``COGEM_HOME=home``, offline, plus ``env``. The server
    is named by each command's ``--llm-url``, never by an inherited ``COGEM_LLM_URL``."""
    full = {**os.environ, "COGEM_HOME": str(home), "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    full.update(env or {})
    full.pop("COGEM_LLM_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "cogem", *args],
        capture_output=True, text=True, env=full, timeout=timeout, check=False,
    )  # fmt: skip


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
    return _launch("transformers serve", command, port, log_path)


def start_llama_server(
    gguf: Path, alias: str, log_path: Path
) -> tuple[subprocess.Popen[bytes], str]:
    """Start llama-cpp-python's OpenAI-compatible server on ``gguf`` (free loopback port)."""
    try:
        import llama_cpp.server  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):  # in CI (make setup builds it) a missing server must fail
            raise
        pytest.skip("the llama.cpp server needs llama-cpp-python[server] (make setup builds it)")
    port = _free_port()
    command = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(gguf),
        "--model_alias", alias,
        "--host", "127.0.0.1",
        "--port", str(port),
        "--n_ctx", "4096",
        "--n_threads", os.environ.get("COGEM_TEST_SERVE_THREADS", "1"),
        "--seed", "0",
        # Prompt log-probabilities for every token: what option scoring (echo + logprobs) reads.
        "--logits_all", "true",
        "--verbose", "false",
    ]  # fmt: skip
    return _launch("llama.cpp server", command, port, log_path)


def _launch(
    name: str, command: list[str], port: int, log_path: Path
) -> tuple[subprocess.Popen[bytes], str]:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "CUDA_VISIBLE_DEVICES": "",
        # The machine is shared: one thread keeps the server from starving other test runs.
        "OMP_NUM_THREADS": os.environ.get("COGEM_TEST_SERVE_THREADS", "1"),
    }
    log = log_path.open("wb")
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    log.close()  # the child holds its own handle
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"{name} exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}"
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
        f"{name} not ready after {STARTUP_TIMEOUT:.0f}s:\n{log_path.read_text()[-3000:]}"
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


@pytest.fixture(scope="module")
def llama_served_llm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedModel]:
    """The embedded GGUF served by llama-cpp-python: it enforces ``response_format`` schemas (as
    ``json_object`` with a schema) and returns prompt log-probabilities."""
    from cogem.llm.model_files import embedded_gguf_path

    log_path = tmp_path_factory.mktemp("llama-server") / "server.log"
    proc, url = start_llama_server(embedded_gguf_path(), "smollm2-135m", log_path)
    try:
        yield ServedModel(url=url, model="smollm2-135m", log_path=log_path)
    finally:
        stop_server(proc)

"""The memory on a real chroma server (``chroma run`` on loopback), through chromadb.HttpClient.

Same collection, identity and scoring code as the embedded store; no file lock (the server
serializes writers), so two clients may write at once.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cogem.errors import MemoryStoreError
from cogem.memory import ChromaMemory, MemoryRecord, Provenance, open_memory, seed_records
from cogem.memory.chroma_client import URL_ENV
from cogem.scoring import ScoringWeights
from cogem.testing.hash_embedding import HashEmbedding

pytestmark = pytest.mark.integration

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    chroma = Path(sys.executable).with_name("chroma")
    if not chroma.exists():
        found = shutil.which("chroma")
        if found is None:
            pytest.skip("the chroma CLI (from the chromadb package) is not installed")
        chroma = Path(found)
    data = tmp_path_factory.mktemp("chroma-server")
    port = _free_port()
    log = (data / "server.log").open("wb")
    proc = subprocess.Popen(
        [
            str(chroma),
            "run",
            "--path",
            str(data / "db"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    f"chroma server exited with {proc.returncode}; see {data / 'server.log'}"
                )
            try:
                with urllib.request.urlopen(f"{url}/api/v2/heartbeat", timeout=1) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("chroma server did not answer its heartbeat within 60 s")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)
        log.close()


def rec(rid: str, text: str, **extra: object) -> MemoryRecord:
    return MemoryRecord.model_validate(
        {"id": rid, "text": text, "source": "server test", "created_at": T0, **extra}
    )


def _name() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


def test_open_memory_on_server_seeds_without_local_files(server: str, tmp_path: Path) -> None:
    with open_memory(tmp_path, embedding=HashEmbedding(), url=server) as mem:
        assert mem.info().backend == "chromadb-server"
        assert mem.count() == len(seed_records())
        assert mem.path is None and mem.url == server
    assert not (tmp_path / "memory").exists()  # no store directory, no lock file


def test_env_variable_selects_the_server(
    server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(URL_ENV, server)
    with open_memory(tmp_path, embedding=HashEmbedding()) as mem:
        assert mem.url == server
        assert mem.search("keep a promise", 1)


def test_full_api_round_trip(server: str) -> None:
    odd = rec(
        "odd",
        "a promise kept to a friend",
        kind="episodic",
        importance=0.47170425381154957,
        provenance=Provenance(module="remember", run_id="r1", record_hash="cd" * 32),
        metadata={"f": 0.1 + 0.2, "i": 2**62, "b": True, "s": "café"},
    )
    others = [rec(f"n{i}", f"note {i} about work and money") for i in range(10)]
    with ChromaMemory(embedding=HashEmbedding(), url=server, collection=_name()) as mem:
        mem.add([odd, *others])
        assert mem.get(["odd", "n3"]) == [odd, others[3]]
        hits = mem.search("a promise kept to a friend", 3, kinds=["episodic"], where={"b": True})
        assert [h.id for h in hits] == ["odd"]
        assert hits[0].provenance == odd.provenance
        weights = ScoringWeights(relevance=0.0, importance=1.0)
        assert mem.search("x", 1, weights=weights, now=T0)[0].id == "n0"  # 0.5 > 0.4717, by id
        assert mem.forget(["odd", "missing"]) == 1
        mem.compact()  # on a server: the rebuild only
        assert mem.ids() == sorted(r.id for r in others)
        assert mem.get(["n3"]) == [others[3]]


def test_two_clients_write_at_once(server: str) -> None:
    name = _name()
    with (
        ChromaMemory(embedding=HashEmbedding(), url=server, collection=name) as a,
        ChromaMemory(embedding=HashEmbedding(), url=server, collection=name) as b,
    ):
        a.add([rec("from-a", "written by a")])
        b.add([rec("from-b", "written by b")])
        assert a.ids() == b.ids() == ["from-a", "from-b"]


def test_other_embedder_refused_on_server(server: str) -> None:
    name = _name()
    ChromaMemory(embedding=HashEmbedding(64), url=server, collection=name).close()
    with pytest.raises(MemoryStoreError, match="cogem-hash-v1-64"):
        ChromaMemory(embedding=HashEmbedding(32), url=server, collection=name)

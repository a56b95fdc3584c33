"""What only the chromadb store has: the writer lock, compaction, recovery, the record format."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import chromadb
import pytest
from chromadb.api.models.Collection import Collection
from chromadb.config import Settings

from cogem.errors import ConfigError, MemoryStoreError
from cogem.memory import ChromaMemory, MemoryRecord
from cogem.memory.chroma import DEFAULT_COLLECTION
from cogem.memory.chroma_client import LOCK_FILE, parse_url
from cogem.memory.compaction import compacting_name
from cogem.testing.hash_embedding import HashEmbedding

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def rec(rid: str, text: str, **extra: Any) -> MemoryRecord:
    return MemoryRecord(id=rid, text=text, source="test", created_at=T0, **extra)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ChromaMemory]:
    mem = ChromaMemory(tmp_path / "store", embedding=HashEmbedding())
    yield mem
    mem.close()


def _open_in_child(path: Path) -> dict[str, Any]:
    code = (
        "import json, sys, time\n"
        "from cogem.memory.chroma import ChromaMemory\n"
        "from cogem.testing.hash_embedding import HashEmbedding\n"
        "t = time.perf_counter()\n"
        "try:\n"
        f"    ChromaMemory({str(path)!r}, embedding=HashEmbedding()).close()\n"
        "    out = {'ok': True}\n"
        "except Exception as exc:\n"
        "    out = {'ok': False, 'type': type(exc).__name__, 'msg': str(exc)}\n"
        "out['seconds'] = time.perf_counter() - t\n"
        "print(json.dumps(out))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_second_process_is_refused_fast_and_told_who_holds_it(store: ChromaMemory) -> None:
    path = store.path
    assert path is not None
    other = _open_in_child(path)
    assert not other["ok"]
    assert other["type"] == "MemoryStoreError"
    assert str(path) in other["msg"]
    assert f"process {__import__('os').getpid()}" in other["msg"]
    assert other["seconds"] < 1.0
    store.close()
    assert store.path == path
    assert _open_in_child(path)["ok"]


def test_same_process_second_open_refused_then_reopen_after_close(tmp_path: Path) -> None:
    path = tmp_path / "store"
    first = ChromaMemory(path, embedding=HashEmbedding())
    first.add([rec("a", "alpha")])
    with pytest.raises(MemoryStoreError, match="this process"):
        ChromaMemory(path, embedding=HashEmbedding())
    first.close()
    first.close()  # idempotent
    with ChromaMemory(path, embedding=HashEmbedding()) as again:
        assert again.get(["a"]) == [rec("a", "alpha")]
    assert (path / LOCK_FILE).is_file()


def test_closed_store_raises(store: ChromaMemory) -> None:
    store.close()
    for call in (
        store.count,
        lambda: store.search("x", 1),
        lambda: store.add([rec("a", "b")]),
        lambda: store.get(["a"]),
        lambda: store.forget(["a"]),
        store.compact,
        store.info,
    ):
        with pytest.raises(MemoryStoreError, match="closed"):
            call()


def _store_bytes(path: Path) -> bytes:
    return b"".join(f.read_bytes() for f in sorted(path.rglob("*")) if f.is_file())


# Each phase runs in its own process. chroma's HNSW files are written with their unused
# capacity uninitialized, so a process that once held a text in memory can spill freed copies of
# it into them (seen here in about 1 run in 3). The guarantee cogem gives — and tests — is for
# compaction as `cogem memory forget --compact` runs it: in a process that never embedded the text.
_PHASE = """
import sys
from pathlib import Path
from cogem.memory import ChromaMemory, MemoryRecord
from cogem.testing.hash_embedding import HashEmbedding
path, phase, n_other = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
def rec(rid, text, **extra):
    return MemoryRecord(id=rid, text=text, source="test",
                        created_at="2026-01-01T00:00:00+00:00", **extra)
with ChromaMemory(path, embedding=HashEmbedding()) as mem:
    if phase == "write":
        mem.add([rec(f"keep.{i}", f"ordinary record number {i} about promises") for i in range(n_other)])
        mem.add([rec("gone.1", "private note " + sys.argv[4] + " about a friend", metadata={"m": sys.argv[6]})])
        mem.add([rec("upd.1", "first version " + sys.argv[5])])
        mem.add([rec("upd.1", "second version, nothing private")])
    elif phase == "forget":
        assert mem.forget(["gone.1"]) == 1
        mem.compact()
    else:
        mem.add([rec("after", "written after compaction")])
"""


@pytest.mark.parametrize("n_other", [5, 1100])  # 1100 crosses chroma's HNSW sync threshold
def test_forget_and_compact_leave_no_trace_in_any_file(tmp_path: Path, n_other: int) -> None:
    path = tmp_path / "store"
    secret, stale, meta_secret = "QZXSECRETMARKER", "QZXSTALEMARKER", "QZXMETAMARKER"

    def phase(name: str) -> None:
        args = [str(path), name, str(n_other), secret, stale, meta_secret]
        done = subprocess.run([sys.executable, "-c", _PHASE, *args], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr

    phase("write")
    data = _store_bytes(path)
    assert secret.encode() in data and stale.encode() in data  # the test can see it
    phase("forget")
    data = _store_bytes(path)
    for marker in (secret, stale, meta_secret, "gone.1"):
        assert marker.encode() not in data, marker
    with ChromaMemory(path, embedding=HashEmbedding()) as mem:
        assert mem.count() == n_other + 1
        others = [rec(f"keep.{i}", f"ordinary record number {i} about promises") for i in range(n_other)]
        assert mem.get(["keep.0", "upd.1", "gone.1"]) == [
            others[0],
            rec("upd.1", "second version, nothing private"),
        ]
        top = mem.search(others[3].text, 1)[0]  # hash buckets collide: check the distance
        assert top.distance == pytest.approx(0.0, abs=1e-5)
    phase("after")
    with ChromaMemory(path, embedding=HashEmbedding()) as mem:
        assert mem.count() == n_other + 2
        assert mem.search("written after compaction", 1)[0].id == "after"
    assert secret.encode() not in _store_bytes(path)


def test_compaction_keeps_collection_metadata(store: ChromaMemory) -> None:
    store.add([rec("a", "alpha")])
    store.set_meta("cogem_seed_digest", "abc")
    store.compact()
    assert store.get_meta("cogem_seed_digest") == "abc"
    assert store.info().embedder_id == HashEmbedding().embedder_id


def _client(path: Path) -> Any:
    return chromadb.PersistentClient(path=str(path), settings=Settings(anonymized_telemetry=False))


def test_interrupted_copy_is_dropped_at_open(tmp_path: Path) -> None:
    path = tmp_path / "store"
    with ChromaMemory(path, embedding=HashEmbedding()) as mem:
        mem.add([rec("a", "alpha"), rec("b", "beta")])
    client = _client(path)
    client.create_collection(compacting_name(DEFAULT_COLLECTION), embedding_function=None)
    client.close()
    with ChromaMemory(path, embedding=HashEmbedding()) as mem:
        assert mem.count() == 2
    client = _client(path)
    assert [c.name for c in client.list_collections()] == [DEFAULT_COLLECTION]
    client.close()


def test_compaction_interrupted_after_drop_recovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "store"
    records = [rec(f"r{i}", f"record {i}") for i in range(20)]
    mem = ChromaMemory(path, embedding=HashEmbedding())
    mem.add(records)
    mem.forget(["r0"])

    def crash(self: Collection, **kwargs: Any) -> None:
        raise RuntimeError("power cut")

    with monkeypatch.context() as patch:
        patch.setattr(Collection, "modify", crash)
        with pytest.raises(MemoryStoreError, match="power cut"):
            mem.compact()
    mem.close()
    with ChromaMemory(path, embedding=HashEmbedding()) as again:
        assert again.ids() == sorted(r.id for r in records[1:])
        assert again.get(["r5"]) == [records[5]]


def test_failed_copy_leaves_original(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "store"
    with ChromaMemory(path, embedding=HashEmbedding()) as mem:
        mem.add([rec("a", "alpha"), rec("b", "beta")])

        def crash(self: Collection, **kwargs: Any) -> None:
            raise RuntimeError("disk full")

        with monkeypatch.context() as patch:
            patch.setattr(Collection, "add", crash)
            with pytest.raises(MemoryStoreError, match="disk full"):
                mem.compact()
        assert mem.ids() == ["a", "b"]
        mem.compact()
        assert mem.ids() == ["a", "b"]


def test_old_format_store_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "store"
    client = _client(path)
    client.create_collection(
        DEFAULT_COLLECTION,
        configuration={"hnsw": {"space": "cosine"}},
        metadata={
            "cogem_embedder_id": HashEmbedding().embedder_id,
            "cogem_dimension": 64,
            "cogem_format": 1,
        },
        embedding_function=None,
    )
    client.close()
    with pytest.raises(MemoryStoreError, match="format 1"):
        ChromaMemory(path, embedding=HashEmbedding())
    # The refusal released the lock: another process gets the same answer, not "locked".
    assert "format 1" in _open_in_child(path)["msg"]


def test_collection_name_and_arguments_checked(tmp_path: Path) -> None:
    for bad in ("ab", "-lead", "trail.", "x" * 201, "sp ace"):
        with pytest.raises(ConfigError):
            ChromaMemory(tmp_path / "s", embedding=HashEmbedding(), collection=bad)
    with pytest.raises(ConfigError):
        ChromaMemory(tmp_path / "s", embedding=HashEmbedding(), url="http://127.0.0.1:1")
    with pytest.raises(ConfigError):
        ChromaMemory(embedding=HashEmbedding())


@pytest.mark.parametrize(
    ("url", "parsed"),
    [
        ("http://127.0.0.1:8765", ("127.0.0.1", 8765, False)),
        ("https://chroma.example", ("chroma.example", 443, True)),
        ("http://localhost/", ("localhost", 80, False)),
    ],
)
def test_parse_url(url: str, parsed: tuple[str, int, bool]) -> None:
    assert parse_url(url) == parsed


@pytest.mark.parametrize("url", ["127.0.0.1:8000", "ftp://x", "http://h:99999", "http://h/db"])
def test_parse_url_rejects(url: str) -> None:
    with pytest.raises(ConfigError):
        parse_url(url)


def test_unreachable_server_is_a_store_error() -> None:
    started = time.perf_counter()
    with pytest.raises(MemoryStoreError, match=r"127\.0\.0\.1:9"):
        ChromaMemory(embedding=HashEmbedding(), url="http://127.0.0.1:9")
    assert time.perf_counter() - started < 30

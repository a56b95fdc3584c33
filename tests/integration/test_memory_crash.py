"""A writer killed with SIGKILL mid-stream loses nothing it acknowledged.

A child process streams batches into a chroma store (hash embeddings) and prints each record id
once ``add`` has returned. The parent kills it at a random moment, then reopens the store: the
kernel has dropped the child's lock, every acknowledged id is there and intact, and the store
searches without error. Rounds continue on the same store, so later kills land on a store that
already survived one; batch sizes and kill points straddle chroma's HNSW sync threshold (1000).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cogem.memory import ChromaMemory, MemoryRecord
from cogem.testing.hash_embedding import HashEmbedding

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
EMB = HashEmbedding(dimension=256)

CHILD = """
import sys
from datetime import UTC, datetime
import numpy as np
from cogem.memory import ChromaMemory, MemoryRecord
from cogem.testing.hash_embedding import HashEmbedding

path, start, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
memory = ChromaMemory(path, embedding=HashEmbedding(dimension=256))
print("ready", flush=True)
i = start
while True:
    records = [
        MemoryRecord(
            id=f"w{j:07d}", text=f"entry {j} code {j * 31 + 7} tag {j * 97 + 3}",
            source="crash test",
            created_at=datetime(2026, 1, 1, tzinfo=UTC), metadata={"n": j},
        )
        for j in range(i, i + batch)
    ]
    vectors = [np.random.default_rng(j).normal(size=256) for j in range(i, i + batch)]
    memory.add(records, embeddings=vectors)
    sys.stdout.write("".join(r.id + "\\n" for r in records))
    sys.stdout.flush()
    i += batch
"""


def expected(j: int) -> MemoryRecord:
    from datetime import UTC, datetime

    return MemoryRecord(
        id=f"w{j:07d}",
        text=f"entry {j} code {j * 31 + 7} tag {j * 97 + 3}",
        source="crash test",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        metadata={"n": j},
    )


def vector(j: int) -> np.ndarray:
    # Dense random vectors instead of the sparse hash embeddings: HNSW finds dense vectors
    # reliably, so a record missing from search means a record missing from the index.
    return np.random.default_rng(j).normal(size=256)


def run_and_kill(
    path: Path, start: int, batch: int, kill_after: int, rng: random.Random
) -> list[str]:
    """Start a writer, SIGKILL it after ``kill_after`` acknowledged ids (plus a random delay);
    return every id it acknowledged."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), str(start), str(batch)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.stdout is not None
    acked: list[str] = []
    try:
        assert proc.stdout.readline().strip() == "ready"
        while len(acked) < kill_after:
            line = proc.stdout.readline()
            assert line, f"writer exited early with {proc.poll()}"
            acked.append(line.strip())
        time.sleep(rng.uniform(0.0, 0.05))  # land anywhere inside the next add()
        proc.send_signal(signal.SIGKILL)
        # Ids printed before the kill were acknowledged too: drain the pipe to EOF.
        acked.extend(line.strip() for line in proc.stdout if line.strip())
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    return acked


def test_acknowledged_writes_survive_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "store"
    rng = random.Random(20261126)
    acked: list[str] = []
    start = 0
    for batch, kill_after in ((1, 40), (50, 900), (7, 300), (200, 1400)):
        new = run_and_kill(path, start, batch, kill_after, rng)
        assert len(new) >= kill_after
        acked += new
        started = time.perf_counter()
        with ChromaMemory(path, embedding=EMB) as memory:  # the kernel released the lock
            assert time.perf_counter() - started < 10
            got = memory.get(acked)
            assert [r.id for r in got] == acked
            assert got == [expected(int(rid[1:])) for rid in acked]
            everything = memory.ids()
            assert set(acked) <= set(everything)
            assert memory.count() == len(everything)
            # Whatever else made it in (a batch cut by the kill) is whole, not half-written.
            extra = [rid for rid in everything if rid not in set(acked)]
            assert memory.get(extra) == [expected(int(rid[1:])) for rid in extra]
            for rid in rng.sample(acked, 25):
                j = int(rid[1:])
                top = memory.search("by vector", 1, query_embedding=vector(j))
                assert top[0].id == rid
                assert top[0].distance == pytest.approx(0.0, abs=1e-5)
            start = max(int(rid[1:]) for rid in everything) + 1

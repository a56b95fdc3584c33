"""One contract, two stores: the reference InMemoryMemory and ChromaMemory on real chromadb.

Both use hash embeddings, so no model is loaded; anything one store does that the other does not
is a bug in one of them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cogem.errors import InputError
from cogem.memory import ChromaMemory, InMemoryMemory, Memory, MemoryRecord
from cogem.testing.hash_embedding import HashEmbedding


def rec(rid: str, text: str, kind: str = "semantic") -> MemoryRecord:
    return MemoryRecord.model_validate({"id": rid, "text": text, "kind": kind, "source": "test"})


CORPUS = [
    rec("a", "keep your promises to your friends"),
    rec("b", "do not steal other people's property"),
    rec("c", "tell the truth even when it is awkward"),
    rec("d", "help strangers who are in danger"),
    rec("e", "a case about promises and friends", kind="precedent"),
]


@pytest.fixture(params=["in_memory", "chroma"])
def memory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Memory]:
    if request.param == "in_memory":
        yield InMemoryMemory(HashEmbedding())
    else:
        store = ChromaMemory(tmp_path / "chroma", embedding=HashEmbedding())
        yield store
        store.close()


@pytest.fixture
def filled(memory: Memory) -> Memory:
    memory.add(CORPUS)
    return memory


def test_is_a_memory(memory: Memory) -> None:
    assert isinstance(memory, Memory)


def test_empty_store(memory: Memory) -> None:
    assert memory.count() == 0
    assert memory.search("anything at all", 3) == []
    memory.add([])
    assert memory.count() == 0


def test_count_and_info(filled: Memory) -> None:
    assert filled.count() == len(CORPUS)
    info = filled.info()
    assert info.count == len(CORPUS)
    assert info.embedder_id == HashEmbedding().embedder_id
    assert info.dimension == 64
    assert info.distance == "cosine"


def test_search_order_and_scores(filled: Memory) -> None:
    hits = filled.search("keep your promises to your friends", 5)
    assert [h.id for h in hits][:2] == ["a", "e"]
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    for h in hits:
        assert -1.0 <= h.score <= 1.0
        assert 0.0 <= h.distance <= 2.0
        assert h.score == pytest.approx(1.0 - h.distance)
    by_id = {r.id: r for r in CORPUS}
    for h in hits:
        original = by_id[h.id]
        assert (h.text, h.kind, h.source) == (original.text, original.kind, original.source)


def test_k_bounds(filled: Memory) -> None:
    assert len(filled.search("promises", 1)) == 1
    assert len(filled.search("promises", 100)) == len(CORPUS)
    for bad in (0, -1):
        with pytest.raises(InputError):
            filled.search("promises", bad)
    for wrong_type in (True, 1.5, "3"):
        with pytest.raises(InputError):
            filled.search("promises", wrong_type)  # type: ignore[arg-type]


@pytest.mark.parametrize("query", ["", "   ", "\n\t"])
def test_empty_query_rejected(filled: Memory, query: str) -> None:
    with pytest.raises(InputError):
        filled.search(query, 3)


def test_duplicate_ids_in_batch_rejected_and_store_unchanged(filled: Memory) -> None:
    with pytest.raises(InputError, match="duplicate id 'x'"):
        filled.add([rec("x", "first new text"), rec("y", "second"), rec("x", "again")])
    with pytest.raises(InputError):
        filled.add([rec("a", "replacement one"), rec("a", "replacement two")])
    assert filled.count() == len(CORPUS)
    ids = {h.id for h in filled.search("first new text second again replacement", 100)}
    assert ids == {r.id for r in CORPUS}
    a = next(h for h in filled.search("keep your promises to your friends", 1))
    assert a.text == CORPUS[0].text


def test_non_records_rejected(memory: Memory) -> None:
    with pytest.raises(InputError):
        memory.add([{"id": "z", "text": "t", "source": "s"}])  # type: ignore[list-item]
    assert memory.count() == 0


def test_upsert_replaces(filled: Memory) -> None:
    filled.add([rec("a", "gardening tips for tomatoes", kind="episodic")])
    assert filled.count() == len(CORPUS)
    top = filled.search("gardening tips for tomatoes", 1)[0]
    assert (top.id, top.text, top.kind) == ("a", "gardening tips for tomatoes", "episodic")


def test_ties_ordered_by_id(memory: Memory) -> None:
    memory.add([rec(i, "identical wording here") for i in ("t2", "t3", "t1")])
    memory.add([rec("other", "something unrelated entirely")])
    hits = memory.search("identical wording here", 3)
    assert [h.id for h in hits] == ["t1", "t2", "t3"]
    assert [h.id for h in memory.search("identical wording here", 2)] == ["t1", "t2"]

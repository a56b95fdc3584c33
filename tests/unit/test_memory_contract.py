"""One contract, two stores: the reference InMemoryMemory and ChromaMemory on real chromadb.

Both use hash embeddings, so no model is loaded; anything one store does that the other does not
is a bug in one of them. The corpora stay below the chroma candidate pool (32), so the chroma
store must rank exactly like the brute-force reference.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cogem.errors import InputError
from cogem.memory import ChromaMemory, InMemoryMemory, Memory, MemoryRecord
from cogem.memory.base import Provenance
from cogem.memory.validation import records_from_dicts
from cogem.scoring import ScoreComponents, ScoringWeights, combine
from cogem.testing.hash_embedding import HashEmbedding

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
PROV = Provenance(module="remember", run_id="run-1", record_hash="ab" * 32)


def rec(rid: str, text: str, kind: str = "semantic", **extra: Any) -> MemoryRecord:
    data = {"id": rid, "text": text, "kind": kind, "source": "test", "created_at": NOW, **extra}
    return MemoryRecord.model_validate(data)


CORPUS = [
    rec("a", "keep your promises to your friends", importance=0.2, metadata={"topic": "promise"}),
    rec("b", "do not steal other people's property", importance=0.9, metadata={"n": 1}),
    rec("c", "tell the truth even when it is awkward", metadata={"n": 1.0, "flag": True}),
    rec("d", "help strangers who are in danger", created_at=NOW - timedelta(days=30)),
    rec(
        "e",
        "a case about promises and friends",
        kind="precedent",
        provenance=PROV,
        metadata={"topic": "promise", "flag": False},
    ),
    rec("f", "yesterday I lent my bike to a neighbour", kind="episodic", importance=0.7),
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


def snapshot(memory: Memory) -> list[MemoryRecord]:
    ids = [r.id for r in CORPUS] + ["x", "y", "z", "new"]
    return memory.get(ids)


def test_is_a_memory(memory: Memory) -> None:
    assert isinstance(memory, Memory)


def test_empty_store(memory: Memory) -> None:
    assert memory.count() == 0
    assert memory.search("anything at all", 3) == []
    assert memory.get(["a"]) == []
    assert memory.forget(["a"]) == 0
    memory.add([])
    assert memory.count() == 0


def test_count_and_info(filled: Memory) -> None:
    assert filled.count() == len(CORPUS)
    info = filled.info()
    assert info.count == len(CORPUS)
    assert info.embedder_id == HashEmbedding().embedder_id
    assert info.dimension == 64
    assert info.distance == "cosine"


def test_search_scores_are_recomputable(filled: Memory) -> None:
    hits = filled.search("keep your promises to your friends", 6, now=NOW)
    assert [h.id for h in hits][:2] == ["a", "e"]
    assert hits[0].distance == pytest.approx(0.0, abs=1e-5)
    assert hits[0].components.relevance == pytest.approx(1.0, abs=1e-5)
    by_id = {r.id: r for r in CORPUS}
    for h in hits:
        assert 0.0 <= h.distance <= 2.0
        assert h.components.relevance == pytest.approx((1.0 + (1.0 - h.distance)) / 2.0)
        assert h.components.importance == by_id[h.id].importance
        assert h.score == combine(h.components, ScoringWeights())
        original = by_id[h.id]
        assert (h.text, h.kind, h.source, h.created_at, h.importance, h.provenance) == (
            original.text,
            original.kind,
            original.source,
            original.created_at,
            original.importance,
            original.provenance,
        )
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_importance_weight_ranks_by_importance_then_id(filled: Memory) -> None:
    weights = ScoringWeights(relevance=0.0, importance=1.0)
    hits = filled.search("promises", 6, weights=weights, now=NOW)
    expected = sorted(CORPUS, key=lambda r: (-r.importance, r.id))
    assert [h.id for h in hits] == [r.id for r in expected]
    assert all(h.score == h.components.importance for h in hits)


def test_recency_weight_prefers_recent(filled: Memory) -> None:
    weights = ScoringWeights(relevance=0.0, recency=1.0, half_life_hours=24.0)
    hits = filled.search("promises", 6, weights=weights, now=NOW)
    assert hits[-1].id == "d"  # thirty days old: 0.5 ** 30
    assert hits[-1].components.recency == pytest.approx(0.5**30)
    assert [h.id for h in hits[:-1]] == sorted(r.id for r in CORPUS if r.id != "d")
    assert all(h.components.recency == 1.0 for h in hits[:-1])
    # Without ``now`` the clock is read: a record created now is fully recent.
    filled.add([rec("new", "fresh news", created_at=datetime.now(UTC))])
    top = filled.search("fresh news", 1, weights=weights)[0]
    assert top.id == "new"
    assert top.components.recency == pytest.approx(1.0, abs=1e-3)


def test_mixed_weights_combine_components(filled: Memory) -> None:
    weights = ScoringWeights(relevance=2.0, recency=1.0, importance=1.0, half_life_hours=100.0)
    later = NOW + timedelta(hours=50)
    hits = filled.search("promises to friends", 6, weights=weights, now=later)
    for h in hits:
        assert h.components.recency == pytest.approx(
            0.5 ** ((later - h.created_at).total_seconds() / 3600 / 100)
        )
        assert h.score == pytest.approx(combine(h.components, weights))
    keys = [(-h.score, h.id) for h in hits]
    assert keys == sorted(keys)


def test_naive_now_is_utc(filled: Memory) -> None:
    weights = ScoringWeights(relevance=0.0, recency=1.0)
    naive = filled.search("x y", 6, weights=weights, now=NOW.replace(tzinfo=None))
    aware = filled.search("x y", 6, weights=weights, now=NOW)
    assert naive == aware


def test_ties_ordered_by_id(memory: Memory) -> None:
    memory.add([rec(i, "identical wording here") for i in ("t2", "t3", "t1")])
    memory.add([rec("other", "something unrelated entirely")])
    hits = memory.search("identical wording here", 3)
    assert [h.id for h in hits] == ["t1", "t2", "t3"]
    assert [h.id for h in memory.search("identical wording here", 2)] == ["t1", "t2"]


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


@pytest.mark.parametrize(
    ("kinds", "expected"),
    [
        (["precedent"], {"e"}),
        (["episodic", "precedent"], {"e", "f"}),
        (["semantic"], {"a", "b", "c", "d"}),
    ],
)
def test_kind_filter(filled: Memory, kinds: list[Any], expected: set[str]) -> None:
    assert {h.id for h in filled.search("promises", 10, kinds=kinds)} == expected


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ({"topic": "promise"}, {"a", "e"}),
        ({"n": 1}, {"b", "c"}),  # numbers compare numerically: 1 matches 1.0
        ({"n": 1.0}, {"b", "c"}),
        ({"flag": True}, {"c"}),  # booleans only match booleans
        ({"flag": False}, {"e"}),
        ({"topic": "promise", "flag": False}, {"e"}),
        ({"topic": "nothing"}, set()),
        ({"missing": 1}, set()),
    ],
)
def test_metadata_filter(filled: Memory, where: dict[str, Any], expected: set[str]) -> None:
    assert {h.id for h in filled.search("promises", 10, where=where)} == expected


def test_kind_and_metadata_filters_combine(filled: Memory) -> None:
    hits = filled.search("promises", 10, kinds=["semantic"], where={"topic": "promise"})
    assert [h.id for h in hits] == ["a"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kinds": ["rumour"]},
        {"kinds": []},
        {"kinds": "semantic"},
        {"where": {"$or": 1}},
        {"where": {"topic": [1, 2]}},
        {"where": {"n": math.nan}},
        {"where": ["topic"]},
        {"weights": {"relevance": 1.0}},
        {"now": "2026-01-01"},
    ],
)
def test_bad_search_arguments(filled: Memory, kwargs: dict[str, Any]) -> None:
    with pytest.raises(InputError):
        filled.search("promises", 3, **kwargs)


def test_get_round_trips_exactly(filled: Memory) -> None:
    odd = rec(
        "odd",
        "text with unicode: café ✓ and a\ttab\nand newline",
        created_at=datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=timezone(timedelta(hours=-5))),
        importance=0.1,
        provenance=PROV,
        metadata={"s": "v", "i": -(2**62), "f": 0.1, "t": True, "z": 0, "one": 1.0},
    )
    filled.add([odd])
    got = filled.get(["odd", "missing", "a", "odd", "e"])
    assert got == [odd, CORPUS[0], CORPUS[4]]
    back = got[0]
    assert back.created_at.utcoffset() == timedelta(hours=-5)
    assert [type(back.metadata[k]) for k in ("i", "f", "t", "z", "one")] == [
        int,
        float,
        bool,
        int,
        float,
    ]


@pytest.mark.parametrize("ids", ["a", [1], ["bad id"], [""], None])
def test_bad_ids_rejected(filled: Memory, ids: Any) -> None:
    with pytest.raises(InputError):
        filled.get(ids)
    with pytest.raises(InputError):
        filled.forget(ids)
    assert filled.count() == len(CORPUS)


def test_forget(filled: Memory) -> None:
    assert filled.forget(["a", "missing", "a", "e"]) == 2
    assert filled.count() == len(CORPUS) - 2
    assert filled.get(["a", "e"]) == []
    assert {"a", "e"}.isdisjoint(h.id for h in filled.search("promises friends", 10))
    assert filled.forget(["a"]) == 0
    filled.add([CORPUS[0]])
    assert filled.get(["a"]) == [CORPUS[0]]


def test_upsert_replaces_everything(filled: Memory) -> None:
    new_e = rec("e", "gardening tips for tomatoes", kind="episodic", metadata={"x": 1})
    filled.add([new_e])
    assert filled.count() == len(CORPUS)
    assert filled.get(["e"]) == [new_e]  # provenance and the old metadata keys are gone
    top = filled.search("gardening tips for tomatoes", 1)[0]
    assert (top.id, top.text, top.kind, top.provenance) == ("e", new_e.text, "episodic", None)
    assert filled.search("x", 10, where={"topic": "promise"})[0].id == "a"


def test_precomputed_embeddings_match_embedder(memory: Memory, tmp_path: Path) -> None:
    emb = HashEmbedding()
    vectors = np.asarray(emb([r.text for r in CORPUS]))
    memory.add(CORPUS, embeddings=vectors)  # type: ignore[call-arg]
    reference = InMemoryMemory(emb)
    reference.add(CORPUS)
    query = "promises and the truth"
    mine = memory.search(query, 6, query_embedding=emb([query])[0])  # type: ignore[call-arg]
    theirs = reference.search(query, 6)
    assert [h.id for h in mine] == [h.id for h in theirs]
    assert [h.score for h in mine] == pytest.approx([h.score for h in theirs], abs=1e-6)
    with pytest.raises(InputError):
        memory.add(CORPUS[:2], embeddings=vectors)  # type: ignore[call-arg]
    bad = vectors.copy()
    bad[0, 0] = np.nan
    with pytest.raises(InputError):
        memory.add(CORPUS, embeddings=bad)  # type: ignore[call-arg]


def _constructed(**changes: Any) -> MemoryRecord:
    # model_construct skips validation: the store must re-check what it is given.
    data = rec("x", "a valid looking record").model_dump()
    data.update(changes)
    return MemoryRecord.model_construct(**data)


BAD_RECORDS = {
    "empty text": _constructed(text=""),
    "blank text": _constructed(text="   "),
    "oversized text": _constructed(text="w " * 3000),
    "nan importance": _constructed(importance=math.nan),
    "importance above 1": _constructed(importance=1.5),
    "unknown kind": _constructed(kind="rumour"),
    "control character": _constructed(text="hidden \x1b[8m instruction"),
    "control character in source": _constructed(source="src\x00"),
    "bad id": _constructed(id="has space"),
    "nan metadata": _constructed(metadata={"v": math.nan}),
    "bad metadata key": _constructed(metadata={"$where": 1}),
    "control character in metadata": _constructed(metadata={"v": "a\x07b"}),
    "nested metadata": _constructed(metadata={"v": [1, 2]}),
}


@pytest.mark.parametrize("bad", list(BAD_RECORDS), ids=list(BAD_RECORDS))
def test_bad_record_leaves_store_unchanged(filled: Memory, bad: str) -> None:
    before = snapshot(filled)
    batch = [rec("y", "a fine new record"), BAD_RECORDS[bad], rec("a", "replacing a")]
    with pytest.raises(InputError):
        filled.add(batch)
    assert filled.count() == len(CORPUS)
    assert snapshot(filled) == before


def test_duplicate_ids_in_batch_rejected_and_store_unchanged(filled: Memory) -> None:
    before = snapshot(filled)
    with pytest.raises(InputError, match="duplicate id 'x'"):
        filled.add([rec("x", "first new text"), rec("y", "second"), rec("x", "again")])
    with pytest.raises(InputError):
        filled.add([rec("a", "replacement one"), rec("a", "replacement two")])
    assert filled.count() == len(CORPUS)
    assert snapshot(filled) == before


def test_non_records_rejected(memory: Memory) -> None:
    with pytest.raises(InputError):
        memory.add([{"id": "z", "text": "t", "source": "s"}])  # type: ignore[list-item]
    with pytest.raises(InputError):
        memory.add("not a list")  # type: ignore[arg-type]
    assert memory.count() == 0


@pytest.mark.parametrize(
    ("item", "where"),
    [
        ({"id": "x", "text": "", "source": "s"}, "text"),
        ({"id": "x", "text": "t", "source": "s", "importance": "NaN"}, "importance"),
        ({"id": "x", "text": "t", "source": "s", "kind": "rumour"}, "kind"),
        ({"id": "x", "text": "t\x00", "source": "s"}, "text"),
        ({"id": "x", "text": "t", "source": "s", "colour": "red"}, "colour"),
    ],
)
def test_records_from_dicts_gives_typed_errors(item: dict[str, Any], where: str) -> None:
    with pytest.raises(InputError, match=rf"records\[1\].*{where}"):
        records_from_dicts([{"id": "ok", "text": "fine", "source": "s"}, item])


def test_records_from_dicts_builds_records() -> None:
    records = records_from_dicts(
        [{"id": "r1", "text": "t", "source": "s", "created_at": "2026-01-01T00:00:00Z"}]
    )
    assert records[0].created_at == datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(InputError):
        records_from_dicts({"id": "r1"})  # type: ignore[arg-type]


def test_stores_agree(tmp_path: Path) -> None:
    """Same records and queries: the chroma store ranks exactly like the reference."""
    rng = np.random.default_rng(7)
    words = [
        "promise",
        "truth",
        "steal",
        "help",
        "friend",
        "danger",
        "money",
        "family",
        "work",
        "lie",
        "kind",
        "fair",
    ]
    records = [
        rec(
            f"r{i:02d}",
            " ".join(rng.choice(words, size=4)),
            kind=["semantic", "precedent", "episodic"][i % 3],
            importance=float(rng.uniform()),
            created_at=NOW - timedelta(hours=float(rng.uniform(0, 500))),
        )
        for i in range(30)
    ]
    reference = InMemoryMemory(HashEmbedding())
    reference.add(records)
    weights = ScoringWeights(relevance=1.0, recency=0.5, importance=0.5)
    with ChromaMemory(tmp_path / "s", embedding=HashEmbedding()) as store:
        store.add(records)
        for query in ("promise to a friend", "money and work", "lie"):
            for kinds in (None, ["episodic"]):
                a = store.search(query, 8, kinds=kinds, weights=weights, now=NOW)
                b = reference.search(query, 8, kinds=kinds, weights=weights, now=NOW)
                assert [h.id for h in a] == [h.id for h in b]
                for x, y in zip(a, b, strict=True):
                    assert x.score == pytest.approx(y.score, abs=1e-6)
                    assert x.components.recency == y.components.recency
                    assert isinstance(x.components, ScoreComponents)

"""The chroma store against a plain dict, under random adds, upserts, forgets, reopens, compactions
and queries (hash embeddings, real chromadb).

After every step the store must hold exactly the model's records (byte-for-byte equal through
``get``), and its top-k must agree with brute force over the model: HNSW is approximate, so the
bar is a recall of at least 0.95 over all queries of a run, while every returned hit's score must
be the exact score of that record.
"""

from __future__ import annotations

import shutil
import tempfile
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from cogem.memory import ChromaMemory, MemoryRecord, Provenance
from cogem.scoring import ScoreComponents, ScoringWeights, combine, recency, relevance
from cogem.testing.hash_embedding import HashEmbedding

EMB = HashEmbedding(dimension=32)
NOW = datetime(2026, 6, 1, tzinfo=UTC)
WORDS = [
    "promise", "truth", "steal", "help", "friend", "danger", "money", "family", "work", "lie",
    "kind", "fair", "wallet", "neighbour", "secret", "return", "harm", "trust", "debt", "gift",
]  # fmt: skip
PROBES = ["promise to a friend", "money debt wallet", "truth lie secret", "help neighbour harm"]
IDS = [f"r{i:02d}" for i in range(16)]
ZONES = [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]

texts = st.lists(st.sampled_from(WORDS), min_size=1, max_size=5).map(" ".join)
printable = st.text(
    st.characters(min_codepoint=32, max_codepoint=0x2FFF, exclude_categories=["Cs", "Cc"])
)
meta_values = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    printable.filter(lambda s: len(s) <= 40),
)
records = st.builds(
    MemoryRecord,
    id=st.sampled_from(IDS),
    text=texts,
    kind=st.sampled_from(["semantic", "precedent", "episodic"]),
    source=printable.filter(lambda s: s.strip() != "" and len(s) <= 40),
    created_at=st.datetimes(
        min_value=datetime(2000, 1, 1),
        max_value=datetime(2100, 1, 1),
        timezones=st.sampled_from(ZONES),
    ),
    importance=st.floats(0.0, 1.0),
    provenance=st.none()
    | st.builds(
        Provenance,
        module=st.sampled_from(["remember", "plan"]),
        run_id=st.sampled_from(["run-a", "run-b"]),
        record_hash=st.sampled_from(["0" * 64, "ab" * 32]),
    ),
    metadata=st.dictionaries(
        st.sampled_from(["topic", "n", "flag", "x.y"]), meta_values, max_size=3
    ),
)
weights = st.sampled_from(
    [
        ScoringWeights(),
        ScoringWeights(relevance=1.0, recency=1.0, importance=1.0, half_life_hours=24.0 * 365),
        ScoringWeights(relevance=0.0, importance=1.0),
    ]
)


def exact_scores(model: dict[str, MemoryRecord], query: str, w: ScoringWeights) -> dict[str, float]:
    """Brute force: the score of every model record for ``query``."""
    if not model:
        return {}
    ids = sorted(model)
    vectors = np.asarray(EMB([model[i].text for i in ids]), dtype=np.float64)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    q = np.asarray(EMB([query])[0], dtype=np.float64)
    sims = vectors @ (q / np.linalg.norm(q))
    out = {}
    for rid, sim in zip(ids, sims, strict=True):
        rec = model[rid]
        parts = ScoreComponents(
            relevance=relevance(float(sim)),
            recency=recency(rec.created_at, NOW, w.half_life_hours),
            importance=rec.importance,
        )
        out[rid] = combine(parts, w)
    return out


class ChromaVersusDict(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="cogem-sm-"))
        self.store = ChromaMemory(self.dir / "store", embedding=EMB)
        self.model: dict[str, MemoryRecord] = {}
        self.found = 0
        self.needed = 0

    # -- rules -------------------------------------------------------------------------------

    @rule(batch=st.lists(records, min_size=1, max_size=6, unique_by=lambda r: r.id))
    def add(self, batch: list[MemoryRecord]) -> None:
        self.store.add(batch)
        self.model.update((r.id, r) for r in batch)

    @rule(ids=st.lists(st.sampled_from(IDS), max_size=5))
    def forget(self, ids: list[str]) -> None:
        expected = len(set(ids) & set(self.model))
        assert self.store.forget(ids) == expected
        for rid in ids:
            self.model.pop(rid, None)

    @rule()
    def reopen(self) -> None:
        self.store.close()
        self.store = ChromaMemory(self.dir / "store", embedding=EMB)

    @precondition(lambda self: len(self.model) > 0)
    @rule()
    def compact(self) -> None:
        self.store.compact()

    @rule(
        query=texts,
        k=st.integers(1, 8),
        kinds=st.none()
        | st.lists(st.sampled_from(["semantic", "precedent", "episodic"]), min_size=1),
        w=weights,
    )
    def query(self, query: str, k: int, kinds: list[str] | None, w: ScoringWeights) -> None:
        model = {i: r for i, r in self.model.items() if kinds is None or r.kind in kinds}
        self._check_query(model, query, k, w, kinds)

    # -- invariants --------------------------------------------------------------------------

    @invariant()
    def same_contents(self) -> None:
        assert self.store.count() == len(self.model)
        assert self.store.ids() == sorted(self.model)
        assert self.store.get(IDS) == [self.model[i] for i in IDS if i in self.model]

    @invariant()
    def probes_find_the_nearest(self) -> None:
        for probe in PROBES:
            self._check_query(self.model, probe, 5, ScoringWeights(), None)
        if self.needed:
            assert self.found / self.needed >= 0.95, (self.found, self.needed)

    def _check_query(
        self,
        model: dict[str, MemoryRecord],
        query: str,
        k: int,
        w: ScoringWeights,
        kinds: list[str] | None,
    ) -> None:
        hits = self.store.search(query, k, kinds=kinds, weights=w, now=NOW)  # type: ignore[arg-type]
        exact = exact_scores(model, query, w)
        assert len(hits) == min(k, len(model))
        for hit in hits:
            assert hit.score == combine(hit.components, w)
            assert abs(hit.score - exact[hit.id]) < 1e-6
        keys = [(-h.score, h.id) for h in hits]
        assert keys == sorted(keys)
        if hits:
            # Recall with ties: any record scoring at least the k-th best exact score counts.
            cut = sorted(exact.values(), reverse=True)[len(hits) - 1] - 1e-6
            self.found += sum(1 for h in hits if exact[h.id] >= cut)
            self.needed += len(hits)

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)


ChromaVersusDict.TestCase.settings = settings(
    max_examples=30,
    stateful_step_count=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
test_chroma_memory_matches_dict_model = ChromaVersusDict.TestCase

"""Seed files, the default store's seeding, and the embedder identity check (hash embeddings)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cogem.errors import ConfigError, MemoryStoreError
from cogem.memory import ChromaMemory, load_jsonl, open_memory, seed_records
from cogem.memory.embedder import MINILM_ID, MiniLMEmbedding
from cogem.memory.seed import SEED_CREATED_AT, SEED_DIGEST_KEY, seed_digest, seed_files
from cogem.testing.hash_embedding import HashEmbedding

REPO = Path(__file__).resolve().parents[2]


def _line(rid: str, text: str = "some text", **extra: object) -> str:
    return json.dumps({"id": rid, "kind": "semantic", "text": text, "source": "test", **extra})


def test_bundled_seed_files_load_with_unique_ids() -> None:
    files = seed_files()
    assert {f.name for f in files} >= {"norms.jsonl", "principles.jsonl", "precedents.jsonl"}
    per_file = [load_jsonl(f) for f in files]
    assert all(per_file)
    records = seed_records()
    assert len(records) == sum(len(r) for r in per_file) >= 30
    ids = [r.id for r in records]
    assert len(ids) == len(set(ids))
    assert {r.kind for r in records} == {"semantic", "precedent"}
    assert all(r.source.startswith("cogem authors") for r in records)
    assert any("promise" in r.id for r in records)


def test_seed_loading_is_deterministic(tmp_path: Path) -> None:
    first, second = seed_records(), seed_records()
    assert first == second
    assert {r.created_at for r in first} == {SEED_CREATED_AT}
    f = tmp_path / "dated.jsonl"
    f.write_text(
        _line("d.1", created_at="2020-05-06T07:08:09+02:00") + "\n" + _line("d.2") + "\n",
        encoding="utf-8",
    )
    own, default = load_jsonl(f)
    assert own.created_at.isoformat() == "2020-05-06T07:08:09+02:00"
    assert default.created_at == SEED_CREATED_AT


def test_bad_json_line_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(_line("ok.1") + "\n\n" + '{"id": "x", "text": \n', encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_jsonl(bad)
    assert "line 3" in str(err.value)
    assert err.value.path == str(bad)
    assert "bad.jsonl" in str(err.value)


@pytest.mark.parametrize(
    ("line", "field"),
    [
        (json.dumps({"id": "x", "kind": "semantic", "source": "s"}), "text"),
        (_line("x", kind="rumour"), "kind"),
        (_line("bad id with spaces"), "id"),
        (_line("x", colour="red"), "colour"),
        (_line("ok.1"), "id"),  # duplicate of line 1
    ],
)
def test_invalid_record_names_line_and_field(tmp_path: Path, line: str, field: str) -> None:
    f = tmp_path / "records.jsonl"
    f.write_text(_line("ok.1") + "\n" + line + "\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_jsonl(f)
    assert "line 2" in str(err.value)
    assert err.value.field == field
    assert err.value.path == str(f)


def test_non_object_line_rejected(tmp_path: Path) -> None:
    f = tmp_path / "list.jsonl"
    f.write_text("[1, 2]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="line 1"):
        load_jsonl(f)


def test_id_in_two_files_rejected(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text(_line("same") + "\n", encoding="utf-8")
    (tmp_path / "b.jsonl").write_text(_line("same") + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"a\.jsonl"):
        seed_records(tmp_path)


def test_open_memory_seeds_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    expected = len(seed_records())
    with open_memory(tmp_path, embedding=HashEmbedding()) as mem:
        assert mem.count() == expected
        assert mem.get_meta(SEED_DIGEST_KEY) == seed_digest()
        assert mem.path == tmp_path / "memory" / "chroma"

    def fail_add(self: ChromaMemory, records: object) -> None:
        raise AssertionError("re-seeded an up-to-date store")

    monkeypatch.setattr(ChromaMemory, "add", fail_add)
    with open_memory(tmp_path, embedding=HashEmbedding()) as mem:
        assert mem.count() == expected


def test_open_memory_reseeds_when_seed_data_changes(tmp_path: Path) -> None:
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    (seeds / "a.jsonl").write_text(_line("s.1", "first") + "\n", encoding="utf-8")
    with open_memory(tmp_path, embedding=HashEmbedding(), seed_dir=seeds) as mem:
        assert mem.count() == 1
    (seeds / "a.jsonl").write_text(_line("s.1", "first, edited") + "\n", encoding="utf-8")
    (seeds / "b.jsonl").write_text(_line("s.2", "second") + "\n", encoding="utf-8")
    with open_memory(tmp_path, embedding=HashEmbedding(), seed_dir=seeds) as mem:
        assert mem.count() == 2
        assert mem.search("first edited", 1)[0].text == "first, edited"
        assert mem.get_meta(SEED_DIGEST_KEY) == seed_digest(seeds)


class _OtherEmbedding(HashEmbedding):
    """Another chromadb embedding-function name, to check cogem's message wins over chroma's."""

    @staticmethod
    def name() -> str:
        return "cogem-test-other"

    @property
    def embedder_id(self) -> str:
        return "test/other-embedder"


@pytest.mark.parametrize(
    ("other", "other_id"),
    [(HashEmbedding(32), "cogem-hash-v1-32"), (_OtherEmbedding(), "test/other-embedder")],
)
def test_reopen_with_other_embedder_fails(
    tmp_path: Path, other: HashEmbedding, other_id: str
) -> None:
    open_memory(tmp_path, embedding=HashEmbedding(64)).close()
    with pytest.raises(MemoryStoreError) as err:
        open_memory(tmp_path, embedding=other)
    assert "cogem-hash-v1-64" in str(err.value)
    assert other_id in str(err.value)


def test_minilm_embedding_is_lazy_and_serializable() -> None:
    emb = MiniLMEmbedding()
    assert (emb.embedder_id, emb.dimension) == (MINILM_ID, 384)
    assert not emb.loaded
    again = MiniLMEmbedding.build_from_config(emb.get_config())
    assert isinstance(again, MiniLMEmbedding)
    assert not again.loaded
    assert emb.name() != "default"


def test_importing_memory_is_light() -> None:
    code = (
        "import sys, cogem.memory as m; m.Memory; "
        "heavy = {'chromadb', 'torch', 'sentence_transformers'} & set(sys.modules); "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)

"""Memory benchmark: ingest rate and query latency of the chromadb store with MiniLM embeddings.

    .venv/bin/python benchmarks/bench_memory.py [--sizes 10000,100000] [--queries 200] [--json]
                                                 [--embedded N] [--compact]

Embedding cost is measured apart from index cost: all texts are embedded with MiniLM once (timed),
then each store ingests the precomputed vectors (timed: validation, upsert, HNSW insert). Queries
are timed three ways: chroma's raw nearest-neighbour query, ``ChromaMemory.search`` with a
precomputed query vector (adds filters, candidate pool and scoring), and end to end from text
(adds the MiniLM query embedding). Texts are synthetic and generated from a fixed seed.

``--embedded N`` embeds only the first N texts with MiniLM (on a busy machine MiniLM may manage
only tens of texts per second); record i >= N then gets the vector of text ``i mod N`` plus small
Gaussian noise, renormalized, so the index still sees distinct, MiniLM-shaped vectors. The output
says when this was used.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

WHO = [
    "a neighbour", "my coworker", "the landlord", "a stranger", "my sister", "an old friend",
    "the shop owner", "a student", "my manager", "a doctor", "the bus driver", "a child",
]  # fmt: skip
DID = [
    "borrowed money from", "lied to", "kept a promise to", "took credit from", "helped",
    "ignored a warning from", "returned a lost wallet to", "shared a secret of", "cheated",
    "apologized to", "covered for", "reported",
]  # fmt: skip
WHOM = [
    "a friend", "their family", "a colleague", "the police", "a customer", "the neighbours",
    "an elderly man", "a teacher", "their team", "a tenant",
]  # fmt: skip
WHERE = [
    "at work", "after school", "during the storm", "on the train", "at the market",
    "before the exam", "at a wedding", "in the hospital", "online", "at midnight",
]  # fmt: skip
WHY = [
    "to avoid trouble", "out of kindness", "for a small profit", "because nobody would know",
    "to protect someone", "after a long argument", "without thinking", "under pressure",
]  # fmt: skip


def synthetic_texts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [
        f"{rng.choice(WHO).capitalize()} {rng.choice(DID)} {rng.choice(WHOM)} "
        f"{rng.choice(WHERE)} {rng.choice(WHY)} (case {i})."
        for i in range(n)
    ]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def latencies_ms(fn: Any, items: list[Any]) -> dict[str, float]:
    times = []
    for item in items:
        start = time.perf_counter()
        fn(item)
        times.append((time.perf_counter() - start) * 1000.0)
    return {
        "p50_ms": percentile(times, 0.50),
        "p95_ms": percentile(times, 0.95),
        "mean_ms": statistics.fmean(times),
    }


def dir_size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000", help="store sizes, comma-separated")
    parser.add_argument("--queries", type=int, default=200, help="queries per measurement")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--batch", type=int, default=1000, help="records per add() call")
    parser.add_argument("--compact", action="store_true", help="also time compact()")
    parser.add_argument(
        "--embedded", type=int, default=None, help="embed only this many texts with MiniLM"
    )
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))

    import numpy as np

    from cogem.memory import ChromaMemory, MemoryRecord, MiniLMEmbedding

    embedding = MiniLMEmbedding()
    embedding(["warm up"])  # load the model outside the timings
    texts = synthetic_texts(max(sizes), seed=1)
    queries = synthetic_texts(args.queries, seed=2)

    embedded = min(len(texts), args.embedded or len(texts))
    start = time.perf_counter()
    vectors = np.asarray(embedding(texts[:embedded]), dtype=np.float32)
    embed_seconds = time.perf_counter() - start
    if embedded < len(texts):
        rng = np.random.default_rng(3)
        extra = vectors[np.arange(embedded, len(texts)) % embedded]
        extra = extra + rng.normal(scale=0.05, size=extra.shape).astype(np.float32)
        extra /= np.linalg.norm(extra, axis=1, keepdims=True)
        vectors = np.concatenate([vectors, extra])
    query_embed = latencies_ms(lambda q: embedding([q]), queries)
    query_vectors = np.asarray(embedding(queries), dtype=np.float32)

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    results: dict[str, Any] = {
        "embed": {
            "texts": embedded,
            "synthesized_vectors": len(texts) - embedded,
            "seconds": embed_seconds,
            "texts_per_s": embedded / embed_seconds,
            "query_embed": query_embed,
        },
        "sizes": [],
    }
    work = Path(tempfile.mkdtemp(prefix="cogem-bench-memory-"))
    try:
        for n in sizes:
            path = work / f"store-{n}"
            records = [
                MemoryRecord(
                    id=f"b{i:07d}",
                    text=texts[i],
                    kind=("semantic", "precedent", "episodic")[i % 3],
                    source="bench",
                    created_at=t0 + timedelta(minutes=i),
                    importance=(i % 10) / 10,
                )
                for i in range(n)
            ]
            with ChromaMemory(path, embedding=embedding) as memory:
                start = time.perf_counter()
                for lo in range(0, n, args.batch):
                    memory.add(
                        records[lo : lo + args.batch], embeddings=vectors[lo : lo + args.batch]
                    )
                ingest_seconds = time.perf_counter() - start
                collection = memory._live  # raw chroma, to show what scoring adds

                def raw(v: Any, collection: Any = collection) -> Any:
                    return collection.query(query_embeddings=v[None, :], n_results=args.k)

                row: dict[str, Any] = {
                    "n": n,
                    "ingest_seconds": ingest_seconds,
                    "ingest_per_s": n / ingest_seconds,
                    "disk_mb": dir_size_mb(path),
                    "raw_query": latencies_ms(raw, list(query_vectors)),
                    "search_vector": latencies_ms(
                        lambda v: memory.search("q", args.k, query_embedding=v),
                        list(query_vectors),
                    ),
                    "search_filtered": latencies_ms(
                        lambda v: memory.search("q", args.k, kinds=["episodic"], query_embedding=v),
                        list(query_vectors),
                    ),
                    # Re-measured here: the embedding's share of the end-to-end latency.
                    "query_embed": latencies_ms(lambda q: embedding([q]), queries),
                    "search_text": latencies_ms(lambda q: memory.search(q, args.k), queries),
                }
                if args.compact:
                    memory.forget([r.id for r in records[: max(1, n // 100)]])
                    start = time.perf_counter()
                    memory.compact()
                    row["compact_seconds"] = time.perf_counter() - start
            results["sizes"].append(row)
            shutil.rmtree(path)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    if args.json:
        print(json.dumps(results, indent=2))
        return
    e = results["embed"]
    print(
        f"MiniLM embedding: {e['texts']} texts in {e['seconds']:.1f} s "
        f"({e['texts_per_s']:.0f} texts/s); one query: p50 {query_embed['p50_ms']:.1f} ms, "
        f"p95 {query_embed['p95_ms']:.1f} ms"
    )
    if e["synthesized_vectors"]:
        print(
            f"({e['synthesized_vectors']} further vectors are noisy copies of MiniLM vectors, "
            "see --embedded)"
        )
    print(f"load average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    header = (
        f"{'records':>8} {'ingest/s':>9} {'disk MB':>8} "
        f"{'raw p50/p95 ms':>15} {'vector p50/p95':>15} {'filtered p50/p95':>17} "
        f"{'embed p50/p95':>14} {'text p50/p95':>14}"
    )
    if args.compact:
        header += f" {'compact s':>10}"
    print(header)
    for row in results["sizes"]:

        def pair(key: str, row: dict[str, Any] = row) -> str:
            return f"{row[key]['p50_ms']:.1f}/{row[key]['p95_ms']:.1f}"

        line = (
            f"{row['n']:>8} {row['ingest_per_s']:>9.0f} {row['disk_mb']:>8.1f} "
            f"{pair('raw_query'):>15} {pair('search_vector'):>15} "
            f"{pair('search_filtered'):>17} {pair('query_embed'):>14} {pair('search_text'):>14}"
        )
        if args.compact:
            line += f" {row['compact_seconds']:>10.1f}"
        print(line)


if __name__ == "__main__":
    main()

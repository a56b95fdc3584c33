"""Audit speed: how long `verify_trace` takes on a long trace.

    .venv/bin/python benchmarks/bench_audit.py [--records 10000] [--repeat 5]

Builds one real run of a looping two-module reasoner on the fake LLM (so every rule has work to
do: choices, generations, schemas, edges, loop bounds), long enough to hold ``--records`` records,
then times the full audit (chain, signed head, every invariant) several times and prints the
median.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from cogem import END, START, ModuleSpec, Reasoner, load_specs
from cogem.settings import Settings
from cogem.testing import SchemaFillingLLM, fake_runtime
from cogem.trace import verify_trace


def build_trace(records: int, path: Path) -> int:
    critic = ModuleSpec(
        name="critic",
        purpose="decide whether to look again",
        reads=["scenario", "summary"],
        writes=["again", "again_probs"],
        choice={
            "field": "again",
            "probs_field": "again_probs",
            "options": ["yes", "no"],
            "prompt": "{scenario} {summary} Again? {options}",
        },
    )
    loops = records // 6 + 1
    reasoner = Reasoner([])
    reasoner.add_module(load_specs()["perceive"], max_visits=loops)
    reasoner.add_module(critic, max_visits=loops)
    reasoner.add_edge(START, "perceive").add_edge("perceive", "critic")
    visits = {"n": 0}

    def route(state: object) -> str:
        visits["n"] += 1
        return "perceive" if visits["n"] < loops else END

    reasoner.add_conditional_edges("critic", route, ["perceive", END])
    runtime = fake_runtime(SchemaFillingLLM(logprobs=[-0.1, -2.0]))
    runtime.settings = Settings(home=runtime.settings.home, audit_key="bench-key")
    reasoner.run("A long deliberation about a found wallet.", runtime, trace_path=path)
    return sum(1 for _ in path.open())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    path = Path(tempfile.mkdtemp(prefix="cogem-bench-audit-")) / "long.jsonl"
    count = build_trace(args.records, path)
    times = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        report = verify_trace(path, key=b"bench-key")
        times.append(time.perf_counter() - start)
        assert report.ok, report.problems[:3]
    median = statistics.median(times)
    print(f"trace            {count} records, {path.stat().st_size / 1e6:.1f} MB")
    print(
        f"verify (median)  {median:.3f} s over {args.repeat} runs  ({count / median:,.0f} records/s)"
    )
    print(f"verify (min/max) {min(times):.3f} s / {max(times):.3f} s")


if __name__ == "__main__":
    main()

"""Core latency benchmark on the embedded model: cold start, per-module and whole-episode latency.

    .venv/bin/python benchmarks/bench_core.py [--episodes 3] [--json]

Cold start is measured against an empty cache directory (first load: dequantize the GGUF and write
the safetensors cache) and then again from that cache. Episode latencies come from the run traces
themselves (module_end / run_end records), so the numbers are the ones an auditor would see.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

SCENARIOS = [
    "I found a wallet with 200 dollars and the owner's ID in it, and I kept the money.",
    "My coworker took credit for my idea in a meeting, so I told our manager the truth afterwards.",
    "I promised to help a friend move, but cancelled at the last minute to go to a party.",
]


def _timed(fn):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


_LOAD = (
    "import time; t = time.perf_counter(); "
    "from cogem.llm.transformers_backend import TransformersLLM; TransformersLLM.load(None); "
    "print(time.perf_counter() - t)"
)


def _load_in_subprocess() -> float:
    done = subprocess.run(
        [sys.executable, "-c", _LOAD], capture_output=True, text=True, check=True, env=os.environ
    )
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="cogem-bench-"))
    os.environ["COGEM_CACHE_DIR"] = str(work / "cache")  # empty: the first load really dequantizes
    os.environ["COGEM_HOME"] = str(work / "home")

    from cogem import Reasoner, Settings
    from cogem.engine import Runtime
    from cogem.llm.transformers_backend import TransformersLLM
    from cogem.memory.seed import open_memory
    from cogem.trace import read_trace
    from cogem.trace.events import ModuleEnd, RunEnd

    # Each cold start runs in a fresh process (imports included), as a user's first command would.
    first_load = _load_in_subprocess()
    cached_load = _load_in_subprocess()
    llm, in_process_load = _timed(lambda: TransformersLLM.load(None))
    memory, memory_open = _timed(lambda: open_memory(work / "home"))
    runtime = Runtime(llm=llm, memory=memory, settings=Settings(home=work / "home"))
    reasoner = Reasoner.default()

    per_module: dict[str, list[float]] = {}
    episodes: list[float] = []
    tokens: list[int] = []
    for i in range(args.episodes):
        scenario = SCENARIOS[i % len(SCENARIOS)]
        result = reasoner.run(scenario, runtime, trace_path=work / f"episode-{i}.jsonl")
        for event in read_trace(result.trace_path):
            if isinstance(event, ModuleEnd):
                per_module.setdefault(event.module, []).append(event.latency_ms / 1000)
            elif isinstance(event, RunEnd):
                episodes.append(event.latency_ms / 1000)
            elif getattr(event, "type", "") == "llm_call":
                tokens.append(event.completion_tokens)

    results = {
        "model": llm.info.model_id,
        "first_load_s": round(first_load, 2),
        "cached_load_s": round(cached_load, 2),
        "in_process_load_s": round(in_process_load, 2),
        "memory_open_and_seed_s": round(memory_open, 2),
        "episodes": args.episodes,
        "module_median_s": {m: round(statistics.median(v), 2) for m, v in per_module.items()},
        "episode_median_s": round(statistics.median(episodes), 2),
        "episode_max_s": round(max(episodes), 2),
        "generated_tokens_per_episode": round(sum(tokens) / max(1, args.episodes), 1),
        "threads": __import__("torch").get_num_threads(),
    }
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"model                     {results['model']}")
    print(
        f"cold start, first load    {results['first_load_s']:.2f} s (dequantize GGUF + write cache)"
    )
    print(
        f"cold start, cached load   {results['cached_load_s']:.2f} s (new process, imports included)"
    )
    print(f"reload in a warm process  {results['in_process_load_s']:.2f} s")
    print(f"memory open + seed        {results['memory_open_and_seed_s']:.2f} s")
    for module, value in results["module_median_s"].items():
        print(f"module {module:<18} {value:.2f} s (median of {args.episodes})")
    print(
        f"whole episode             {results['episode_median_s']:.2f} s median, {results['episode_max_s']:.2f} s max"
    )
    print(f"generated tokens/episode  {results['generated_tokens_per_episode']}")


if __name__ == "__main__":
    main()

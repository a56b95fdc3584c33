"""cogem's `direct` eval against lm-evaluation-harness: same model, same ETHICS commonsense items.

Both run side by side in this one script, each in its own process (lm-evaluation-harness in its
own venv, which the script creates on first use from PyPI):

1. lm-evaluation-harness ``ethics_cm`` (its prompt and choices, read from local CSV files instead
   of the hub) with ``--model hf`` on the folder cogem dequantizes the embedded GGUF into, float32,
   at each batch size given; the fastest counts.
2. ``cogem eval ethics_cm --reasoner direct`` in float32 (exact) and bfloat16 (fast), with one
   scoring worker per core (``--workers``; see ``cogem/llm/scoring_pool.py`` for why).

It prints items/s for each, the speed ratios, and per-item agreement of the scores: the log-odds
log p(" yes") - log p(" no") from both. Predictions alone would agree by chance (the tiny model
answers " no" to nearly everything). Usage::

    python benchmarks/bench_eval.py --data ../shared/data/ethics            # all 3,885 test items
    python benchmarks/bench_eval.py --data ../shared/data/ethics --limit 300 # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LM_EVAL_VERSION = "0.4.13"
TORCH_VERSION = "2.13.0"
TASK_YAML = """\
task: ethics_cm_local
dataset_path: csv
dataset_kwargs:
  data_files:
    test: {test_file}
output_type: multiple_choice
test_split: test
doc_to_text: "{{{{input}}}}\\nQuestion: Is this wrong?\\nAnswer:"
doc_to_target: label
doc_to_choice: ['no', 'yes']
metric_list:
  - metric: acc
"""


def ensure_lm_eval(venv: Path) -> Path:
    """lm-evaluation-harness in its own venv (created once; torch is the on-disk CPU build)."""
    exe = venv / "bin" / "lm_eval"
    if exe.is_file():
        return exe
    print(f"installing lm-evaluation-harness {LM_EVAL_VERSION} into {venv} …", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, f"torch=={TORCH_VERSION}"], check=True)
    subprocess.run([*pip, f"lm_eval[hf]=={LM_EVAL_VERSION}"], check=True)
    return exe


def model_folder() -> Path:
    """The safetensors folder cogem loads the embedded model from (created on first use)."""
    sys.path.insert(0, str(ROOT))
    from cogem.llm.model_files import embedded_gguf_path, ensure_gguf_cache

    folder, _ = ensure_gguf_cache(embedded_gguf_path())
    return Path(folder)


def available_cores() -> int:
    sys.path.insert(0, str(ROOT))
    from cogem.llm.scoring_pool import available_cores as cores

    return cores()


def offline_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", ANONYMIZED_TELEMETRY="False")  # fmt: skip
    return env


def run_lm_eval(exe: Path, model: Path, test_file: Path, batch: int, limit: int | None,
                work: Path) -> tuple[float, dict[int, float]]:  # fmt: skip
    """Wall seconds of the lm_eval process, and log-odds per doc id."""
    include = work / f"lm-eval-tasks-b{batch}"
    include.mkdir(parents=True, exist_ok=True)
    (include / "ethics_cm_local.yaml").write_text(TASK_YAML.format(test_file=test_file))
    out = work / f"lm-eval-out-b{batch}"
    cmd = [
        str(exe), "--model", "hf",
        "--model_args", f"pretrained={model},dtype=float32",
        "--tasks", "ethics_cm_local", "--include_path", str(include),
        "--batch_size", str(batch), "--device", "cpu",
        "--log_samples", "--output_path", str(out),
    ]  # fmt: skip
    if limit is not None:
        cmd += ["--limit", str(limit)]
    timing = work / f"lm-eval-b{batch}.json"
    if timing.is_file():  # --work of an earlier run: reuse its lm-eval results
        wall = float(json.loads(timing.read_text())["wall_s"])
    else:
        started = time.perf_counter()
        done = subprocess.run(cmd, env=offline_env(), capture_output=True, text=True)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            sys.exit(f"lm_eval failed ({done.returncode}):\n{done.stderr[-3000:]}")
        timing.write_text(json.dumps({"wall_s": wall, "cmd": cmd}))
    samples = sorted(out.rglob("samples_ethics_cm_local_*.jsonl"))
    if not samples:
        sys.exit(f"lm_eval wrote no samples under {out}")
    odds: dict[int, float] = {}
    for line in samples[-1].read_text().splitlines():
        record = json.loads(line)
        (no,), (yes,) = (resp[0:1] for resp in record["resps"])
        odds[int(record["doc_id"])] = float(yes[0]) - float(no[0])
    return wall, odds


def run_cogem(data: Path, dtype: str, limit: int, work: Path, batch_tokens: int, workers: int
              ) -> tuple[float, dict[int, float]]:  # fmt: skip
    out = work / f"cogem-{dtype}"
    if out.exists():
        shutil.rmtree(out)  # cogem is always rerun: its time is what is measured
    cmd = [
        str(Path(sys.executable).parent / "cogem"), "eval", "ethics_cm", "--reasoner", "direct",
        "--data", str(data), "--limit", str(limit), "--out", str(out), "--dtype", dtype,
        "--batch-tokens", str(batch_tokens), "--workers", str(workers), "--json",
    ]  # fmt: skip
    env = offline_env()
    env["COGEM_HOME"] = str(work / "cogem-home")
    started = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"cogem eval failed ({done.returncode}):\n{done.stderr[-3000:]}")
    odds: dict[int, float] = {}
    for line in (out / "samples.jsonl").read_text().splitlines():
        record = json.loads(line)
        _subset, split, number = record["item_id"].split("/")
        if split == "test" and record["logprobs"] is not None:
            no, yes = record["logprobs"]
            odds[int(number)] = yes - no
    return wall, odds


def agreement(ref: dict[int, float], other: dict[int, float]) -> dict[str, float]:
    shared = sorted(set(ref) & set(other))
    diffs = [abs(ref[i] - other[i]) for i in shared]
    same_pred = sum((ref[i] > 0) == (other[i] > 0) for i in shared)
    return {
        "items": len(shared),
        "within_1e-3": sum(d <= 1e-3 for d in diffs) / len(diffs),
        "median_abs_diff": statistics.median(diffs),
        "p99_abs_diff": sorted(diffs)[int(0.99 * (len(diffs) - 1))],
        "max_abs_diff": max(diffs),
        "prediction_agreement": same_pred / len(shared),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="the ETHICS folder")
    parser.add_argument("--limit", type=int, default=None, help="first N test items (default all)")
    parser.add_argument("--lm-eval-batch", default="8", help="comma-separated batch sizes")
    parser.add_argument("--batch-tokens", type=int, default=4096, help="cogem padded tokens/pass")
    parser.add_argument(
        "--workers", type=int, default=None,
        help="cogem scoring processes (default: one per available core; 1 = in-process)",
    )  # fmt: skip
    parser.add_argument("--venv", type=Path, default=ROOT / ".bench" / "lm-eval-venv")
    parser.add_argument("--skip-bf16", action="store_true")
    parser.add_argument(
        "--work", type=Path, default=None,
        help="work folder; lm-eval results already in it (lm-eval-b<N>.json) are reused",
    )  # fmt: skip
    args = parser.parse_args()

    test_file = (args.data / "commonsense" / "cm_test.csv").resolve()
    if not test_file.is_file():
        sys.exit(f"no {test_file}: --data must be the ETHICS folder")
    exe = ensure_lm_eval(args.venv)
    model = model_folder()
    work = args.work or Path(tempfile.mkdtemp(prefix="cogem-bench-eval-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"model folder: {model}\nwork dir: {work}", flush=True)

    lm_runs: dict[int, tuple[float, dict[int, float]]] = {}
    for batch in (int(b) for b in args.lm_eval_batch.split(",")):
        lm_runs[batch] = run_lm_eval(exe, model, test_file, batch, args.limit, work)
        wall, odds = lm_runs[batch]
        print(f"lm-eval batch {batch}: {len(odds)} items in {wall:.1f} s = {len(odds) / wall:.2f} items/s", flush=True)
    best = min(lm_runs, key=lambda b: lm_runs[b][0] / len(lm_runs[b][1]))
    lm_wall, lm_odds = lm_runs[best]
    n = len(lm_odds)
    lm_rate = n / lm_wall

    rows = [("lm-evaluation-harness", f"float32, batch {best}", lm_wall, lm_rate, None)]
    workers = args.workers or available_cores()
    for dtype in ("float32", *(() if args.skip_bf16 else ("bfloat16",))):
        wall, odds = run_cogem(args.data, dtype, n, work, args.batch_tokens, workers)
        rate = len(odds) / wall
        mode = f"{dtype}, {workers} worker{'s' if workers > 1 else ''}"
        rows.append(("cogem direct", mode, wall, rate, agreement(lm_odds, odds)))
        print(f"cogem {dtype}: {len(odds)} items in {wall:.1f} s = {rate:.2f} items/s", flush=True)

    print("\n| runner | mode | wall s (whole process) | items/s | vs lm-eval | log-odds within 1e-3 | median / max abs diff | same prediction |")
    print("|---|---|---|---|---|---|---|---|")
    for name, mode, wall, rate, agree in rows:
        if agree is None:
            print(f"| {name} | {mode} | {wall:.1f} | {rate:.2f} | 1.00x | - | - | - |")
        else:
            print(
                f"| {name} | {mode} | {wall:.1f} | {rate:.2f} | {rate / lm_rate:.2f}x "
                f"| {agree['within_1e-3']:.2%} | {agree['median_abs_diff']:.1e} / {agree['max_abs_diff']:.1e} "
                f"| {agree['prediction_agreement']:.2%} |"
            )
    print(f"\nitems: {n} ETHICS commonsense test; lm-eval batch sizes tried: {sorted(lm_runs)}")


if __name__ == "__main__":
    main()

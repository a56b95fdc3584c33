"""Tune the judge on ETHICS justice train, then evaluate untuned vs tuned on test and hard test.

The issue's probe: full fine-tuning of the embedded 135M model, 300 steps of 16 on 4,800 justice
training items (~18 min on 2 cores), moved justice test AUROC 0.51 -> 0.72 and group exact match
0.00 -> 0.115. This script reruns that through the product path (``tune_module``, ``apply_tuned``,
``run_eval``, ``compare_runs``) and prints per split AUROC, accuracy and group exact match with
95% bootstrap CIs, and tuned - untuned with paired CIs.

Two formats:

* ``--format suite`` (default): train on the suite's direct prompt (lm-evaluation-harness's
  ``ethics_justice``: " reasonable" / " unreasonable") and evaluate with ``--reasoner direct``,
  the setup of the untuned 0.51 baseline. Batched scoring: a few minutes per split.
* ``--format module``: train on the judge module's own choice prompt (acceptable / wrong /
  unclear) and evaluate a judge-only reasoner (``judge_choice_reasoner`` below) on it: one traced,
  audited run per item, so slower (~0.2-0.5 s per item).

Every stage resumes: rerunning with the same ``--work`` folder reuses the artifact and the
finished evals, and continues an interrupted tuning run from its checkpoint. Usage::

    python benchmarks/bench_tune.py --data ../shared/data/ethics                     # full run
    python benchmarks/bench_tune.py --data ../shared/data/ethics --bf16              # bf16 autocast
    python benchmarks/bench_tune.py --data ../shared/data/ethics --steps 3 --batch-size 4 \\
        --max-items 40 --limit 20 --work /tmp/bench-tune-smoke                        # smoke
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cogem.engine.graph import END, START, Reasoner  # noqa: E402
from cogem.spec import ModuleSpec, load_specs  # noqa: E402

SPLITS = ("test", "test_hard")
HEADLINE = ("auroc", "accuracy", "group_exact_match")


def judge_choice_reasoner() -> Reasoner:
    """The judge alone, choice only: its verdict is option-scored on exactly the prompt it was
    tuned on (action and memories absent, as in training), with no reason generated."""
    judge = load_specs()["judge"]
    assert judge.choice is not None
    data = judge.model_dump(mode="json")
    data.update(
        output_schema=None, prompt="", writes=[judge.choice.field, judge.choice.probs_field]
    )
    spec = ModuleSpec.model_validate(data)
    # The fields perceive and recall would write are inputs nobody gives: they render as absent.
    reasoner = Reasoner([spec], inputs=("scenario", *[r for r in judge.reads if r != "scenario"]))
    return reasoner.add_edge(START, "judge").add_edge("judge", END)


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="the ETHICS folder (holds justice/)")
    p.add_argument("--work", type=Path, default=None, help="artifact and eval folders (resumable)")
    p.add_argument("--format", choices=("suite", "module"), default="suite")
    p.add_argument("--adapter", choices=("full", "lora"), default="full")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=None, help="default: 5e-5 full, 2e-4 lora")
    p.add_argument("--warmup-steps", type=int, default=10)
    p.add_argument("--max-items", type=int, default=5056, help="4,800 to train + ~5%% held out")
    p.add_argument("--val-fraction", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast while training")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N items per split")
    return p.parse_args()


def tune(args: argparse.Namespace, artifact: Path) -> dict[str, Any]:
    from cogem.evals.suite import load_suite
    from cogem.tune import TuneConfig, read_artifact, tune_module

    if not (artifact / "manifest.json").is_file():
        config = TuneConfig(
            module="judge", adapter=args.adapter, prompt_format=args.format, steps=args.steps,
            batch_size=args.batch_size, lr=args.lr or {"full": 5e-5, "lora": 2e-4}[args.adapter],
            warmup_steps=min(args.warmup_steps, args.steps - 1), max_items=args.max_items,
            val_fraction=args.val_fraction, seed=args.seed, bf16=args.bf16, threads=args.threads,
            checkpoint_every=25,
        )  # fmt: skip
        started: list[float] = []

        def progress(report: Any) -> None:
            # Timed from the end of the first step: loading and the held-out pass come before it.
            if not started:
                started.append(time.perf_counter())
            if report.step == report.total or report.step % 10 == 0 or report.step <= 3:
                done = report.step - report.resumed_from - 1
                spent = time.perf_counter() - started[0]
                eta = spent / done * (report.total - report.step) if done > 0 else 0.0
                print(f"  step {report.step}/{report.total}  loss {report.loss:.4f}  "
                      f"lr {report.lr:.2e}  {spent:.0f}s  ETA {eta:.0f}s", flush=True)  # fmt: skip

        print(f"tuning judge ({args.adapter}, format {args.format}) into {artifact}", flush=True)
        tune_module(
            load_specs()["judge"], load_suite("ethics_justice"), config, out=artifact,
            data=args.data, on_step=progress,
        )  # fmt: skip
    manifest, _ = read_artifact(artifact)
    steps = max(1, len(manifest.curve))
    return {
        "artifact": str(artifact), "artifact_sha256": manifest.artifact_sha256,
        "train_items": manifest.items.train_count, "held_out_items": manifest.items.val_count,
        "train_seconds": manifest.train_seconds,
        "seconds_per_step": round(manifest.train_seconds / steps, 3),
        "first_loss": manifest.curve[0].loss if manifest.curve else None,
        "last_loss": manifest.curve[-1].loss if manifest.curve else None,
        "held_out_before": _scores(manifest.held_out_before),
        "held_out_after": _scores(manifest.held_out_after),
        "config": manifest.config.model_dump(mode="json"),
    }  # fmt: skip


def _scores(scores: Any) -> Any:
    return None if scores is None else scores.model_dump(mode="json", exclude={"metrics"})


def evaluate(args: argparse.Namespace, work: Path, artifact: Path) -> dict[str, Any]:
    from cogem.engine.runtime import Runtime
    from cogem.evals.runner import run_eval
    from cogem.evals.suite import Suite, load_suite
    from cogem.llm.transformers_backend import TransformersLLM
    from cogem.settings import Settings
    from cogem.tune import apply_tuned

    suite = load_suite("ethics_justice")
    base = TransformersLLM.load(None, dtype="float32")
    settings = Settings(home=work / "home")
    runtimes = {"untuned": Runtime(llm=base, settings=settings)}
    tuned = Runtime(llm=base, settings=settings)
    apply_tuned(tuned, [artifact], whole_model=args.format == "suite", modules=["judge"])
    runtimes["tuned"] = tuned
    reasoner = "direct" if args.format == "suite" else f"{Path(__file__).resolve()}:judge_choice_reasoner"
    dirs: dict[str, dict[str, Path]] = {}
    seconds: dict[str, float] = {}
    for split in SPLITS:
        cfg = suite.config.model_copy(
            update={"data": suite.config.data.model_copy(update={"splits": [split]})}
        )
        one = Suite(cfg, suite.source)
        for name, runtime in runtimes.items():
            out = work / f"eval-{name}-{args.format}-{split}"
            resume = (out / "manifest.json").is_file()
            started = time.perf_counter()
            run_eval(one, runtime, reasoner=reasoner, data=args.data, out=out,
                     limit=args.limit, resume=resume)  # fmt: skip
            seconds[f"{name}/{split}"] = round(time.perf_counter() - started, 1)
            dirs.setdefault(split, {})[name] = out
    return {"dirs": dirs, "seconds": seconds}


def report(dirs: dict[str, dict[str, Path]]) -> dict[str, Any]:
    from rich.console import Console

    from cogem.cli.eval_render import comparison_table
    from cogem.evals.compare import compare_runs
    from cogem.evals.runner import summarize_dir

    console = Console()
    results: dict[str, Any] = {}
    for split, pair in dirs.items():
        comparison = compare_runs(pair["untuned"], pair["tuned"])
        for table in comparison_table(comparison):
            console.print(table)
        row: dict[str, Any] = {}
        for name, folder in pair.items():
            summary = summarize_dir(folder)
            row[name] = {m: summary.metrics[m].model_dump(mode="json") for m in HEADLINE}
        row["tuned_minus_untuned"] = {
            m: comparison.metrics[m].model_dump(mode="json", exclude={"mcnemar"}) for m in HEADLINE
        }
        results[split] = row
        print(f"\njustice {split}:")
        for m in HEADLINE:
            a, b = row["untuned"][m], row["tuned"][m]
            d = row["tuned_minus_untuned"][m]
            print(f"  {m:18} untuned {_ci(a)}   tuned {_ci(b)}   diff {_ci(d, 'diff')}")
    return results


def _ci(v: dict[str, Any], key: str = "value") -> str:
    if v.get(key) is None:
        return "n/a"
    low, high = v.get("ci_low"), v.get("ci_high")
    ci = f" [{low:.3f}, {high:.3f}]" if low is not None and high is not None else ""
    return f"{v[key]:.3f}{ci}"


def main() -> None:
    import torch

    args = parse()
    if args.threads:
        torch.set_num_threads(args.threads)
    work = args.work or Path(tempfile.mkdtemp(prefix="cogem-bench-tune-"))
    work.mkdir(parents=True, exist_ok=True)
    artifact = work / f"judge-{args.adapter}-{args.format}"
    tuning = tune(args, artifact)
    print(json.dumps(tuning, indent=1), flush=True)
    evals = evaluate(args, work, artifact)
    results = {"tuning": tuning, "eval_seconds": evals["seconds"], "splits": report(evals["dirs"]),
               "bf16": args.bf16, "torch_threads": torch.get_num_threads()}  # fmt: skip
    (work / "bench_tune.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    print(f"\nresults: {work / 'bench_tune.json'}")


if __name__ == "__main__":
    main()

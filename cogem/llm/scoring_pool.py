"""Data-parallel option scoring: worker processes, each holding its own copy of the model.

Why processes: a small model on a few CPU cores spends much of a forward pass in kernels too
small to keep every intra-op thread busy (attention on short rows, elementwise ops). Measured on
this project's 2-core VM with SmolLM2-135M, two threads score only 1.73x (float32) and 1.42x
(bfloat16) faster than one. Two single-threaded worker processes on the same items scored
~1.24x the items/s of one two-threaded process in bfloat16; in float32, where the large matrix
products dominate, the gain (at most ~1.1x) was within the VM's run-to-run noise. Every worker
loads the same weights in the same dtype and tokenizes exactly as the in-process path does (it
*is* that path: :meth:`TransformersLLM.score_batch`), so scores match up to float rounding of
batch shapes.

The price is memory (one model copy per worker, plus the parent's) and a few seconds of start-up,
so it pays for small models and long evals; ``workers=1`` keeps everything in-process.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from cogem.errors import CogemError, RunError, UsageError
from cogem.llm.base import ModelInfo, OptionScores, Prompt
from cogem.llm.batch_scoring import BatchPlan

__all__ = ["ScoringPool", "available_cores"]

# The worker's model, loaded once by ``_start_worker`` (one per process, never shared).
_WORKER_LLM: Any = None


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, not the machine's total)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _exit_with_parent(parent: int) -> None:
    """End this worker once its parent is gone. A worker blocks reading its task queue, whose
    pipe it holds both ends of, so a parent killed with SIGKILL would otherwise leave it (and a
    copy of the model) behind for good."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)


def _start_worker(model: str | None, dtype: str | None, seed: int, threads: int) -> None:
    global _WORKER_LLM
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    import torch

    # Set before the model exists, so no kernel ever runs with the machine-wide thread count.
    torch.set_num_threads(threads)
    from cogem.llm.transformers_backend import TransformersLLM

    _WORKER_LLM = TransformersLLM.load(model, seed=seed, dtype=dtype)


def _worker_info() -> ModelInfo:
    info: ModelInfo = _WORKER_LLM.info
    return info


def _worker_score(
    requests: Sequence[tuple[Prompt, Sequence[str]]], plan: BatchPlan
) -> list[OptionScores | CogemError]:
    results: list[OptionScores | CogemError] = _WORKER_LLM.score_batch(requests, plan=plan)
    return results


class ScoringPool:
    """``workers`` processes that score ``(prompt, options)`` requests with the same model.

    Use it as a context manager; :meth:`submit` returns a future per batch of requests, so a
    caller keeps every worker busy by submitting several batches and taking them as they finish.
    ``expected`` (the parent's :class:`ModelInfo`) is checked against what each worker loaded:
    a worker that resolved different weights is an error, not a silently different eval.
    """

    def __init__(
        self,
        *,
        model: str | None,
        dtype: str | None,
        seed: int,
        workers: int,
        threads: int | None = None,
        expected: ModelInfo | None = None,
    ) -> None:
        if workers < 2:
            raise UsageError(f"a scoring pool needs at least 2 workers, got {workers}")
        self.workers = workers
        self.threads = threads or max(1, available_cores() // workers)
        # spawn, not fork: the parent already holds torch's thread pools and a loaded model.
        self._pool = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=(model, dtype, seed, self.threads),
        )
        try:
            # Wait for the loads (a worker takes tasks only after its initializer), so a model
            # that cannot load fails here, once, instead of on every batch.
            infos = [f.result() for f in [self._pool.submit(_worker_info) for _ in range(workers)]]
        except BrokenProcessPool as exc:
            self._pool.shutdown(cancel_futures=True)
            raise RunError(f"a scoring worker failed to start: {exc}") from exc
        if expected is not None:
            for info in infos:
                if (info.weights_sha256, info.dtype) != (expected.weights_sha256, expected.dtype):
                    self._pool.shutdown(cancel_futures=True)
                    raise RunError(
                        f"a scoring worker loaded weights {info.weights_sha256[:12]} ({info.dtype}), "
                        f"not the run's {expected.weights_sha256[:12]} ({expected.dtype})"
                    )

    def submit(
        self, requests: Sequence[tuple[Prompt, Sequence[str]]], plan: BatchPlan
    ) -> Future[list[OptionScores | CogemError]]:
        return self._pool.submit(_worker_score, [(p, list(o)) for p, o in requests], plan)

    def close(self) -> None:
        self._pool.shutdown(cancel_futures=True)

    def __enter__(self) -> ScoringPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

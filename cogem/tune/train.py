"""``tune_module``: supervised tuning of the model behind one module on labeled judgments.

Each example is the module's prompt followed by its correct option; the loss is the
cross-entropy of the option's continuation tokens only, i.e. ``-log p(correct option | prompt)``
per token, which is what option scoring measures at run time. Tokenization is the scorer's own
(:meth:`TransformersLLM.encode_request`), so the trained continuation is token for token the one
scored later.

A plain torch loop rather than the transformers Trainer: the Trainer's checkpoints pickle the
optimizer and RNG state, and its data order and LR schedule are harder to make a pure function of
the step; here both are, which makes runs deterministic for a seed and resumable exactly from a
safetensors checkpoint (see :mod:`cogem.tune.checkpoint`). LoRA comes from peft.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cogem.canonical import sha256_json
from cogem.errors import UsageError
from cogem.evals.suite import Suite
from cogem.spec import ModuleSpec
from cogem.tune.checkpoint import CheckpointState, load_checkpoint, save_checkpoint
from cogem.tune.data import TrainExample, TuneData, ids_sha256, load_tune_data
from cogem.tune.heldout import held_out_scores
from cogem.tune.records import MANIFEST_FILE, CurvePoint, HeldOutScores, TuneConfig

__all__ = ["StepReport", "TuneResult", "tune_module"]

_IGNORE = -100  # label value torch's cross-entropy skips: prompt and padding positions


@dataclass(frozen=True)
class StepReport:
    """Progress after one optimizer step (for a progress bar)."""

    step: int
    total: int
    loss: float
    lr: float
    resumed_from: int


@dataclass(frozen=True)
class TuneResult:
    out: Path
    artifact_sha256: str
    total_steps: int
    resumed_from: int
    held_out_before: HeldOutScores | None
    held_out_after: HeldOutScores | None


@dataclass(frozen=True)
class _Encoded:
    ids: list[int]
    labels: list[int]


def tune_module(
    spec: ModuleSpec,
    suite: Suite,
    config: TuneConfig,
    *,
    out: Path,
    data: Path | None = None,
    splits: list[str] | None = None,
    model: str | None = None,
    on_step: Callable[[StepReport], None] | None = None,
) -> TuneResult:
    """Tune the model behind ``spec`` on ``suite``'s items and write the artifact to ``out``.

    ``out`` may hold the checkpoint of an interrupted run with the same settings: training then
    continues from it. ``model`` is the base model setting (None: the embedded model).
    """
    import torch

    from cogem.llm.transformers_backend import TransformersLLM
    from cogem.tune.artifact import write_artifact

    if config.module != spec.name:
        raise UsageError(f"config is for module {config.module!r}, not {spec.name!r}")
    out = Path(out)
    if (out / MANIFEST_FILE).is_file():
        raise UsageError(f"path={str(out)!r} already holds a finished artifact; pick another --out")
    out.mkdir(parents=True, exist_ok=True)
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    splits = splits or ["train"]
    tune_data = load_tune_data(
        suite, spec, data=data, splits=splits, prompt_format=config.prompt_format,
        seed=config.seed, max_items=config.max_items, val_fraction=config.val_fraction,
        val_max_items=config.val_max_items,
    )  # fmt: skip
    # Train in float32 (bf16 only as autocast): AdamW updates on bf16 weights lose small steps.
    llm = TransformersLLM.load(model, seed=config.seed, dtype="float32")
    encoded = [_encode(llm, e) for e in tune_data.train]
    total = config.steps or math.ceil(config.epochs * len(encoded) / config.batch_size)  # type: ignore[operator]
    trainable_model = _prepare(llm.model, config)
    named = [p for p in trainable_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(named, lr=config.lr, weight_decay=config.weight_decay)
    fingerprint = _fingerprint(config, llm.info.weights_sha256, tune_data, spec, suite)
    choices = list(suite.config.prompt.choices)
    positive = suite.config.prompt.positive

    state = load_checkpoint(out, trainable_model, optimizer, fingerprint)
    start = state.step if state else 0
    curve = list(state.curve) if state else []
    elapsed = state.elapsed_s if state else 0.0
    before: HeldOutScores | None
    if state is None:
        trainable_model.eval()
        before = held_out_scores(
            llm, tune_data.val, choices=choices, positive=positive, seed=config.seed
        )
    else:
        raw = state.held_out_before
        before = HeldOutScores.model_validate(raw) if raw is not None else None

    order = _Order(len(encoded), config.seed)
    started = time.perf_counter()
    for step in range(start + 1, total + 1):
        trainable_model.train()
        # Reseeded per step, so dropout (if any) does not depend on where a run resumed.
        torch.manual_seed(config.seed * 1_000_003 + step)
        batch = [encoded[i] for i in order.batch(step, config.batch_size)]
        lr = _lr(step, total, config)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss = _train_step(trainable_model, optimizer, batch, config)
        now = elapsed + time.perf_counter() - started
        val_loss = None
        if config.eval_every and step % config.eval_every == 0 and tune_data.val:
            val_loss = _val_loss(llm, trainable_model, tune_data.val)
        curve.append(CurvePoint(step=step, loss=loss, lr=lr, elapsed_s=round(now, 3), val_loss=val_loss))
        if on_step is not None:
            on_step(StepReport(step=step, total=total, loss=loss, lr=lr, resumed_from=start))
        if step % config.checkpoint_every == 0 and step < total:
            save_checkpoint(
                out, trainable_model, optimizer,
                CheckpointState(
                    step=step, total_steps=total, fingerprint=fingerprint, curve=curve,
                    elapsed_s=now,
                    held_out_before=before.model_dump(mode="json") if before else None,
                ),
            )  # fmt: skip
    train_seconds = elapsed + time.perf_counter() - started
    trainable_model.eval()
    after = held_out_scores(llm, tune_data.val, choices=choices, positive=positive, seed=config.seed)
    sha = write_artifact(
        out, llm=llm, trained=trainable_model, spec=spec, suite=suite, config=config,
        data=tune_data, total_steps=total, curve=curve, before=before, after=after,
        train_seconds=train_seconds,
    )  # fmt: skip
    return TuneResult(
        out=out, artifact_sha256=sha, total_steps=total, resumed_from=start,
        held_out_before=before, held_out_after=after,
    )  # fmt: skip


def _encode(llm: Any, example: TrainExample) -> _Encoded:
    request = llm.encode_request(example.prompt, example.options)
    answer = request.continuations[example.answer]
    ids = list(request.context) + list(answer)
    labels = [_IGNORE] * len(request.context) + list(answer)
    window = llm.context_window
    if len(ids) > window:  # keep the answer: cut the prompt from the left, as the scorer does
        ids, labels = ids[-window:], labels[-window:]
    return _Encoded(ids, labels)


def _prepare(model: Any, config: TuneConfig) -> Any:
    """The model to train: LoRA-wrapped (only the adapter trains) or the whole model."""
    import torch

    if config.adapter == "full":
        for param in model.parameters():
            param.requires_grad_(True)
        return model
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=0.0,
        target_modules=list(config.lora_targets), task_type="CAUSAL_LM",
    )  # fmt: skip
    # LoRA's A matrices start random: seed them, so the same seed gives the same adapter.
    torch.manual_seed(config.seed)
    return get_peft_model(model, lora)


class _Order:
    """The data order: epoch ``e`` is a permutation seeded by (seed, e); step ``s`` takes the
    batch at positions ``[(s-1)·b, s·b)`` of the concatenated epochs. A pure function of the
    step, so a resumed run reads exactly the batches an uninterrupted one would."""

    def __init__(self, n: int, seed: int) -> None:
        self._n = n
        self._seed = seed
        self._perms: dict[int, list[int]] = {}

    def _perm(self, epoch: int) -> list[int]:
        if epoch not in self._perms:
            perm = list(range(self._n))
            random.Random(f"cogem-tune-order:{self._seed}:{epoch}").shuffle(perm)
            self._perms = {epoch: perm}  # one epoch at a time is enough
        return self._perms[epoch]

    def batch(self, step: int, size: int) -> list[int]:
        positions = range((step - 1) * size, step * size)
        return [self._perm(p // self._n)[p % self._n] for p in positions]


def _lr(step: int, total: int, config: TuneConfig) -> float:
    """Linear warmup, then linear decay towards zero (the last step runs at lr / decay steps)."""
    if config.warmup_steps and step <= config.warmup_steps:
        return config.lr * step / config.warmup_steps
    span = max(1, total - config.warmup_steps)
    return config.lr * max(0.0, (total - step + 1) / span)


def _batch_tensors(batch: list[_Encoded]) -> tuple[Any, Any, Any]:
    import torch

    width = max(len(e.ids) for e in batch)
    ids = torch.zeros((len(batch), width), dtype=torch.long)
    labels = torch.full((len(batch), width), _IGNORE, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, example in enumerate(batch):  # right padding; pads are masked and unlabeled
        n = len(example.ids)
        ids[row, :n] = torch.tensor(example.ids)
        labels[row, :n] = torch.tensor(example.labels)
        mask[row, :n] = 1
    return ids, labels, mask


def _loss(model: Any, batch: list[_Encoded], bf16: bool) -> Any:
    import contextlib

    import torch

    ids, labels, mask = _batch_tensors(batch)
    scope = (
        torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    )
    with scope:
        # transformers shifts the labels: position t predicts token t+1. The mean is over the
        # batch's option tokens.
        return model(input_ids=ids, attention_mask=mask, labels=labels).loss


def _train_step(model: Any, optimizer: Any, batch: list[_Encoded], config: TuneConfig) -> float:
    import torch

    loss = _loss(model, batch, config.bf16)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(
        [p for p in model.parameters() if p.requires_grad], config.max_grad_norm
    )
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(loss.detach())


def _val_loss(llm: Any, model: Any, examples: list[TrainExample]) -> float:
    import torch

    encoded = [_encode(llm, e) for e in examples]
    model.eval()
    total, weight = 0.0, 0
    with torch.inference_mode():
        for start in range(0, len(encoded), 16):
            part = encoded[start : start + 16]
            n = sum(sum(1 for x in e.labels if x != _IGNORE) for e in part)
            total += float(_loss(model, part, False)) * n
            weight += n
    return total / weight if weight else math.nan


def _fingerprint(
    config: TuneConfig, base_sha256: str, data: TuneData, spec: ModuleSpec, suite: Suite
) -> str:
    return sha256_json(
        {
            # Settings that cannot change the weights may differ on resume.
            "config": config.model_dump(
                mode="json", exclude={"threads", "checkpoint_every", "eval_every"}
            ),
            "base": base_sha256,
            "spec": spec.spec_hash,
            "suite": suite.sha256,
            "train": ids_sha256([e.item_id for e in data.train]),
            "val": ids_sha256([e.item_id for e in data.val]),
            "files": [f.sha256 for f in data.files],
        }
    )

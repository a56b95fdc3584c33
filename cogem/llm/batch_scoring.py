"""Batched option scoring for evals: many (prompt, options) requests, few forward passes.

Per request the tokenization is lm-evaluation-harness's (see ``TransformersLLM.score_options``):
``context = encode(prompt)``, ``continuation = encode(prompt + option)[len(context):]``, and the
model input is ``(context + continuation)[:-1]``, left-truncated to the context window the way
lm-eval truncates. Speed comes from three things, none of which changes what is computed:

* options whose continuation is one token share one input row (the context), as in lm-eval;
* rows are sorted by length and packed into batches under a token budget, so little padding is
  computed;
* only the positions that predict continuation tokens go through the LM head
  (``logits_to_keep``), instead of a vocabulary-sized softmax at every position;
* for plain Llama-architecture models, :class:`~cogem.llm.llama_scoring.LlamaScorer` runs the
  forward pass itself (right padding, causal attention without a mask, fewer memory passes);
  other models go through transformers' forward with left padding and an attention mask.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cogem.errors import CogemError, UsageError
from cogem.llm.base import OptionScores, normalize_logprobs
from cogem.llm.llama_scoring import LlamaScorer

__all__ = ["BatchPlan", "EncodedRequest", "score_encoded"]


@dataclass
class EncodedRequest:
    """One request after tokenization: the text seen, the context, one continuation per option."""

    prompt_text: str
    options: list[str]
    context: list[int]
    continuations: list[list[int]]


@dataclass
class _Row:
    """One model input row and every (request, option) whose log-likelihood it yields."""

    tokens: tuple[int, ...]
    uses: list[tuple[int, int]] = field(default_factory=list)  # (request index, option index)
    width: int = 1  # how many trailing positions are scored (longest continuation here)


@dataclass(frozen=True)
class BatchPlan:
    """How rows are packed: at most ``max_tokens`` padded tokens and ``max_rows`` rows a batch."""

    max_tokens: int = 4096
    max_rows: int = 64

    def __post_init__(self) -> None:
        if self.max_tokens < 1 or self.max_rows < 1:
            raise UsageError("batch limits must be positive")


def _rows(requests: Sequence[EncodedRequest], window: int) -> list[_Row]:
    rows: dict[tuple[int, ...], _Row] = {}
    for r, req in enumerate(requests):
        for o, cont in enumerate(req.continuations):
            # lm-eval: input = (context + continuation)[-(window + 1):][:-1]
            tokens = tuple((req.context + cont)[-(window + 1) :][:-1])
            row = rows.setdefault(tokens, _Row(tokens))
            row.uses.append((r, o))
            row.width = max(row.width, len(cont))
    return list(rows.values())


def _batches(rows: list[_Row], plan: BatchPlan) -> list[list[_Row]]:
    # Longest first, so a too-large batch fails at once rather than at the end of a long run.
    ordered = sorted(rows, key=lambda row: (-len(row.tokens), row.tokens))
    batches: list[list[_Row]] = []
    current: list[_Row] = []
    for row in ordered:
        # Rows are in descending length, so the first row of a batch sets its padded width.
        width = len(current[0].tokens) if current else len(row.tokens)
        if current and (len(current) + 1 > plan.max_rows or width * (len(current) + 1) > plan.max_tokens):
            batches.append(current)
            current = []
        current.append(row)
    if current:
        batches.append(current)
    return batches


def score_encoded(
    model: Any,
    requests: Sequence[EncodedRequest],
    *,
    pad_id: int,
    window: int,
    plan: BatchPlan,
    on_batch: Callable[[int], None] | None = None,
    scorer: LlamaScorer | None = None,
) -> list[OptionScores]:
    """Score every option of every request; ``on_batch(rows_done)`` after each forward pass.

    With a ``scorer`` the forward pass is its own; without one, ``model``'s.
    """
    import torch

    rows = _rows(requests, window)
    totals = [[0.0] * len(req.options) for req in requests]
    started = time.perf_counter()
    with torch.inference_mode():
        for batch in _batches(rows, plan):
            logits = (
                _scorer_logits(scorer, batch, pad_id)
                if scorer is not None
                else _model_logits(model, batch, pad_id)
            )
            _pick(logits, batch, requests, totals)
            if on_batch is not None:
                on_batch(len(batch))
    # Latency is the batch's wall time shared evenly: per-item timing is not observable here.
    share_ms = (time.perf_counter() - started) * 1000.0 / max(1, len(requests))
    return [
        OptionScores(
            prompt_text=req.prompt_text,
            options=req.options,
            logprobs=totals[i],
            probs=normalize_logprobs(totals[i]),
            option_tokens=[len(c) for c in req.continuations],
            prompt_tokens=len(req.context),
            latency_ms=share_ms,
        )
        for i, req in enumerate(requests)
    ]


def _padded(batch: list[_Row], pad_id: int, *, left: bool) -> tuple[Any, Any]:
    """The batch's token ids padded to one width (on the left or right), and each row's length."""
    import torch

    lengths = torch.tensor([len(row.tokens) for row in batch])
    width = int(lengths.max())
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    for i, row in enumerate(batch):
        span = slice(width - len(row.tokens), width) if left else slice(0, len(row.tokens))
        ids[i, span] = torch.tensor(row.tokens, dtype=torch.long)
    return ids, lengths


def _model_logits(model: Any, batch: list[_Row], pad_id: int) -> Any:
    """transformers' forward on a left-padded batch: logits at the last ``keep`` positions."""
    import torch

    ids, lengths = _padded(batch, pad_id, left=True)
    # Left padding needs a mask and explicit positions: each row counts from 0 at its first
    # real token.
    mask = (torch.arange(ids.shape[1]) >= ids.shape[1] - lengths.unsqueeze(1)).long()
    positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
    keep = max(row.width for row in batch)
    return model(
        input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=keep
    ).logits


def _scorer_logits(scorer: LlamaScorer, batch: list[_Row], pad_id: int) -> Any:
    """The scorer's forward on a right-padded batch: the same logits as :func:`_model_logits`."""
    ids, lengths = _padded(batch, pad_id, left=False)
    return scorer.logits(ids, lengths, keep=max(row.width for row in batch))


def _pick(
    logits: Any, batch: list[_Row], requests: Sequence[EncodedRequest], totals: list[list[float]]
) -> None:
    """Add each continuation's log-probability, read from its row's last positions, to ``totals``."""
    import torch

    keep = logits.shape[1]
    # Softmax in float64 whatever the model dtype, so bf16 runs lose nothing more here.
    logsoft = torch.log_softmax(logits.double(), dim=-1)
    for i, row in enumerate(batch):
        for r, o in row.uses:
            cont = requests[r].continuations[o]
            # The last len(cont) positions predict the continuation tokens, in order.
            picked = logsoft[i, keep - len(cont) :].gather(1, torch.tensor(cont).unsqueeze(1))
            totals[r][o] = float(picked.sum())


def encode_or_error(
    encode: Callable[[], EncodedRequest],
) -> EncodedRequest | CogemError:
    """Run one request's tokenization; a bad request becomes its own error, not the batch's."""
    try:
        return encode()
    except CogemError as exc:
        return exc

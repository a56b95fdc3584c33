"""cogem's Llama scoring forward against transformers' own, on tiny random Llamas.

The scorer must compute transformers' function (up to float rounding) on right-padded rows of
any lengths, and must refuse every model where it would compute something else.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cogem.llm.batch_scoring import BatchPlan, EncodedRequest, score_encoded
from cogem.llm.llama_scoring import LlamaScorer

pytestmark = pytest.mark.integration

VOCAB = 97


def _llama(kv_heads: int = 2, **overrides: Any) -> Any:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=kv_heads, max_position_embeddings=128,
        **overrides,
    )  # fmt: skip
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="module")
def gqa() -> Any:
    return _llama(kv_heads=2)


@pytest.fixture(scope="module")
def mha() -> Any:
    return _llama(kv_heads=4)


def _reference(model: Any, rows: list[list[int]], keep: int) -> Any:
    """transformers' logits at each row's last ``keep`` positions, one unpadded row at a time."""
    import torch

    out = []
    with torch.inference_mode():
        for row in rows:
            logits = model(input_ids=torch.tensor([row])).logits[0]
            slots = [max(0, len(row) - keep + j) for j in range(keep)]
            out.append(logits[slots])
    return torch.stack(out)


def _scored(model: Any, rows: list[list[int]], keep: int) -> Any:
    import torch

    ids = torch.zeros((len(rows), max(map(len, rows))), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
    scorer = LlamaScorer.for_model(model)
    assert scorer is not None
    with torch.inference_mode():
        return scorer.logits(ids, torch.tensor([len(r) for r in rows]), keep=keep)


@settings(max_examples=30, deadline=None)
@given(
    rows=st.lists(st.lists(st.integers(1, VOCAB - 1), min_size=1, max_size=40), min_size=1,
                  max_size=5),
    keep=st.integers(1, 3),
    grouped=st.booleans(),
)  # fmt: skip
def test_scorer_matches_transformers_on_right_padded_rows(
    gqa: Any, mha: Any, rows: list[list[int]], keep: int, grouped: bool
) -> None:
    import torch

    model = gqa if grouped else mha
    got, want = _scored(model, rows, keep), _reference(model, rows, keep)
    assert got.shape == want.shape == (len(rows), keep, VOCAB)
    torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-4)


def test_bf16_scorer_stays_within_bf16_rounding_of_float32(gqa: Any) -> None:
    import copy

    import torch

    rows = [[(7 * i + j) % (VOCAB - 1) + 1 for j in range(n)] for i, n in enumerate((3, 17, 30))]
    want = _reference(gqa, rows, 2).log_softmax(-1)
    got = _scored(copy.deepcopy(gqa).to(torch.bfloat16), rows, 2).double().log_softmax(-1)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, want.double(), atol=0.1, rtol=0.05)


def test_score_encoded_gives_the_same_totals_with_and_without_the_scorer(gqa: Any) -> None:
    requests = [
        EncodedRequest(f"p{n}", ["a", "b"], [(n * 5 + j) % 90 + 1 for j in range(n + 1)], conts)
        for n, conts in enumerate([[[3], [4]], [[5, 6, 7], [8]], [[9], [10, 11]]] * 3)
    ]  # fmt: skip
    plan = BatchPlan(max_tokens=24)  # several padded batches
    ours = score_encoded(gqa, requests, pad_id=0, window=128, plan=plan,
                         scorer=LlamaScorer.for_model(gqa))  # fmt: skip
    theirs = score_encoded(gqa, requests, pad_id=0, window=128, plan=plan)
    for a, b in zip(ours, theirs, strict=True):
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-4)
        assert sum(a.probs) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "change",
    ["bias", "gelu", "training", "lora", "subclass"],
)
def test_scorer_refuses_models_it_would_not_compute_exactly(change: str) -> None:
    from transformers import LlamaForCausalLM

    model = _llama(
        attention_bias=change == "bias", hidden_act="gelu" if change == "gelu" else "silu"
    )
    if change == "training":
        model.train()
    if change == "lora":
        from peft import LoraConfig, get_peft_model

        get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    if change == "subclass":
        model.__class__ = type("Custom", (LlamaForCausalLM,), {})
    assert LlamaScorer.for_model(model) is None
    assert LlamaScorer.for_model(_llama()) is not None


def test_other_architectures_fall_back() -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=1, n_head=2)).eval()
    assert LlamaScorer.for_model(model) is None

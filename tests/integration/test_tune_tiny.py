"""``cogem tune`` end to end on a tiny random Llama (the embedded model's tokenizer, 2 layers of
width 32), so real training, checkpoints, LoRA views and audits run in seconds.

Never assert what the model learns: assert determinism, exact resume, the artifact's provenance
and that only the tuned module runs on it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cogem import Reasoner, verify_trace
from cogem.errors import ArtifactError, HeldOutDataError, UsageError
from cogem.evals.suite import load_suite
from cogem.llm.base import ChatPrompt
from cogem.spec import Choice, ModuleSpec
from cogem.testing import fake_runtime
from cogem.trace import read_trace
from cogem.trace.events import LlmCall, ModuleStart
from cogem.tune import TuneConfig, apply_tuned, read_artifact, tune_module
from cogem.tune.checkpoint import POINTER

pytestmark = pytest.mark.integration

# A judge with only its closed-set choice: the random model never has to generate JSON.
JUDGE = ModuleSpec(
    name="judge",
    purpose="Decide whether the action is acceptable, wrong or unclear (tests).",
    reads=["scenario"],
    writes=["verdict", "verdict_probs"],
    choice=Choice(
        field="verdict",
        probs_field="verdict_probs",
        options=["acceptable", "wrong", "unclear"],
        prompt="Scenario:\n{scenario}\n\nIs it acceptable, wrong, or unclear? ({options})",
    ),
)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from cogem.llm.model_files import embedded_gguf_path, ensure_gguf_cache

    source, _ = ensure_gguf_cache(embedded_gguf_path())
    tokenizer = AutoTokenizer.from_pretrained(str(source))
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    folder = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def ethics(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ethics")
    (root / "justice").mkdir()
    for split in ("train", "test", "test_hard"):
        rows = ["label,scenario"] + [
            f"{(i // 2) % 2},I deserve reward {i} because I did task {i % 7}." for i in range(48)
        ]
        (root / "justice" / f"justice_{split}.csv").write_text("\n".join(rows) + "\n")
    return root


def _tune(out: Path, model: Path, data: Path, on_step: Any = None, **overrides: Any) -> Any:
    settings: dict[str, Any] = dict(
        module="judge", steps=4, batch_size=4, lr=1e-3, max_items=32, val_fraction=0.25,
        checkpoint_every=2, threads=1, seed=3,
    )  # fmt: skip
    settings.update(overrides)
    return tune_module(
        JUDGE, load_suite("ethics_justice"), TuneConfig(**settings), out=out, data=data,
        model=str(model), on_step=on_step,
    )  # fmt: skip


def test_same_seed_same_weights_and_exact_resume(tmp_path: Path, tiny_model: Path, ethics: Path) -> None:
    first = _tune(tmp_path / "a", tiny_model, ethics)
    again = _tune(tmp_path / "b", tiny_model, ethics)
    assert first.artifact_sha256 == again.artifact_sha256
    other = _tune(tmp_path / "c", tiny_model, ethics, seed=4)
    assert other.artifact_sha256 != first.artifact_sha256

    class Stop(Exception):
        pass

    def stop_at_3(report: Any) -> None:
        if report.step == 3:
            raise Stop

    with pytest.raises(Stop):
        _tune(tmp_path / "d", tiny_model, ethics, on_step=stop_at_3)
    saved = sorted(p.name for p in (tmp_path / "d").rglob("*") if p.is_file())
    # No pickle anywhere in a checkpoint: safetensors and JSON only.
    assert POINTER in saved and any(n.endswith("optimizer.safetensors") for n in saved)
    assert all(name.endswith((".safetensors", ".json")) for name in saved), saved
    with pytest.raises(UsageError, match="different tuning run"):
        _tune(tmp_path / "d", tiny_model, ethics, lr=5e-4)
    resumed = _tune(tmp_path / "d", tiny_model, ethics)
    assert resumed.resumed_from == 2
    assert resumed.artifact_sha256 == first.artifact_sha256
    assert not (tmp_path / "d" / POINTER).exists()  # checkpoints go once the artifact is written
    with pytest.raises(UsageError, match="finished artifact"):
        _tune(tmp_path / "d", tiny_model, ethics)


def test_manifest_records_provenance(tmp_path: Path, tiny_model: Path, ethics: Path) -> None:
    from cogem.llm.model_files import file_sha256
    from cogem.tune.data import ids_sha256

    result = _tune(tmp_path / "a", tiny_model, ethics)
    manifest, ref = read_artifact(result.out)
    assert ref.sha256 == manifest.artifact_sha256 == result.artifact_sha256
    assert set(manifest.weight_files) == {"adapter_model.safetensors"}
    assert manifest.base_model["model_id"] == str(tiny_model.resolve())
    train_file = ethics.resolve() / "justice" / "justice_train.csv"
    assert [(d.path, d.sha256) for d in manifest.datasets] == [(str(train_file), file_sha256(train_file))]
    items = json.loads((result.out / "items.json").read_text())
    assert manifest.items.train_ids_sha256 == ids_sha256(items["train"])
    assert manifest.items.train_count + manifest.items.val_count == 32
    assert all("/train/" in i for i in items["train"] + items["held_out"])
    assert [p.step for p in manifest.curve] == [1, 2, 3, 4]
    assert manifest.held_out_before is not None and manifest.held_out_after is not None
    assert manifest.config.seed == 3 and manifest.module_spec_sha256 == JUDGE.spec_hash


def test_test_split_is_refused_before_loading_a_model(tmp_path: Path, ethics: Path) -> None:
    with pytest.raises(HeldOutDataError):
        tune_module(
            JUDGE, load_suite("ethics_justice"), TuneConfig(module="judge", steps=1),
            out=tmp_path / "x", data=ethics, splits=["test"], model="/nonexistent",
        )  # fmt: skip


def test_lora_runs_only_its_module_and_audit_catches_a_swap(
    tmp_path: Path, tiny_model: Path, ethics: Path
) -> None:
    from cogem.llm.transformers_backend import TransformersLLM

    result = _tune(tmp_path / "art", tiny_model, ethics)
    base = TransformersLLM.load(str(tiny_model))
    prompt = ChatPrompt(user="Scenario:\nI kept the change.\n\nIs it acceptable?")
    options = ["acceptable", "wrong", "unclear"]
    before = base.score_options(prompt, options).logprobs
    runtime = fake_runtime(base)
    assert [m.module for m in apply_tuned(runtime, [result.out], modules=["judge", "plan"])] == ["judge"]
    tuned = runtime.llm_for("judge")
    assert tuned.info.tuned is not None and tuned.info.tuned.sha256 == result.artifact_sha256
    assert runtime.llm_for("plan") is base
    assert tuned.score_options(prompt, options).logprobs != before
    assert base.score_options(prompt, options).logprobs == before  # base view: adapter off

    run = Reasoner.sequential([JUDGE]).run("I kept the change.", runtime, trace_path=tmp_path / "t.jsonl")
    assert verify_trace(run.trace_path).ok
    judged = [e for e in read_trace(run.trace_path) if isinstance(e, ModuleStart | LlmCall)]
    assert judged and all(e.artifact_sha256 == result.artifact_sha256 for e in judged)

    weights = result.out / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"\x00" * 8)
    report = verify_trace(run.trace_path)
    assert not report.ok and {p.rule for p in report.problems} == {"tuned"}
    with pytest.raises(ArtifactError, match="swapped"):
        read_artifact(result.out)


def test_full_artifact_is_a_model_folder(tmp_path: Path, tiny_model: Path, ethics: Path) -> None:
    from cogem.llm.transformers_backend import TransformersLLM

    result = _tune(tmp_path / "full", tiny_model, ethics, adapter="full", steps=2, lr=1e-4)
    runtime = fake_runtime(TransformersLLM.load(str(tiny_model)))
    apply_tuned(runtime, [result.out], whole_model=True)
    assert runtime.llm.info.tuned is not None
    assert runtime.llm.info.weights_sha256 == result.artifact_sha256
    with pytest.raises(ArtifactError, match="one --tuned"):
        apply_tuned(runtime, [result.out, result.out], whole_model=True)


def test_rederive_runs_the_tuned_module_on_its_artifact(
    tmp_path: Path, tiny_model: Path, ethics: Path
) -> None:
    from cogem.audit.replay import ReplayRefusedError, rederive_trace
    from cogem.cli.replay_cmd import _rederive_runtime
    from cogem.llm.transformers_backend import TransformersLLM

    result = _tune(tmp_path / "art", tiny_model, ethics)
    runtime = fake_runtime(TransformersLLM.load(str(tiny_model)))
    apply_tuned(runtime, [result.out])
    run = Reasoner.sequential([JUDGE]).run("I kept the change.", runtime, trace_path=tmp_path / "t.jsonl")

    again = _rederive_runtime(run.trace_path, str(tiny_model), console=None)
    tuned = again.llm_for("judge").info.tuned
    assert tuned is not None and tuned.sha256 == result.artifact_sha256
    redo = rederive_trace(run.trace_path, again, out=tmp_path / "redo.jsonl")
    assert redo.matches and redo.model_calls == 1, redo
    plain = fake_runtime(TransformersLLM.load(str(tiny_model)))
    assert not rederive_trace(run.trace_path, plain, out=tmp_path / "plain.jsonl").matches

    (result.out / "adapter_model.safetensors").unlink()
    with pytest.raises(ReplayRefusedError, match="fails the audit"):  # the artifact changed
        _rederive_runtime(run.trace_path, str(tiny_model), console=None)

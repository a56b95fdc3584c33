"""The transformers backend against the real embedded model (SmolLM2-135M-Instruct GGUF).

Never assert what the tiny model answers: it is near chance on judgments. Assert the contract:
schema validity, determinism, exact option log-likelihoods, typed errors.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from cogem.errors import ModelNotFoundError, UsageError
from cogem.llm import LLM, ChatPrompt, model_files
from cogem.llm.transformers_backend import TransformersLLM, _grammar_schema

PROMPT = ChatPrompt(
    system="You are a careful moral reasoner. Answer in JSON.",
    user="A friend asks you to lie to their boss for them. What do you do?",
)

ENUM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "verdict": {"enum": ["acceptable", "wrong", "unclear"]},
        "reason": {"type": "string", "maxLength": 40},
    },
    "required": ["verdict", "reason"],
    "additionalProperties": False,
}
ARRAY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "steps": {
            "type": "array",
            "items": {"type": "string", "maxLength": 12},
            "minItems": 1,
            "maxItems": 2,
        }
    },
    "required": ["steps"],
    "additionalProperties": False,
}
SHORT_STRING_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"summary": {"type": "string", "minLength": 1, "maxLength": 8}},
    "required": ["summary"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def llm() -> TransformersLLM:
    # The real default cache, so a test session dequantizes at most once per machine.
    return TransformersLLM.load()


# --- resolution errors (no model load) ------------------------------------------------------


def test_missing_path_raises_model_not_found(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelNotFoundError, match="does not exist") as info:
        TransformersLLM.load(str(missing))
    assert str(missing) in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("setting", ["./nope", "~/nope/model", "/definitely/not/here"])
def test_path_like_settings_are_not_hub_ids(setting: str) -> None:
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        model_files.resolve_model(setting)


def test_dir_without_safetensors_is_refused(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelNotFoundError, match=r"no \*\.safetensors"):
        TransformersLLM.load(str(tmp_path))
    (tmp_path / "pytorch_model.bin").write_bytes(b"not really a pickle")
    with pytest.raises(ModelNotFoundError, match="pickle"):
        TransformersLLM.load(str(tmp_path))


def test_bounded_strings_compile_to_valid_json_only() -> None:
    import xgrammar
    from xgrammar.testing import _is_grammar_accept_string

    schema = {"type": "string", "minLength": 1, "maxLength": 5}
    grammar = xgrammar.Grammar.from_json_schema(
        json.dumps(_grammar_schema(schema)), any_whitespace=False
    )
    assert _is_grammar_accept_string(grammar, '"abcde"')
    assert not _is_grammar_accept_string(grammar, '"abcdef"')
    assert not _is_grammar_accept_string(grammar, '""')
    assert not _is_grammar_accept_string(grammar, '"a\tb"')  # a raw TAB is not JSON
    long = {"type": "string", "maxLength": 300}  # too big for xgrammar's regex path
    assert _grammar_schema(long) == long


@pytest.mark.skipif(
    os.environ.get("HF_HUB_OFFLINE") != "1", reason="needs HF_HUB_OFFLINE=1 to fail fast"
)
def test_unknown_hub_id_offline_is_model_not_found() -> None:
    with pytest.raises(ModelNotFoundError, match="cogem-test/no-such-model"):
        TransformersLLM.load("cogem-test/no-such-model")


def test_importing_cogem_llm_stays_light() -> None:
    code = (
        "import sys, cogem.llm, cogem.llm.model_files; "
        "heavy = {'torch', 'transformers', 'xgrammar'} & set(sys.modules); "
        "assert not heavy, heavy; "
        "assert 'TransformersLLM' in cogem.llm.__all__"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_setting_resolution() -> None:
    for setting in (None, "default", "embedded", " Embedded "):
        location = model_files.resolve_model(setting)
        assert location.source == "embedded-gguf"
        assert location.model_id == "embedded:SmolLM2-135M-Instruct.Q4_1.gguf"
    hub = model_files.resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct")
    assert (hub.source, hub.model_id) == ("hub", "HuggingFaceTB/SmolLM2-135M-Instruct")


def test_grammar_schema_rewrites_only_bounded_strings() -> None:
    rewritten = _grammar_schema(ENUM_SCHEMA)
    reason = rewritten["properties"]["reason"]
    assert "maxLength" not in reason
    assert reason["pattern"].endswith("{0,40}$")
    assert rewritten["properties"]["verdict"] == ENUM_SCHEMA["properties"]["verdict"]
    const = {"const": {"maxLength": 3}}
    assert _grammar_schema(const) == const


# --- the real model ---------------------------------------------------------------------------


@pytest.mark.integration
def test_info(llm: TransformersLLM) -> None:
    assert isinstance(llm, LLM)
    info = llm.info
    assert info.source == "embedded-gguf"
    assert info.model_id == "embedded:SmolLM2-135M-Instruct.Q4_1.gguf"
    gguf = model_files.embedded_gguf_path()
    assert info.weights_sha256 == model_files.file_sha256(gguf)
    assert len(info.weights_sha256) == 64
    assert info.dtype == "float32"
    assert info.parameters is not None and 130_000_000 < info.parameters < 140_000_000


@pytest.mark.integration
@pytest.mark.parametrize("schema", [ENUM_SCHEMA, ARRAY_SCHEMA, SHORT_STRING_SCHEMA])
def test_constrained_generation_validates(llm: TransformersLLM, schema: dict[str, Any]) -> None:
    generation = llm.generate(PROMPT, schema=schema, max_new_tokens=96)
    assert generation.finish_reason == "stop", generation.text
    jsonschema.validate(json.loads(generation.text), schema)
    assert generation.prompt_text == llm.render(PROMPT)
    assert generation.prompt_text.endswith("<|im_start|>assistant\n")
    assert generation.prompt_tokens > 0 and 0 < generation.completion_tokens <= 96


@pytest.mark.integration
def test_generation_is_deterministic_and_reports_length(llm: TransformersLLM) -> None:
    first = llm.generate(PROMPT, max_new_tokens=12)
    second = llm.generate(PROMPT, max_new_tokens=12)
    assert first.text == second.text
    assert first.completion_tokens == 12
    assert first.finish_reason == "length"


@pytest.mark.integration
def test_too_long_prompt_is_a_usage_error(llm: TransformersLLM) -> None:
    with pytest.raises(UsageError, match="context window"):
        llm.generate("word " * 9000, max_new_tokens=1)


@pytest.mark.integration
def test_raw_prompt_is_used_verbatim(llm: TransformersLLM) -> None:
    generation = llm.generate("The capital of France is", max_new_tokens=3)
    assert generation.prompt_text == "The capital of France is"
    assert generation.prompt_tokens == len(llm._encode("The capital of France is"))


def _brute_force_logprob(llm: TransformersLLM, prompt_text: str, option: str) -> float:
    """Independent reference: lm-eval's tokenization, one uncached forward per option."""
    import torch

    context = prompt_text.rstrip()
    moved = prompt_text[len(context) :]
    context_ids = llm._encode(context)
    continuation = llm._encode(context + moved + option)[len(context_ids) :]
    ids = torch.tensor([context_ids + continuation])
    with torch.inference_mode():
        logits = llm._model(input_ids=ids, use_cache=False).logits[0].double()
    logsoft = torch.log_softmax(logits, dim=-1)
    return sum(
        float(logsoft[len(context_ids) - 1 + k, token]) for k, token in enumerate(continuation)
    )


@pytest.mark.integration
@pytest.mark.parametrize(
    ("prompt", "options"),
    [
        (PROMPT, ["acceptable", "wrong", "it depends on the situation"]),
        ("Q: Is honesty important?\nA:", [" Yes", " No", " Only sometimes, when it matters"]),
    ],
)
def test_score_options_is_exact(llm: TransformersLLM, prompt: Any, options: list[str]) -> None:
    scores = llm.score_options(prompt, options)
    assert scores.options == options
    assert math.isclose(math.fsum(scores.probs), 1.0, abs_tol=1e-9)
    assert all(lp <= 0.0 for lp in scores.logprobs)
    assert scores.option_tokens[-1] > 1  # the multi-token path through the cache is exercised
    for option, logprob in zip(options, scores.logprobs, strict=True):
        assert logprob == pytest.approx(
            _brute_force_logprob(llm, scores.prompt_text, option), abs=1e-4
        )
    assert llm.score_options(prompt, options).logprobs == scores.logprobs


@pytest.mark.integration
@pytest.mark.parametrize("options", [[], ["a", "a"], ["a", ""], "ab"])
def test_score_options_rejects_bad_options(llm: TransformersLLM, options: Any) -> None:
    with pytest.raises(UsageError):
        llm.score_options(PROMPT, options)


@pytest.mark.integration
def test_fresh_cache_round_trips_bit_identical(
    llm: TransformersLLM, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Build a cache in a tmp dir from a fresh dequantization; loading it gives the same logits
    as the in-memory dequantized model, bit for bit, and a second load reuses it."""
    import torch

    gguf = model_files.embedded_gguf_path()
    model, tokenizer = model_files._dequantize(gguf)
    monkeypatch.setenv("COGEM_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(model_files, "_dequantize", lambda _path: (model, tokenizer))
    cached = TransformersLLM.load()
    folder = model_files.gguf_cache_dir(cached.info.weights_sha256)
    assert folder.parent == tmp_path / "models"
    assert (folder / "model.safetensors").is_file()
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # no staging left behind

    text = cached.render(PROMPT)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert cached._encode(text) == ids
    with torch.inference_mode():
        expected = model(input_ids=torch.tensor([ids])).logits
        got = cached._model(input_ids=torch.tensor([ids])).logits
    assert torch.equal(expected, got)

    def no_dequantize(_path: Path) -> Any:
        raise AssertionError("a complete cache must not be rebuilt")

    monkeypatch.setattr(model_files, "_dequantize", no_dequantize)
    again = TransformersLLM.load()
    assert again.info == cached.info
    assert again.info.weights_sha256 == llm.info.weights_sha256


@pytest.mark.integration
def test_local_dir_setting_loads_a_plain_model_folder(llm: TransformersLLM) -> None:
    """The dequantized cache is an ordinary safetensors folder: loading it as a local model
    (the path any user model takes) gives the same scores and a folder weights hash."""
    folder = model_files.gguf_cache_dir(llm.info.weights_sha256)
    local = TransformersLLM.load(str(folder))
    assert local.info.source == "local-dir"
    assert local.info.model_id == str(folder.resolve())
    assert local.info.weights_sha256 == model_files.dir_weights_sha256(folder)
    assert local.info.parameters == llm.info.parameters
    options = ["acceptable", "wrong"]
    assert (
        local.score_options(PROMPT, options).logprobs == llm.score_options(PROMPT, options).logprobs
    )

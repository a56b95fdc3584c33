"""The whole default reasoner against a real schema-enforcing server: llama-cpp-python's
OpenAI-compatible server on loopback, serving the embedded SmolLM2 GGUF, started and stopped by
the ``llama_served_llm`` fixture.

It enforces ``response_format`` (in its ``json_object`` + ``schema`` form) and echoes prompt
log-probabilities, so with the embedded chat template rendered client-side the judge's verdict is
scored exactly, and ``cogem run`` and ``cogem eval`` finish with schema-valid, auditable traces.
"""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import jsonschema
import pytest

from cogem.evals.log import read_manifest, read_samples
from cogem.llm.base import ChatPrompt
from cogem.llm.chat_template import ChatTemplate
from cogem.llm.openai_backend import OpenAICompatibleLLM
from cogem.trace import read_trace, verify_trace
from cogem.trace.events import LlmCall, ModuleEnd, RunStart
from tests.integration.served import ServedModel, llama_served_llm, run_cogem

pytestmark = pytest.mark.integration

__all__ = ["llama_served_llm"]  # the fixture, re-exported so pytest finds it in this module

SCENARIO = "I found a wallet on the street and kept the cash."
SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["action", "harm"],
    "properties": {
        "action": {"type": "string", "minLength": 1, "maxLength": 80},
        "harm": {"type": "string", "enum": ["none", "some", "severe"]},
    },
}


# llama-cpp-python takes the schema in its json_object form and one request at a time.
LLAMA_ENV = {"COGEM_LLM_SCHEMA_FORMAT": "json_object", "COGEM_LLM_CONCURRENCY": "1"}


def _cogem(*args: str, home: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return run_cogem(*args, home=home, env=LLAMA_ENV, timeout=timeout)


def _check_trace(trace: Path, served: ServedModel, home: Path) -> list[ModuleEnd]:
    events = read_trace(trace)
    start = events[0]
    assert isinstance(start, RunStart)
    assert start.manifest.model["model_id"] == f"{served.url}#{served.model}"
    assert verify_trace(trace).ok
    audit = _cogem("audit", str(trace), home=home)
    assert audit.returncode == 0, audit.stdout + audit.stderr
    ends = [e for e in events if isinstance(e, ModuleEnd)]
    for end in ends:
        jsonschema.validate(end.output, end.output_schema)
    return ends


def test_backend_enforced_schema_and_exact_chat_scoring(llama_served_llm: ServedModel) -> None:
    served = llama_served_llm
    template = ChatTemplate.load("embedded")
    llm = OpenAICompatibleLLM.connect(
        served.url, served.model, schema_format="json_object", chat_template=template,
        schema_retries=0,
    )  # fmt: skip
    try:
        prompt = ChatPrompt(system="Reply with JSON only.", user=f"Describe: {SCENARIO}")
        first = llm.generate(prompt, schema=SCHEMA, max_new_tokens=80)
        # No retry allowed: the server's grammar alone made the reply valid.
        jsonschema.validate(json.loads(first.text), SCHEMA)
        assert llm.generate(prompt, schema=SCHEMA, max_new_tokens=80).text == first.text

        verdict = ChatPrompt(system="Judge the action.", user=f"{SCENARIO}\nVerdict:")
        scores = llm.score_options(verdict, ["acceptable", "wrong", "unclear"])
        # The scored text is the chat template's rendering, assistant turn open.
        assert scores.prompt_text == template.render(verdict)
        assert scores.prompt_text.endswith("<|im_start|>assistant\n")
        assert math.isclose(sum(scores.probs), 1.0, abs_tol=1e-9)
        assert all(lp < 0 for lp in scores.logprobs) and min(scores.option_tokens) >= 1
        # Asked again, the server scores nearly the same: llama.cpp reuses the cached prefix of
        # the previous prompt, so its quantized kernels run on other batch shapes (~0.1 nats).
        again = llm.score_options(verdict, ["acceptable", "wrong", "unclear"])
        assert all(abs(a - b) < 0.5 for a, b in zip(again.logprobs, scores.logprobs, strict=True))
    finally:
        llm.close()


def test_cogem_run_against_llama_server_finishes_with_a_schema_valid_trace(
    llama_served_llm: ServedModel, tmp_path: Path
) -> None:
    trace = tmp_path / "run.jsonl"
    done = _cogem(
        "run", "--llm-url", llama_served_llm.url, "--llm-chat-template", "embedded",
        "--trace", str(trace), SCENARIO, home=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    ends = _check_trace(trace, llama_served_llm, tmp_path)
    assert [e.module for e in ends] == ["perceive", "recall", "judge", "plan"]
    scored = [
        e for e in read_trace(trace) if isinstance(e, LlmCall) and e.call == "score_options"
    ]
    assert len(scored) == 1 and scored[0].module == "judge"
    assert scored[0].probs is not None and math.isclose(sum(scored[0].probs), 1.0, abs_tol=1e-9)


# A user's reasoner, as a user writes one: the judge alone, with a short prompt of its own.
# (llama-cpp-python echoes prompt log-probabilities slowly, ~30 ms a token, in Python, so the
# default reasoner's ~330-token judge prompt costs ~45 s an item; `cogem run` above runs it.)
QUICK_JUDGE = """
from cogem.engine.graph import END, START, Reasoner
from cogem.spec import ModuleSpec, load_specs


def quick_judge() -> Reasoner:
    data = load_specs()["judge"].model_dump(mode="json")
    choice = {**data["choice"], "prompt": "{scenario}\\nIs this acceptable, wrong or unclear?"}
    data.update(
        system="Judge briefly.", reads=["scenario"], untrusted=[], prompt="", output_schema=None,
        choice=choice, writes=[choice["field"], choice["probs_field"]],
    )
    spec = ModuleSpec.model_validate(data)
    return Reasoner([spec], inputs=("scenario",)).add_edge(START, "judge").add_edge("judge", END)
"""


def test_twenty_item_eval_against_llama_server_links_valid_traces(
    llama_served_llm: ServedModel, tmp_path: Path
) -> None:
    reasoner = tmp_path / "quick_judge.py"
    reasoner.write_text(QUICK_JUDGE)
    out = tmp_path / "eval"
    done = _cogem(
        "eval", "vignettes", "--reasoner", f"{reasoner}:quick_judge", "--limit", "20",
        "--out", str(out), "--llm-url", llama_served_llm.url, "--llm-chat-template", "embedded",
        home=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert read_manifest(out).model["source"] == "http"
    samples = read_samples(out)
    assert len(samples) == 20 and len({s.item_id for s in samples}) == 20
    for sample in samples:
        assert sample.error is None, sample.error
        assert sample.probs is not None and math.isclose(sum(sample.probs), 1.0, abs_tol=1e-6)
        assert sample.trace is not None
        ends = _check_trace(out / sample.trace, llama_served_llm, tmp_path)
        assert [e.module for e in ends] == ["judge"]
        (scored,) = [
            e
            for e in read_trace(out / sample.trace)
            if isinstance(e, LlmCall) and e.call == "score_options"
        ]
        assert scored.prompt_text.endswith("<|im_start|>assistant\n")

"""Tuned modules in traces: the artifact's hash in every record of its module, checked by audit.

Fakes only: a tuned view is a fake LLM whose info names an artifact folder made here.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cogem import Reasoner, verify_trace
from cogem.artifacts import TunedArtifactRef, artifact_sha256
from cogem.llm.base import Generation, ModelInfo, OptionScores, Prompt
from cogem.testing import SchemaFillingLLM, fake_runtime
from cogem.trace import read_trace
from cogem.trace.events import LlmCall, ModuleStart, RunStart

SCENARIO = "I borrowed my neighbour's ladder and returned it broken without saying anything."


class _TunedFake:
    """A fake model view that says it runs a tuned artifact."""

    def __init__(self, inner: SchemaFillingLLM, ref: TunedArtifactRef) -> None:
        self._inner = inner
        self._info = inner.info.model_copy(update={"tuned": ref})

    @property
    def info(self) -> ModelInfo:
        return self._info

    def generate(self, prompt: Prompt, **kw: Any) -> Generation:
        return self._inner.generate(prompt, **kw)

    def score_options(self, prompt: Prompt, options: Sequence[str]) -> OptionScores:
        return self._inner.score_options(prompt, options)


def _artifact(folder: Path, base_sha: str) -> TunedArtifactRef:
    folder.mkdir()
    (folder / "adapter_model.safetensors").write_bytes(b"the tuned weights")
    sha = artifact_sha256(folder)
    assert sha is not None
    return TunedArtifactRef(
        module="judge", sha256=sha, path=str(folder), adapter="lora",
        base_sha256=base_sha, manifest_sha256="1" * 64,
    )  # fmt: skip


def _tuned_run(tmp_path: Path, on_event: Any = None) -> tuple[Path, TunedArtifactRef]:
    runtime = fake_runtime()
    ref = _artifact(tmp_path / "artifact", runtime.llm.info.weights_sha256)
    runtime.module_llms["judge"] = _TunedFake(SchemaFillingLLM(), ref)
    if on_event is not None:
        on_event = on_event(runtime)
    result = Reasoner.default().run(
        SCENARIO, runtime, trace_path=tmp_path / "t.jsonl", on_event=on_event
    )
    return result.trace_path, ref


def test_every_record_of_the_tuned_module_names_the_artifact(tmp_path: Path) -> None:
    trace, ref = _tuned_run(tmp_path)
    assert verify_trace(trace).ok
    events = read_trace(trace)
    start = events[0]
    assert isinstance(start, RunStart)
    assert start.manifest.tuned == {"judge": ref}
    steps = [e for e in events if isinstance(e, ModuleStart | LlmCall)]
    judge = [e for e in steps if e.module == "judge"]
    assert judge and all(e.artifact_sha256 == ref.sha256 for e in judge)
    assert any(isinstance(e, LlmCall) and e.call == "score_options" for e in judge)
    assert all(e.artifact_sha256 is None for e in steps if e.module != "judge")


def test_audit_fails_when_the_artifact_is_swapped(tmp_path: Path) -> None:
    trace, ref = _tuned_run(tmp_path)
    (Path(ref.path) / "adapter_model.safetensors").write_bytes(b"other weights")
    report = verify_trace(trace)
    assert not report.ok
    assert {p.rule for p in report.problems} == {"tuned"}
    assert "swapped" in report.problems[0].message
    done = subprocess.run(
        [sys.executable, "-m", "cogem", "audit", str(trace)], capture_output=True, text=True
    )
    assert done.returncode == 1 and "swapped" in done.stdout


def test_audit_passes_without_the_artifact_file(tmp_path: Path) -> None:
    # An auditor without the weights still sees which artifact ran (its hash is in the trace).
    trace, ref = _tuned_run(tmp_path)
    (Path(ref.path) / "adapter_model.safetensors").unlink()
    Path(ref.path).rmdir()
    assert verify_trace(trace).ok


def test_audit_fails_when_a_record_does_not_name_the_listed_artifact(tmp_path: Path) -> None:
    def untune_after_start(runtime: Any) -> Any:
        def on_event(event: Any) -> None:
            if isinstance(event, RunStart):  # the manifest lists the artifact; the steps won't
                runtime.module_llms.clear()

        return on_event

    trace, _ = _tuned_run(tmp_path, on_event=untune_after_start)
    report = verify_trace(trace)
    assert report.problems and {p.rule for p in report.problems} == {"tuned"}
    assert all("judge" in p.message for p in report.problems)


def test_untuned_traces_carry_no_tuned_fields(tmp_path: Path) -> None:
    # Untuned runs are written exactly as before tuned modules existed.
    result = Reasoner.default().run(SCENARIO, fake_runtime(), trace_path=tmp_path / "t.jsonl")
    text = result.trace_path.read_text(encoding="utf-8")
    assert '"artifact_sha256"' not in text and '"tuned"' not in text
    assert verify_trace(result.trace_path).ok


def test_a_tuned_run_replays(tmp_path: Path) -> None:
    from cogem.audit.replay import replay_trace

    trace, _ = _tuned_run(tmp_path)
    result = replay_trace(trace, out=tmp_path / "replay.jsonl")
    assert result.matches and result.model_calls == 0, result
    assert verify_trace(result.replay_trace_path).ok


def test_audit_fails_when_a_lora_artifact_has_another_base(tmp_path: Path) -> None:
    runtime = fake_runtime()
    ref = _artifact(tmp_path / "artifact", "f" * 64)  # tuned from weights the run did not use
    runtime.module_llms["judge"] = _TunedFake(SchemaFillingLLM(), ref)
    result = Reasoner.default().run(SCENARIO, runtime, trace_path=tmp_path / "t.jsonl")
    report = verify_trace(result.trace_path)
    assert [p.rule for p in report.problems] == ["tuned"]
    assert "other base weights" in report.problems[0].message

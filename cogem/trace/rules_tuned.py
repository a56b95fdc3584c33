"""Tuned-module rule: every record of a tuned module names its artifact, and the artifact file is
still the one the run used.

The manifest's ``tuned`` map says which module ran on which artifact (SHA-256 of its weight files,
and the folder it was read from). Where that folder exists on the auditing machine, its weights
are hashed again, byte for byte, and a mismatch means the artifact was swapped or changed after
the run. Where it does not exist the hash in the trace still proves *which* weights ran; an
auditor who later obtains the artifact can check it against that hash.
"""

from __future__ import annotations

from pathlib import Path

from cogem.artifacts import artifact_sha256
from cogem.trace.events import LlmCall, ModuleStart
from cogem.trace.rules_base import Problem, Records, manifest_of

__all__ = ["tuned_artifacts"]


def tuned_artifacts(records: Records) -> list[Problem]:
    """Every step and model call of a tuned module names the artifact the manifest lists for it
    (and untuned modules name none); a LoRA artifact's base is the run's model; and an artifact
    folder still present hashes to what the run used."""
    manifest = manifest_of(records)
    if manifest is None:
        return []
    found: list[Problem] = []
    start = records[0][0]
    tuned = manifest.tuned
    base_sha = manifest.model.get("weights_sha256")
    for name, ref in tuned.items():
        if ref.module != name:
            found.append(_problem(start, f"record {start}: tuned artifact listed for module {name!r} was tuned for {ref.module!r}"))
        if ref.adapter == "lora" and ref.base_sha256 != base_sha:
            found.append(_problem(start, f"record {start}: the LoRA artifact of module {name!r} was tuned from other base weights than the run's model"))
        folder = Path(ref.path)
        if folder.is_dir():
            actual = artifact_sha256(folder)
            if actual != ref.sha256:
                found.append(
                    _problem(
                        start,
                        f"record {start}: the artifact of module {name!r} at {ref.path!r} now hashes to {str(actual)[:12]}…, not the {ref.sha256[:12]}… the run used: it was swapped or changed",
                    )
                )
    for index, event in records:
        if not isinstance(event, ModuleStart | LlmCall):
            continue
        expected = tuned[event.module].sha256 if event.module in tuned else None
        if event.artifact_sha256 != expected:
            what = "the base model" if expected is None else f"artifact {expected[:12]}…"
            found.append(
                _problem(
                    index,
                    f"record {index}: module {event.module!r} names artifact {str(event.artifact_sha256)[:12]}…, but the manifest says it ran on {what}",
                )
            )
    return found


def _problem(index: int, message: str) -> Problem:
    return Problem(index=index, rule="tuned", message=message)

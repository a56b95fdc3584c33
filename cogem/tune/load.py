"""Run modules on tuned artifacts: ``apply_tuned`` puts artifacts into a runtime.

* In a reasoner, an artifact applies to its own module only (``Runtime.module_llms``); every
  other module keeps the base model. A LoRA artifact is loaded onto the runtime's model once and
  switched on only inside that module's calls; a full artifact is a second model.
* For ``--reasoner direct`` (no modules: one scored call per item) the artifact replaces the
  runtime's model for every call.

Either way the model view's ``info.tuned`` names the artifact, so run manifests, every trace
record of the module and eval manifests record its SHA-256.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cogem.engine.runtime import Runtime
from cogem.errors import ArtifactError
from cogem.llm.base import LLM
from cogem.tune.artifact import read_artifact
from cogem.tune.records import TuneManifest

__all__ = ["apply_tuned", "load_tuned_llm"]


def load_tuned_llm(base: LLM, directory: str | Path, *, dtype: str | None = None) -> LLM:
    """A model view running the artifact in ``directory`` on top of ``base``.

    LoRA: ``base`` must be an in-process transformers model with the weights the adapter was
    tuned from (checked by SHA-256). Full: the artifact is its own model folder.
    """
    from cogem.llm.transformers_backend import TransformersLLM

    manifest, ref = read_artifact(directory)
    if not isinstance(base, TransformersLLM):
        raise ArtifactError(
            f"tuned artifact path={ref.path!r} needs the in-process transformers backend; the "
            f"runtime's model is {base.info.model_id!r} ({base.info.source})"
        )
    if ref.adapter == "lora":
        if base.info.weights_sha256 != ref.base_sha256:
            raise ArtifactError(
                f"the LoRA adapter in path={ref.path!r} was tuned from weights "
                f"{ref.base_sha256[:12]}… ({manifest.base_model.get('model_id')}), but the "
                f"runtime's model {base.info.model_id!r} has {base.info.weights_sha256[:12]}…; "
                "run with --model set to that base model"
            )
        info = base.info.model_copy(
            update={"model_id": f"{base.info.model_id}+lora:{ref.path}", "tuned": ref}
        )
        return base.with_adapter(ref.path, name=f"tuned_{ref.module}_{ref.sha256[:12]}", info=info)
    full = TransformersLLM.load(ref.path, seed=base.seed, dtype=dtype or base.info.dtype)
    if full.info.weights_sha256 != ref.sha256:  # a full artifact is a model folder: same scheme
        raise ArtifactError(f"the model loaded from path={ref.path!r} is not the artifact's")
    return full.with_info(full.info.model_copy(update={"tuned": ref}))


def apply_tuned(
    runtime: Runtime,
    directories: Sequence[str | Path],
    *,
    whole_model: bool = False,
    modules: Sequence[str] | None = None,
) -> list[TuneManifest]:
    """Load each artifact into ``runtime``; return their manifests.

    ``whole_model`` (for ``--reasoner direct``): the single artifact replaces ``runtime.llm``.
    Otherwise each artifact serves its own module; ``modules`` (the reasoner's) lets a module
    name the reasoner does not have fail here instead of silently doing nothing.
    """
    if whole_model and len(directories) > 1:
        raise ArtifactError(
            "--reasoner direct scores with one model: give one --tuned artifact, or use a "
            "reasoner to run several tuned modules"
        )
    tuned: list[TuneManifest] = []
    for directory in directories:
        manifest, _ = read_artifact(directory)
        if manifest.module in {m.module for m in tuned}:
            raise ArtifactError(f"two artifacts are for module {manifest.module!r}; give one")
        if not whole_model and modules is not None and manifest.module not in modules:
            raise ArtifactError(
                f"artifact path={str(directory)!r} tunes module {manifest.module!r}, which the "
                f"reasoner does not have ({', '.join(modules)})"
            )
        view = load_tuned_llm(runtime.llm, directory, dtype=runtime.settings.dtype)
        if whole_model:
            runtime.llm = view
        else:
            runtime.module_llms[manifest.module] = view
        tuned.append(manifest)
    return tuned

"""Tuned modules: fit the model behind one module to labeled human judgments, with provenance.

``tune_module`` trains (LoRA via peft, or full fine-tuning) on the module's own prompt and options
and writes an artifact folder (safetensors weights + ``manifest.json``); ``apply_tuned`` runs a
module on it. Importing this package is cheap: torch and peft load inside the functions.
"""

from cogem.tune.artifact import read_artifact
from cogem.tune.load import apply_tuned, load_tuned_llm
from cogem.tune.records import CurvePoint, HeldOutScores, TuneConfig, TuneManifest
from cogem.tune.train import StepReport, TuneResult, tune_module

__all__ = [
    "CurvePoint",
    "HeldOutScores",
    "StepReport",
    "TuneConfig",
    "TuneManifest",
    "TuneResult",
    "apply_tuned",
    "load_tuned_llm",
    "read_artifact",
    "tune_module",
]

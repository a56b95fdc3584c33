"""Typed records of a tuning run: its configuration, training curve, held-out scores, manifest.

Everything ``cogem tune`` writes besides the weights is one of these models as JSON, so every
reader validates what it reads. Nothing here imports torch.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cogem.evals.records import DatasetFile

__all__ = [
    "MANIFEST_FILE",
    "CurvePoint",
    "HeldOutScores",
    "ItemSelection",
    "TuneConfig",
    "TuneManifest",
]

MANIFEST_FILE = "manifest.json"
ITEMS_FILE = "items.json"


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TuneConfig(_Record):
    """Hyperparameters and data selection: everything that decides the weights besides the data
    files and the base model. A resume must present the same config."""

    module: str
    adapter: Literal["lora", "full"] = "lora"
    prompt_format: Literal["module", "suite"] = Field(
        default="module",
        description="module: the module's own choice prompt and options (what a reasoner "
        "scores); suite: the suite's direct prompt and choices (what `--reasoner direct` scores)",
    )
    steps: int | None = Field(default=None, ge=1, description="optimizer steps; or give epochs")
    epochs: float | None = Field(default=None, gt=0)
    batch_size: int = Field(default=16, ge=1, le=512)
    lr: float = Field(default=2e-4, gt=0, le=1.0)
    warmup_steps: int = Field(default=0, ge=0)
    weight_decay: float = Field(default=0.0, ge=0.0)
    max_grad_norm: float = Field(default=1.0, gt=0)
    lora_r: int = Field(default=16, ge=1, le=512)
    lora_alpha: int = Field(default=32, ge=1)
    lora_targets: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    seed: int = 0
    max_items: int | None = Field(
        default=None, ge=2, description="use a seeded sample of this many items (whole groups)"
    )
    val_fraction: float = Field(default=0.05, ge=0.0, lt=1.0)
    val_max_items: int = Field(default=400, ge=0, description="cap on held-out items")
    eval_every: int = Field(default=0, ge=0, description="held-out loss every N steps; 0: never")
    checkpoint_every: int = Field(default=50, ge=1)
    bf16: bool = Field(default=False, description="bfloat16 autocast for forward/backward")
    threads: int | None = Field(default=None, ge=1, description="torch threads (None: torch's)")

    @model_validator(mode="after")
    def _steps_or_epochs(self) -> TuneConfig:
        if (self.steps is None) == (self.epochs is None):
            raise ValueError("give exactly one of steps or epochs")
        return self


class CurvePoint(_Record):
    step: int = Field(ge=1)
    loss: float = Field(description="mean loss of the step's batch (nats per option token)")
    lr: float
    elapsed_s: float
    val_loss: float | None = None


class HeldOutScores(_Record):
    """Option scoring of the held-out slice of the training file, as the suite's choices."""

    n: int
    accuracy: float | None
    auroc: float | None
    group_exact_match: float | None
    loss: float | None = Field(description="mean -log p(correct option) per option token")
    metrics: dict[str, Any] = Field(
        default_factory=dict, description="the same with bootstrap CIs (MetricValue dumps)"
    )


class ItemSelection(_Record):
    """Which items trained and which were held out: ids in ``items.json``, hashes here."""

    train_count: int
    train_ids_sha256: str
    val_count: int
    val_ids_sha256: str
    items_file_sha256: str


class TuneManifest(_Record):
    """``manifest.json`` of a tuned artifact: what shaped the weights, and how it went."""

    format: Literal[1] = 1
    module: str
    module_spec_sha256: str = Field(description="spec_hash of the module tuned (prompt + options)")
    adapter: Literal["lora", "full"]
    artifact_sha256: str = Field(description="cogem.artifacts.artifact_sha256 of the weights")
    weight_files: dict[str, str] = Field(description="file name -> SHA-256")
    base_model: dict[str, Any] = Field(description="ModelInfo of the base model")
    suite: str
    suite_sha256: str
    verdict_map: dict[str, int] = Field(description="module option -> suite choice index")
    datasets: list[DatasetFile]
    splits: list[str]
    items: ItemSelection
    config: TuneConfig
    total_steps: int
    curve: list[CurvePoint]
    held_out_before: HeldOutScores | None
    held_out_after: HeldOutScores | None
    packages: dict[str, str]
    torch_threads: int
    train_seconds: float
    created_at: str

"""Eval suites: a TOML file names the dataset, the prompt and options, and the metrics.

Built-in suites live in ``evals/suites/*.toml``; a user's own suite is a file with the same
fields, passed by path. A suite is data, not code: its prompt templates are rendered in a
sandboxed Jinja environment, so a suite file cannot run Python.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cogem.canonical import sha256_json
from cogem.errors import ConfigError
from cogem.evals.datasets import load_ethics, load_table
from cogem.evals.records import DatasetFile, EvalItem
from cogem.paths import bundled_dir

__all__ = ["Suite", "SuiteConfig", "list_suites", "load_suite"]

_ENV = SandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=True, autoescape=False)


class _Cfg(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(_Cfg):
    loader: Literal["ethics", "table"]
    # ethics
    subset: str | None = None
    splits: list[str] = Field(default_factory=lambda: ["test", "test_hard"])
    util_mode: Literal["pair", "each"] = "pair"
    # table
    path: str | None = Field(default=None, description="relative to the suite file; --data overrides")
    format: Literal["csv", "jsonl"] | None = None
    fields: dict[str, str] = Field(default_factory=dict, description="template field -> column")
    target: str = "label"
    labels: dict[str, int] | None = None
    id_column: str | None = None
    group_column: str | None = None
    subset_column: str | None = None
    split_column: str | None = None

    @model_validator(mode="after")
    def _check(self) -> DataConfig:
        if self.loader == "ethics" and not self.subset:
            raise ValueError("the ethics loader needs `subset`")
        if self.loader == "table" and not self.fields:
            raise ValueError("the table loader needs `fields` (template field -> column)")
        return self


class PromptConfig(_Cfg):
    template: str = Field(description="Jinja template over the item's fields; scored verbatim")
    choices: list[str] = Field(min_length=2, description="continuations scored after the prompt")
    positive: int = Field(default=1, ge=0, description="choice index of the positive class")

    @model_validator(mode="after")
    def _check(self) -> PromptConfig:
        if self.positive >= len(self.choices):
            raise ValueError(f"positive={self.positive} but there are {len(self.choices)} choices")
        if len(set(self.choices)) != len(self.choices):
            raise ValueError("choices must be distinct")
        return self


class ReasonerConfig(_Cfg):
    """How a modular reasoner answers this suite: the scenario it is given, and which of its
    verdicts count as which choice. Verdicts not listed (e.g. "unclear") are dropped and the
    rest renormalized, so the reasoner is scored on the same closed set as ``direct``."""

    scenario: str
    verdicts: dict[str, int] = Field(min_length=1)
    probs_field: str = "verdict_probs"


class SuiteConfig(_Cfg):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    data: DataConfig
    prompt: PromptConfig
    reasoner: ReasonerConfig | None = None
    metrics: list[str] = Field(
        default_factory=lambda: ["accuracy", "balanced_accuracy", "ece", "brier", "auroc"]
    )
    probe_field: str | None = Field(
        default=None, description="the item field metamorphic probes rewrite (default: input/scenario)"
    )

    @model_validator(mode="after")
    def _check(self) -> SuiteConfig:
        n = len(self.prompt.choices)
        if self.reasoner is not None:
            bad = {v: i for v, i in self.reasoner.verdicts.items() if not 0 <= i < n}
            if bad:
                raise ValueError(f"reasoner.verdicts point outside the {n} choices: {bad}")
        return self


class Suite:
    """A loaded suite: its config, where it came from, and template rendering."""

    def __init__(self, config: SuiteConfig, source: Path) -> None:
        self.config = config
        self.source = source
        try:
            self._prompt = _ENV.from_string(config.prompt.template)
            self._scenario = (
                _ENV.from_string(config.reasoner.scenario) if config.reasoner else None
            )
        except TemplateError as exc:
            raise ConfigError(f"bad template: {exc}", path=str(source), field="prompt") from exc

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def sha256(self) -> str:
        return sha256_json(self.config.model_dump(mode="json"))

    def prompt(self, item: EvalItem) -> str:
        return self._render(self._prompt, item, "prompt.template")

    def scenario(self, item: EvalItem) -> str:
        if self._scenario is None:
            raise ConfigError(
                f"suite {self.name!r} has no [reasoner] section, so only --reasoner direct can "
                "answer it (add `reasoner.scenario` and `reasoner.verdicts` to the suite file)",
                path=str(self.source), field="reasoner",
            )  # fmt: skip
        return self._render(self._scenario, item, "reasoner.scenario")

    def _render(self, template: Any, item: EvalItem, where: str) -> str:
        try:
            return str(template.render(**item.fields))
        except TemplateError as exc:
            raise ConfigError(
                f"{where} cannot be rendered for item {item.id!r}: {exc}",
                path=str(self.source), field=where,
            ) from exc  # fmt: skip

    def load_items(self, data: Path | None = None) -> tuple[list[EvalItem], list[DatasetFile]]:
        """The suite's items in order. ``data`` is the ETHICS root folder (ethics loader) or the
        table file (table loader); it replaces the suite's own ``path``."""
        cfg = self.config.data
        if cfg.loader == "ethics":
            if data is None:
                raise ConfigError(
                    f"suite {self.name!r} reads ETHICS: pass --data DIR, the folder holding "
                    "commonsense/, deontology/, justice/, utilitarianism/ and virtue/",
                    field="data",
                )
            assert cfg.subset is not None  # checked by DataConfig
            items, files = load_ethics(data, cfg.subset, cfg.splits, util_mode=cfg.util_mode)
        else:
            path = data if data is not None else self._table_path()
            items, files = load_table(
                path, fields=cfg.fields, target=cfg.target, labels=cfg.labels,
                id_column=cfg.id_column, group_column=cfg.group_column,
                subset_column=cfg.subset_column, split_column=cfg.split_column, fmt=cfg.format,
            )  # fmt: skip
        n = len(self.config.prompt.choices)
        for item in items:
            if item.target >= n:
                raise ConfigError(
                    f"item {item.id!r} has target {item.target} but the suite has {n} choices",
                    path=str(self.source),
                )
        return items, files

    def _table_path(self) -> Path:
        if self.config.data.path is None:
            raise ConfigError(f"suite {self.name!r} has no data.path: pass --data FILE", field="data")
        path = Path(self.config.data.path)
        return path if path.is_absolute() else self.source.parent / path


def _suites_dir() -> Path:
    return bundled_dir("evals") / "suites"


def list_suites() -> list[str]:
    """Names of the built-in suites."""
    return sorted(p.stem for p in _suites_dir().glob("*.toml"))


def load_suite(name_or_path: str | Path) -> Suite:
    """A built-in suite by name (see :func:`list_suites`) or a suite file by path."""
    path = Path(name_or_path)
    if not path.is_file():
        path = _suites_dir() / f"{name_or_path}.toml"
        if not path.is_file():
            raise ConfigError(
                f"no suite {str(name_or_path)!r}: give a suite file or one of: "
                f"{', '.join(list_suites())}",
                field="suite",
            )
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"suite file is not valid TOML: {exc}", path=str(path)) from exc
    try:
        config = SuiteConfig.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{first['msg']}", path=str(path), field=where or None) from exc
    return Suite(config, path)

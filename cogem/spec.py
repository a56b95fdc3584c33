"""Module specs: the declarative description of one cognitive module.

A spec says everything a module can do: what it is for, which state fields it reads and writes,
its prompt, its output schema, how closed-set choices are decided and its bounds. Built-in specs
live in ``modules/<name>.toml``; users can build the same :class:`ModuleSpec` in Python. The spec's
canonical-JSON SHA-256 goes into every trace record it produces.
"""

from __future__ import annotations

import string
import tomllib
from functools import cached_property
from pathlib import Path
from typing import Any

import jsonschema
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cogem.canonical import sha256_json
from cogem.errors import ConfigError
from cogem.memory.base import MemoryKind
from cogem.paths import bundled_dir
from cogem.schema import dependencies
from cogem.scoring import ScoringWeights

__all__ = [
    "Bounds",
    "Choice",
    "MemoryWriteSpec",
    "ModuleSpec",
    "RetrievalSpec",
    "load_spec",
    "load_specs",
]

_NAME = r"^[a-z][a-z0-9_]{0,39}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Bounds(_Strict):
    """Hard limits on one module step."""

    max_new_tokens: int = Field(default=128, ge=1, le=4096)
    retries: int = Field(default=1, ge=0, le=5, description="extra attempts after invalid output")
    temperature: float = Field(default=0.0, ge=0.0, le=0.0, description="only greedy is supported")


class Choice(_Strict):
    """A closed-set field decided by option scoring, not by free generation."""

    field: str = Field(pattern=_NAME)
    probs_field: str = Field(pattern=_NAME)
    options: list[str] = Field(min_length=2, max_length=16)
    prompt: str = Field(
        min_length=1, description="question appended for scoring; may use {options}"
    )

    @model_validator(mode="after")
    def _unique(self) -> Choice:
        if len(set(self.options)) != len(self.options) or any(not o.strip() for o in self.options):
            raise ValueError("options must be unique and non-empty")
        return self


class RetrievalSpec(_Strict):
    """Memory search run after the module's generation, with the query taken from a field."""

    query_field: str = Field(pattern=_NAME)
    k: int = Field(default=4, ge=1, le=50)
    hits_field: str = Field(default="memories", pattern=_NAME)
    ids_field: str = Field(default="recalled_ids", pattern=_NAME)
    kinds: list[MemoryKind] | None = Field(default=None, description="only these kinds")
    weights: ScoringWeights = Field(default_factory=ScoringWeights)


class MemoryWriteSpec(_Strict):
    """A memory record written at the end of the step (e.g. the episode a run just lived).

    The record id is derived from the run id, the step and the text, so a repeated or resumed
    step writes the same record again instead of a duplicate.
    """

    text: str = Field(min_length=1, description="template over read and produced fields")
    kind: MemoryKind = "episodic"
    importance: float = Field(default=0.5, ge=0.0, le=1.0)
    id_field: str = Field(default="memory_id", pattern=_NAME, description="state field for the id")


class ModuleSpec(_Strict):
    """One cognitive module. See ``modules/*.toml`` for the built-in ones."""

    name: str = Field(pattern=_NAME)
    version: str = "1"
    purpose: str = Field(min_length=1)
    reads: list[str]
    writes: list[str]
    untrusted: list[str] = Field(default_factory=list, description="read fields quoted as data")
    system: str = ""
    prompt: str = Field(default="", description="user turn for generation; {field} placeholders")
    output_schema: dict[str, Any] | None = None
    choice: Choice | None = None
    retrieval: RetrievalSpec | None = None
    memory_write: MemoryWriteSpec | None = None
    bounds: Bounds = Field(default_factory=Bounds)

    @model_validator(mode="after")
    def _consistent(self) -> ModuleSpec:
        _check_consistency(self)
        return self

    @cached_property
    def spec_hash(self) -> str:
        """SHA-256 of the spec's canonical JSON: proves which prompt and schema ran."""
        return sha256_json(self.model_dump(mode="json"))

    @property
    def generates(self) -> bool:
        return bool(self.output_schema and self.output_schema.get("properties"))

    def produced_fields(self) -> list[str]:
        fields: list[str] = []
        if self.choice:
            fields += [self.choice.field, self.choice.probs_field]
        if self.output_schema:
            fields += list(self.output_schema.get("properties", {}))
        if self.retrieval:
            fields += [self.retrieval.hits_field, self.retrieval.ids_field]
        if self.memory_write:
            fields.append(self.memory_write.id_field)
        return fields

    def full_output_schema(self, generation_schema: dict[str, Any] | None) -> dict[str, Any]:
        """Schema of everything the module writes, given its generation schema as resolved."""
        props: dict[str, Any] = {}
        if self.choice:
            props[self.choice.field] = {"type": "string", "enum": list(self.choice.options)}
            props[self.choice.probs_field] = {
                "type": "object",
                "properties": {
                    o: {"type": "number", "minimum": 0, "maximum": 1} for o in self.choice.options
                },
                "required": list(self.choice.options),
                "additionalProperties": False,
            }
        if generation_schema:
            props.update(generation_schema.get("properties", {}))
        if self.retrieval:
            props[self.retrieval.hits_field] = {
                "type": "array",
                "maxItems": self.retrieval.k,
                "items": _HIT_SCHEMA,
            }
            props[self.retrieval.ids_field] = {
                "type": "array",
                "maxItems": self.retrieval.k,
                "items": {"type": "string"},
            }
        if self.memory_write:
            props[self.memory_write.id_field] = {"type": "string", "minLength": 1}
        return {
            "type": "object",
            "properties": props,
            "required": list(props),
            "additionalProperties": False,
        }


_UNIT = {"type": "number", "minimum": 0, "maximum": 1}
_HIT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "text": {"type": "string"},
        "kind": {"type": "string"},
        "source": {"type": "string"},
        "score": _UNIT,
        "distance": {"type": "number"},
    },
    "required": ["id", "text", "kind", "source", "score", "distance"],
    "additionalProperties": False,
}


def _template_fields(template: str) -> set[str]:
    try:
        return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise ValueError(f"bad template: {exc}") from None


def _check_consistency(spec: ModuleSpec) -> None:
    # Raised as ValueError so pydantic reports it with the spec's location; load_spec turns it into
    # a ConfigError naming the file and field.
    reads = set(spec.reads)
    choice_fields = {spec.choice.field, spec.choice.probs_field} if spec.choice else set()
    for field, template, allowed in [
        ("prompt", spec.prompt, reads | choice_fields),
        ("choice.prompt", spec.choice.prompt if spec.choice else "", reads | {"options"}),
    ]:
        unknown = _template_fields(template) - allowed
        if unknown:
            raise ValueError(f"{field}: placeholders {sorted(unknown)} are not declared in reads")
    if spec.memory_write:
        produced_here = set(spec.produced_fields()) - {spec.memory_write.id_field}
        unknown = _template_fields(spec.memory_write.text) - reads - produced_here
        if unknown:
            raise ValueError(
                f"memory_write.text: placeholders {sorted(unknown)} are neither read nor produced"
            )
    if not set(spec.untrusted) <= reads:
        raise ValueError("untrusted: every untrusted field must also be in reads")
    if spec.output_schema is not None:
        if spec.output_schema.get("type") != "object":
            raise ValueError("output_schema: must be a JSON schema of type 'object'")
        try:
            jsonschema.Draft202012Validator.check_schema(spec.output_schema)
        except jsonschema.SchemaError as exc:
            raise ValueError(f"output_schema: not a valid JSON schema: {exc.message}") from None
        missing = dependencies(spec.output_schema) - reads - choice_fields
        if missing:
            raise ValueError(
                f"output_schema: x-cogem fields {sorted(missing)} are not declared in reads"
            )
    if not spec.choice and not spec.generates:
        raise ValueError("output_schema: a module needs a choice or generated fields")
    if spec.generates and not spec.prompt.strip():
        raise ValueError("prompt: a module that generates fields needs a prompt")
    if spec.retrieval:
        generated = set((spec.output_schema or {}).get("properties", {}))
        if spec.retrieval.query_field not in generated | reads:
            raise ValueError("retrieval.query_field: must be a generated or read field")
    produced = spec.produced_fields()
    if len(set(produced)) != len(produced):
        raise ValueError(f"writes: the module produces a field twice: {produced}")
    if sorted(produced) != sorted(spec.writes):
        raise ValueError(
            f"writes: must list exactly the fields the module produces: {sorted(produced)}"
        )
    if set(spec.writes) & reads:
        raise ValueError("writes: a module may not write a field it reads")


def load_spec(path: Path | str) -> ModuleSpec:
    """Load one module spec from a TOML file; a bad file raises :class:`ConfigError`."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read module spec: {exc.strerror}", path=str(path)) from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"module spec is not valid TOML: {exc}", path=str(path)) from exc
    try:
        spec = ModuleSpec.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or None
        message = err["msg"].removeprefix("Value error, ")
        field = loc or (message.split(":", 1)[0] if ":" in message else None)
        raise ConfigError(f"invalid module spec: {message}", path=str(path), field=field) from exc
    if spec.name != path.stem:
        raise ConfigError(
            f"spec name {spec.name!r} must match the file name", path=str(path), field="name"
        )
    return spec


def load_specs(directory: Path | str | None = None) -> dict[str, ModuleSpec]:
    """Load every ``*.toml`` spec in ``directory`` (default: the bundled ``modules/``)."""
    root = Path(directory) if directory is not None else bundled_dir("modules")
    if not root.is_dir():
        raise ConfigError("module spec directory not found", path=str(root))
    return {spec.name: spec for spec in (load_spec(p) for p in sorted(root.glob("*.toml")))}

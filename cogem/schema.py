"""JSON-schema helpers shared by the module runtime and the spec loader.

Specs may use two cogem extensions that are resolved against the run state right before a call,
so constraints that depend on earlier steps are enforced *by the decoder*, not hoped for:

- ``"x-cogem-enum-from": "<field>"`` — the value must be one of the strings in state ``field``
  (e.g. judge may only cite memory ids that recall retrieved in this run);
- ``"x-cogem-const-from": {"field": "<field>", "map": {...}}`` — the value is fixed by mapping state
  ``field`` (e.g. the plan's stance follows the verdict).

Objects generate their properties in the order of their ``required`` list: canonical JSON sorts
keys, but arrays keep their order, so the generation order survives hashing and replay.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import jsonschema

from cogem.errors import OutputValidationError, RunError

__all__ = [
    "CONST_FROM",
    "ENUM_FROM",
    "dependencies",
    "editable_fields",
    "parse_and_validate",
    "resolve_schema",
    "validation_error",
]

ENUM_FROM = "x-cogem-enum-from"
CONST_FROM = "x-cogem-const-from"


def dependencies(schema: Any) -> set[str]:
    """State fields a schema's cogem extensions read."""
    found: set[str] = set()
    if isinstance(schema, dict):
        if isinstance(schema.get(ENUM_FROM), str):
            found.add(schema[ENUM_FROM])
        const = schema.get(CONST_FROM)
        if isinstance(const, dict) and isinstance(const.get("field"), str):
            found.add(const["field"])
        for value in schema.values():
            found |= dependencies(value)
    elif isinstance(schema, list):
        for value in schema:
            found |= dependencies(value)
    return found


def resolve_schema(schema: Mapping[str, Any], state: Mapping[str, Any]) -> dict[str, Any]:
    """Return a plain JSON schema with cogem extensions replaced by values from ``state``."""
    return _resolve(dict(schema), state)  # type: ignore[no-any-return]


def _resolve(node: Any, state: Mapping[str, Any]) -> Any:
    if isinstance(node, list):
        return [_resolve(item, state) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: _resolve(v, state) for k, v in node.items() if k not in (ENUM_FROM, CONST_FROM)}
    if ENUM_FROM in node:
        values = state.get(node[ENUM_FROM]) or []
        out["enum"] = [str(v) for v in values]
    if CONST_FROM in node:
        spec = node[CONST_FROM]
        source = state.get(spec["field"])
        mapping = spec.get("map")
        value = mapping.get(source) if isinstance(mapping, dict) else source
        if value is None:
            raise RunError(
                f"cannot resolve {CONST_FROM}: state field {spec['field']!r} is {source!r}, "
                "which the map does not cover"
            )
        out["enum"] = [value]
    if out.get("type") == "array" and out.get("items", {}).get("enum") == []:
        # Nothing may be chosen: an empty array is the only valid value. Say so directly, since an
        # empty enum is unsatisfiable and grammar compilers reject it.
        out["maxItems"] = 0
        out["items"] = {"type": "string"}
    if isinstance(out.get("properties"), dict):
        order = [name for name in out.get("required", []) if name in out["properties"]]
        order += [name for name in out["properties"] if name not in order]
        out["properties"] = {name: out["properties"][name] for name in order}
    return out


def editable_fields(schema: Mapping[str, Any] | None) -> list[str]:
    """The generated text fields a human may replace when approving: strings and lists of strings
    that the state does not fix (no ``x-cogem-const-from``/``x-cogem-enum-from``), so an edit can
    never break a derived field such as a plan's stance."""
    found = []
    for name, prop in ((schema or {}).get("properties") or {}).items():
        if not isinstance(prop, Mapping) or CONST_FROM in prop or ENUM_FROM in prop:
            continue
        items = prop.get("items")
        text_list = (
            prop.get("type") == "array"
            and isinstance(items, Mapping)
            and items.get("type") == "string"
            and ENUM_FROM not in items
            and "enum" not in items
        )
        if (
            prop.get("type") == "string" and "enum" not in prop and "const" not in prop
        ) or text_list:
            found.append(name)
    return found


def validation_error(instance: Any, schema: Mapping[str, Any]) -> str | None:
    """The first validation error message, or None when ``instance`` is valid."""
    error = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(schema).iter_errors(instance)
    )
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "(root)"
    return f"at {where}: {error.message}"


def parse_and_validate(text: str, schema: Mapping[str, Any], *, module: str) -> dict[str, Any]:
    """Parse model output as JSON and validate it; raise :class:`OutputValidationError` otherwise."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise OutputValidationError(
            f"module {module!r}: output is not valid JSON ({exc.msg} at char {exc.pos})"
        ) from exc
    if not isinstance(value, dict):
        raise OutputValidationError(f"module {module!r}: output is not a JSON object")
    problem = validation_error(value, schema)
    if problem:
        raise OutputValidationError(f"module {module!r}: output fails its schema {problem}")
    return value

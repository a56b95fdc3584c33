from __future__ import annotations

import pytest

from cogem.errors import OutputValidationError, RunError
from cogem.schema import parse_and_validate, resolve_schema

CITES = {
    "type": "object",
    "required": ["reason", "cited_ids"],
    "properties": {
        "cited_ids": {
            "type": "array",
            "items": {"type": "string", "x-cogem-enum-from": "recalled_ids"},
        },
        "reason": {"type": "string"},
    },
}


def test_enum_from_state_restricts_citations() -> None:
    resolved = resolve_schema(CITES, {"recalled_ids": ["a", "b"]})
    assert resolved["properties"]["cited_ids"]["items"] == {"type": "string", "enum": ["a", "b"]}
    assert parse_and_validate('{"reason":"r","cited_ids":["a"]}', resolved, module="judge")
    with pytest.raises(OutputValidationError, match="judge"):
        parse_and_validate('{"reason":"r","cited_ids":["zzz"]}', resolved, module="judge")


def test_nothing_retrieved_means_no_citations() -> None:
    resolved = resolve_schema(CITES, {"recalled_ids": []})
    assert resolved["properties"]["cited_ids"]["maxItems"] == 0
    with pytest.raises(OutputValidationError):
        parse_and_validate('{"reason":"r","cited_ids":["a"]}', resolved, module="judge")


def test_properties_follow_required_order() -> None:
    assert list(resolve_schema(CITES, {})["properties"]) == ["reason", "cited_ids"]


def test_const_from_maps_state() -> None:
    schema = {
        "type": "string",
        "x-cogem-const-from": {"field": "verdict", "map": {"wrong": "refrain"}},
    }
    assert resolve_schema(schema, {"verdict": "wrong"}) == {"type": "string", "enum": ["refrain"]}
    with pytest.raises(RunError, match="verdict"):
        resolve_schema(schema, {"verdict": "odd"})


@pytest.mark.parametrize("text", ["", "not json", "[1, 2]", '{"reason": 3, "cited_ids": []}'])
def test_invalid_output_is_a_typed_error(text: str) -> None:
    with pytest.raises(OutputValidationError):
        parse_and_validate(text, resolve_schema(CITES, {"recalled_ids": []}), module="judge")

from __future__ import annotations

from pathlib import Path

import pytest

from cogem.errors import ConfigError
from cogem.paths import bundled_dir
from cogem.spec import ModuleSpec, load_spec, load_specs


def test_bundled_specs_load() -> None:
    specs = load_specs()
    assert set(specs) == {"perceive", "recall", "judge", "plan", "remember"}
    judge = specs["judge"]
    assert judge.choice is not None and judge.choice.options == ["acceptable", "wrong", "unclear"]
    assert "memories" in judge.untrusted
    assert len({s.spec_hash for s in specs.values()}) == 5


def test_spec_hash_is_stable_and_tracks_content() -> None:
    judge = load_specs()["judge"]
    again = load_spec(bundled_dir("modules") / "judge.toml")
    assert judge.spec_hash == again.spec_hash
    changed = ModuleSpec.model_validate(
        {**judge.model_dump(), "prompt": judge.prompt + " Be brief."}
    )
    assert changed.spec_hash != judge.spec_hash


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


GOOD = """
name = "echo"
purpose = "test"
reads = ["scenario"]
writes = ["answer"]
prompt = "Say something about {scenario}"
[output_schema]
type = "object"
required = ["answer"]
properties = { answer = { type = "string", maxLength = 20 } }
"""


def test_python_and_toml_specs_are_the_same_thing(tmp_path: Path) -> None:
    from_file = load_spec(_write(tmp_path, "echo", GOOD))
    in_python = ModuleSpec(
        name="echo",
        purpose="test",
        reads=["scenario"],
        writes=["answer"],
        prompt="Say something about {scenario}",
        output_schema={
            "type": "object",
            "required": ["answer"],
            "properties": {"answer": {"type": "string", "maxLength": 20}},
        },
    )
    assert from_file.spec_hash == in_python.spec_hash


@pytest.mark.parametrize(
    ("text", "field"),
    [
        (GOOD.replace('reads = ["scenario"]', 'reads = "scenario"'), "reads"),
        (GOOD + "[bounds]\nmax_new_tokens = -5\n", "bounds.max_new_tokens"),
        (GOOD.replace("{scenario}", "{secret}"), "prompt"),
        (GOOD.replace('writes = ["answer"]', 'writes = ["answer", "extra"]'), "writes"),
        (GOOD.replace('type = "object"', 'type = "array"'), "output_schema"),
        (GOOD.replace('purpose = "test"', 'purpose = "test"\ncolour = "red"'), "colour"),
        (GOOD.replace('name = "echo"', 'name = "other"'), "name"),
    ],
)
def test_bad_spec_names_file_and_field(tmp_path: Path, text: str, field: str) -> None:
    path = _write(tmp_path, "echo", text)
    with pytest.raises(ConfigError) as info:
        load_spec(path)
    assert info.value.path == str(path)
    assert info.value.field == field
    assert str(path) in str(info.value)


def test_bad_toml_names_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "echo", "name = [unclosed")
    with pytest.raises(ConfigError, match="not valid TOML") as info:
        load_spec(path)
    assert info.value.path == str(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_spec(tmp_path / "nope.toml")

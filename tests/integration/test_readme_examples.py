from __future__ import annotations

import pytest

from tests.readme_blocks import blocks

pytestmark = pytest.mark.integration


def test_readme_custom_reasoner_example_runs() -> None:
    (example,) = [b for b in blocks("python") if "make_runtime()" in b]
    namespace: dict[str, object] = {}
    exec(compile(example, "README.md", "exec"), namespace)
    result = namespace["result"]
    assert result.state["again"] in {"yes", "no"}  # type: ignore[attr-defined]

from __future__ import annotations

from tests.readme_blocks import blocks


def test_readme_testing_example_runs_on_fakes() -> None:
    (example,) = [b for b in blocks("python") if "fake_runtime" in b and "def test_" in b]
    namespace: dict[str, object] = {}
    exec(compile(example, "README.md", "exec"), namespace)
    tests = [v for k, v in namespace.items() if k.startswith("test_") and callable(v)]
    assert tests
    for test in tests:
        test()


def test_readme_quick_start_has_exactly_two_commands() -> None:
    quick = blocks("bash")[:2]
    assert quick == ["make demo\n", "make test\n"]


def test_readme_check_reasoner_example_runs() -> None:
    (example,) = [b for b in blocks("python") if "check_reasoner(" in b]
    namespace: dict[str, object] = {}
    exec(compile(example, "README.md", "exec"), namespace)
    test = namespace["test_my_reasoner_keeps_every_invariant"]
    assert callable(test)
    test()


def test_readme_approval_example_runs(capsys: object) -> None:
    (example,) = [b for b in blocks("python") if "Decision.edit(" in b]
    namespace: dict[str, object] = {}
    exec(compile(example, "README.md", "exec"), namespace)
    assert namespace["result"].status == "ok"  # type: ignore[attr-defined]
    assert namespace["result"].state["steps"] == ["Return the wallet to its owner."]  # type: ignore[attr-defined]
    assert namespace["done"].status == "rejected"  # type: ignore[attr-defined]

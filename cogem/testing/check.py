"""``check_reasoner``: property-test a whole reasoner in one call from your own pytest test.

Needs ``hypothesis`` (``pip install 'cogem[testing]'``). Copy this into a test file::

    from cogem import ModuleSpec, Reasoner
    from cogem.testing import check_reasoner

    restate = ModuleSpec(
        name="restate", purpose="Restate the scenario in one sentence.",
        reads=["scenario"], writes=["summary"], prompt="Restate briefly:\n{scenario}",
        output_schema={"type": "object", "required": ["summary"], "additionalProperties": False,
                       "properties": {"summary": {"type": "string", "minLength": 1, "maxLength": 120}}},
    )
    honest = ModuleSpec(
        name="honest", purpose="Decide whether the situation involves dishonesty.",
        reads=["summary"], writes=["dishonest", "dishonest_probs"],
        choice={"field": "dishonest", "probs_field": "dishonest_probs", "options": ["yes", "no"],
                "prompt": "{summary}\nDoes this involve dishonesty? Answer {options}."},
    )

    def test_my_reasoner_keeps_every_invariant():
        check_reasoner(Reasoner.sequential([restate, honest]))  # 25 scenarios, on fakes

A property is any callable taking the trace path and returning the violations it finds
(:class:`~cogem.trace.Problem` s, or plain strings); :func:`default_properties` are every
invariant rule of :data:`cogem.trace.rules.RULES` plus a full :func:`~cogem.verify_trace`.
"""

from __future__ import annotations

import inspect
import itertools
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from cogem.engine.graph import Reasoner
from cogem.engine.runtime import Runtime
from cogem.errors import InputError
from cogem.properties import check_trace
from cogem.testing.strategies import scenarios as default_scenarios
from cogem.trace.rules import RULES, Problem, Rule
from cogem.trace.verify import verify_trace

__all__ = ["Property", "check_reasoner", "default_properties"]

Property = Callable[[Path], Iterable[Any]]
DEFAULT_SETTINGS = hypothesis_settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def _rule_property(name: str, rule: Rule) -> Property:
    def check(path: Path) -> list[Problem]:
        return check_trace(path, [rule])

    check.__name__ = name
    check.__doc__ = rule.__doc__
    return check


def _verify(path: Path) -> list[Problem]:
    """The full audit: hash chain, record schemas, run envelope and seal, and every rule."""
    return verify_trace(path).problems


_verify.__name__ = "verify_trace"


def default_properties() -> list[Property]:
    """One property per rule of :data:`~cogem.trace.rules.RULES`, then a full ``verify_trace``."""
    return [*(_rule_property(name, rule) for name, rule in RULES.items()), _verify]


def _violations(checks: Sequence[Property], path: Path) -> list[str]:
    """Readable lines for every violation, each (rule, record, message) once: the full audit
    repeats what the single rules found."""
    seen: dict[tuple[Any, Any, str], str] = {}
    for prop in checks:
        name = getattr(prop, "__name__", repr(prop))
        for found in prop(path):
            if isinstance(found, str):
                rule, index, message = name, None, found
            else:
                rule = getattr(found, "rule", None) or name
                index, message = (
                    getattr(found, "index", None),
                    str(getattr(found, "message", found)),
                )
            where = f"rule {rule!r}" + (f" (property {name!r})" if rule != name else "")
            where += f", record {index}" if isinstance(index, int) else ""
            seen.setdefault((rule, index, message), f"{where}: {message}")
    return list(seen.values())


def _runtime_factory(runtime: Any) -> Callable[[st.DataObject], Runtime]:
    if runtime is None:
        from cogem.testing import fake_runtime

        shared = fake_runtime()
        return lambda data: shared
    if isinstance(runtime, Runtime):
        return lambda data: runtime
    if not callable(runtime):
        raise TypeError(f"runtime must be a Runtime or a callable returning one, not {runtime!r}")
    if len(inspect.signature(runtime).parameters) >= 1:
        return lambda data: runtime(data)
    return lambda data: runtime()


def check_reasoner(
    reasoner: Reasoner,
    *,
    scenarios: st.SearchStrategy[str] | None = None,
    runtime: Runtime | Callable[..., Runtime] | None = None,
    properties: Sequence[Property] | None = None,
    settings: hypothesis_settings | None = None,
) -> None:
    """Run ``reasoner`` on many generated scenarios and check every trace with ``properties``.

    - ``scenarios``: a hypothesis strategy of scenario texts (default :func:`scenarios`). A
      scenario the run rejects up front with :class:`~cogem.errors.InputError` is fine; any other
      exception propagates, with the trace path added as a note.
    - ``runtime``: a :class:`~cogem.Runtime` (default: one ``fake_runtime()``), or a callable
      returning one, called per example; a callable taking one argument gets hypothesis's
      ``data`` object, so ``runtime=lambda data: fake_runtime(HypothesisLLM(data))`` explores
      any schema-valid model behaviour.
    - ``properties``: callables ``(trace_path) -> violations`` (default
      :func:`default_properties`).
    - ``settings``: a ``hypothesis.settings`` (default ``max_examples=25, deadline=None``).

    A violation raises ``AssertionError`` naming the scenario, the property, the rule and the
    record index, and hypothesis shrinks the scenario first. The failing trace is kept on disk.
    """
    checks = list(default_properties() if properties is None else properties)
    make_runtime = _runtime_factory(runtime)
    strategy = default_scenarios() if scenarios is None else scenarios
    workdir = Path(tempfile.mkdtemp(prefix="cogem-check-"))
    numbers = itertools.count()
    kept: list[Path] = []

    def keep(path: Path) -> None:
        # Keep only the latest failing trace: hypothesis replays the shrunk example last.
        for old in kept:
            old.unlink(missing_ok=True)
        kept[:] = [path]

    @given(scenario=strategy, data=st.data())
    def run_one(scenario: str, data: st.DataObject) -> None:
        path = workdir / f"example-{next(numbers)}.jsonl"
        try:
            reasoner.run(scenario, make_runtime(data), trace_path=path)
        except Exception as exc:
            if isinstance(exc, InputError) and not path.exists():
                return  # rejected before anything ran: an invalid scenario, not a failure
            if path.exists():  # raised mid-run (even an InputError): keep the evidence
                keep(path)
                exc.add_note(f"cogem trace of the failing run: {path}")
            raise
        problems = _violations(checks, path)
        if not problems:
            path.unlink()
            return
        keep(path)
        shown = scenario if len(scenario) <= 200 else f"{scenario[:200]}... ({len(scenario)} chars)"
        lines = "\n".join(f"  - {line}" for line in problems)
        raise AssertionError(
            f"reasoner broke {len(problems)} property check(s) on scenario {shown!r}:\n"
            f"{lines}\ntrace: {path}"
        )

    try:
        (settings or DEFAULT_SETTINGS)(run_one)()
    finally:
        if not kept:
            shutil.rmtree(workdir, ignore_errors=True)

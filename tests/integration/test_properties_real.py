"""check_reasoner on the real embedded model and real chromadb: every property holds.

Three examples take about a minute on an idle 2-core machine (~15 s per run of four modules).
"""

from __future__ import annotations

from pathlib import Path

import hypothesis
import pytest

from cogem import Reasoner, Settings, make_runtime
from cogem.testing.check import check_reasoner
from cogem.testing.strategies import scenarios

pytestmark = pytest.mark.integration


def test_default_reasoner_keeps_every_property_on_the_real_model(tmp_path: Path) -> None:
    runtime = make_runtime(Settings(home=tmp_path))
    check_reasoner(
        Reasoner.default(),
        runtime=runtime,
        # Short scenarios keep prefill cheap on 2 CPU cores; long ones are covered on fakes.
        scenarios=scenarios(max_size=400),
        # No shrinking: each shrink step would be another real-model run.
        settings=hypothesis.settings(
            max_examples=3,
            deadline=None,
            database=None,
            phases=[hypothesis.Phase.generate],
        ),
    )

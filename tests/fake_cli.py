"""Run the real `cogem` CLI on fakes, for tests that drive it as a subprocess or through a pty.

The CLI code runs unchanged; only the runtime factory is swapped (as a test would monkeypatch it)
for the schema-filling fake LLM and a persistent chroma store with hash embeddings under
COGEM_HOME, so memory writes survive a killed process. ``FAKE_LLM_DELAY`` (seconds) slows each
model call, to give a kill test a module to interrupt.

    python tests/fake_cli.py run --thread T --remember "scenario"
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cogem.engine
from cogem.cli import main
from cogem.engine.runtime import Runtime
from cogem.llm.base import Generation, OptionScores, Prompt
from cogem.settings import Settings
from cogem.testing import SchemaFillingLLM


class SlowLLM(SchemaFillingLLM):
    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    def generate(
        self, prompt: Prompt, *, schema: dict[str, Any] | None = None, max_new_tokens: int = 256
    ) -> Generation:
        time.sleep(self.delay)
        return super().generate(prompt, schema=schema, max_new_tokens=max_new_tokens)

    def score_options(self, prompt: Prompt, options: Sequence[str]) -> OptionScores:
        time.sleep(self.delay)
        return super().score_options(prompt, options)


def fake_make_runtime(settings: Settings | None = None, *, with_memory: bool = True) -> Runtime:
    from cogem.memory.chroma import ChromaMemory
    from cogem.memory.seed import seed_records
    from cogem.testing import HashEmbedding

    settings = settings or Settings.from_env()
    memory = ChromaMemory(Path(settings.home) / "fake-memory", embedding=HashEmbedding())
    if memory.count() == 0:
        memory.add(seed_records())
    llm = SlowLLM(float(os.environ.get("FAKE_LLM_DELAY", "0")))
    return Runtime(llm=llm, memory=memory, settings=settings)


if __name__ == "__main__":
    cogem.engine.make_runtime = fake_make_runtime  # type: ignore[assignment]
    main(sys.argv[1:])

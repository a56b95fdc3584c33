"""The reasoner engine: runtime, module steps, graphs and runs."""

from cogem.engine.graph import END, START, Reasoner
from cogem.engine.run import RunResult, run_reasoner
from cogem.engine.runtime import Runtime, make_runtime

__all__ = ["END", "START", "Reasoner", "RunResult", "Runtime", "make_runtime", "run_reasoner"]

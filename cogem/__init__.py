"""cogem: cognitive-emulation reasoners built from small, constrained, fully traced modules.

The public API is deliberately short; everything else is private modules. Names are resolved
lazily so ``cogem --help`` and ``cogem audit`` start without importing LangGraph or torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from cogem.errors import CogemError, ConfigError, RunError, UsageError

if TYPE_CHECKING:
    from cogem.engine import END, START, Reasoner, RunResult, Runtime, make_runtime
    from cogem.settings import Settings
    from cogem.spec import ModuleSpec, load_spec, load_specs
    from cogem.trace import AuditReport, verify_trace

__all__ = [
    "END",
    "START",
    "AuditReport",
    "CogemError",
    "ConfigError",
    "ModuleSpec",
    "Reasoner",
    "RunError",
    "RunResult",
    "Runtime",
    "Settings",
    "UsageError",
    "load_spec",
    "load_specs",
    "make_runtime",
    "verify_trace",
]

_LAZY = {
    "END": "cogem.engine",
    "START": "cogem.engine",
    "Reasoner": "cogem.engine",
    "RunResult": "cogem.engine",
    "Runtime": "cogem.engine",
    "make_runtime": "cogem.engine",
    "Settings": "cogem.settings",
    "ModuleSpec": "cogem.spec",
    "load_spec": "cogem.spec",
    "load_specs": "cogem.spec",
    "AuditReport": "cogem.trace",
    "verify_trace": "cogem.trace",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'cogem' has no attribute {name!r}")

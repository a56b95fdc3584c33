"""The one exception tree of cogem.

Two branches: :class:`UsageError` is the caller's mistake (bad input, bad config, missing file) and
the CLI exits 2 for it; :class:`RunError` is something that went wrong while running (a model
output that failed validation, a corrupt store) and the CLI exits 1. Messages name the thing and
say what to do, because they are printed to users without a traceback.
"""

from __future__ import annotations

__all__ = [
    "ApprovalError",
    "ArtifactError",
    "CheckpointError",
    "CogemError",
    "ConfigError",
    "GraphError",
    "HeldOutDataError",
    "InputError",
    "LLMServerError",
    "LoopBoundError",
    "MemoryStoreError",
    "ModelNotFoundError",
    "OutputValidationError",
    "RunError",
    "ScoringUnsupportedError",
    "ThreadError",
    "TraceError",
    "UsageError",
]


class CogemError(Exception):
    """Root of every error cogem raises on purpose."""


class UsageError(CogemError):
    """The caller asked for something that cannot work; fix the input and retry."""


class RunError(CogemError):
    """A run failed for a reason that is not the caller's input."""


class ConfigError(UsageError):
    """A module spec, setting or graph definition is invalid.

    ``path`` and ``field`` name where, so a user can go straight to the bad line.
    """

    def __init__(self, message: str, *, path: str | None = None, field: str | None = None) -> None:
        where = []
        if path is not None:
            where.append(f"path={path!r}")
        if field is not None:
            where.append(f"field={field!r}")
        super().__init__(f"{message} ({', '.join(where)})" if where else message)
        self.path = path
        self.field = field


class InputError(UsageError):
    """A scenario or other run input is unusable (empty, too long, wrong type)."""


class ModelNotFoundError(UsageError):
    """The requested model path or id cannot be found or loaded offline."""


class ScoringUnsupportedError(UsageError):
    """The model server cannot score options (it returns no log-probabilities for a prompt)."""


class GraphError(UsageError):
    """A reasoner graph is malformed (unknown node, unbounded loop, unreachable end)."""


class HeldOutDataError(UsageError):
    """Tuning was asked to read a test or hard-test split, which must stay held out."""


class ArtifactError(UsageError):
    """A tuned artifact is missing, incomplete, swapped or does not fit the model or module."""


class OutputValidationError(RunError):
    """A module's output did not validate against its schema after all retries."""


class LoopBoundError(RunError):
    """A bounded loop would have run past its declared bound."""


class MemoryStoreError(RunError):
    """The vector memory store could not be opened, read or written."""


class TraceError(RunError):
    """A trace file could not be written or read."""


class LLMServerError(RunError):
    """A model server refused a request or failed after the bounded retries.

    ``status`` is the HTTP status (None when no answer came back); ``transient`` says whether the
    failure was of a kind that was retried (connection, timeout, 429, 5xx).
    """

    def __init__(self, message: str, *, status: int | None = None, transient: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.transient = transient
class ThreadError(UsageError):
    """A durable run's thread cannot be started or resumed as asked (it exists, is finished, was
    started on another scenario, or does not exist)."""


class ApprovalError(UsageError):
    """A human decision is malformed (unknown decision, an edit that fails the plan's schema)."""


class CheckpointError(RunError):
    """A checkpoint store or checkpoint cannot be read or written.

    Never answered with a silent fresh start: resuming from a checkpoint that cannot be read would
    re-run steps and duplicate their side effects.
    """

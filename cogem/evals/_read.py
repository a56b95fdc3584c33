"""Read an eval directory's files into their typed records.

Report and compare read only through these functions. Nothing is skipped silently: a
file or line that does not parse is an :class:`InputError` naming the file and line.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from cogem.errors import InputError

# Manifest and samples are read by the eval log itself (one reader, with its crash rules).
from cogem.evals.log import read_manifest, read_samples
from cogem.evals.metrics import EvalSummary
from cogem.probes import ProbeSummary

__all__ = ["read_manifest", "read_probes", "read_samples", "read_summary"]
_PROBES = TypeAdapter(list[ProbeSummary])
_M = TypeVar("_M", bound=BaseModel)


def _why(err: ValidationError | ValueError) -> str:
    if isinstance(err, ValidationError) and err.errors():
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "record"
        more = f" (+{err.error_count() - 1} more)" if err.error_count() > 1 else ""
        return f"{where}: {first['msg']}{more}"
    return str(err).splitlines()[0] if str(err) else type(err).__name__


def _read_json(path: Path, model: type[_M]) -> _M:
    try:
        return model.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        raise InputError(
            f"no {path.name} in {str(path.parent)!r}; is this an eval directory?"
        ) from None
    except (ValidationError, ValueError) as err:
        raise InputError(f"{str(path)!r} is not a valid {path.name}: {_why(err)}") from None


def read_summary(eval_dir: Path) -> EvalSummary | None:
    """``summary.json``, or None when the run has not written it (yet)."""
    path = Path(eval_dir) / "summary.json"
    return _read_json(path, EvalSummary) if path.exists() else None


def read_probes(eval_dir: Path) -> list[ProbeSummary] | None:
    path = Path(eval_dir) / "probes.json"
    if not path.exists():
        return None
    try:
        return _PROBES.validate_json(path.read_bytes())
    except (ValidationError, ValueError) as err:
        raise InputError(f"{str(path)!r} is not a list of probe summaries: {_why(err)}") from None

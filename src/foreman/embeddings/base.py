"""The embedder interface, the similarity the routers and memory use, and names -> embedders."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING

from foreman.errors import ConfigError

if TYPE_CHECKING:  # numpy loads with the first vector: not on every CLI start
    import numpy as np

#: The embedder a name-less setting means: the bundled local model.
DEFAULT_EMBEDDER = "local"


class Embedder(ABC):
    """Turns texts into vectors whose cosine similarity says how alike they mean.

    Implementations return one L2-normalised ``float32`` row per text (so a dot product is
    the cosine) and never block the event loop: a local model runs in a worker thread.
    The same embedder must give the same vector for the same text: stored memories are
    compared with vectors made later, and ``name`` is stored beside them so vectors of
    different embedders are never compared.
    """

    #: Recorded with stored vectors, e.g. ``"local:all-MiniLM-L6-v2-int8"``.
    name: str

    @abstractmethod
    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        """A ``(len(texts), dim)`` array of unit vectors."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook, most embedders hold nothing
        """Release clients or sessions; safe to call more than once."""


def normalised(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (a zero row stays zero rather than dividing by zero)."""
    import numpy as np

    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.where(norms == 0, 1.0, norms)


def cosine(queries: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Cosine similarity of every query row with every key row (unit vectors assumed)."""
    import numpy as np

    return np.asarray(queries, dtype=np.float32) @ np.asarray(keys, dtype=np.float32).T


def embedder_of(name: str | None) -> Embedder:
    """The embedder a name means: ``local`` (the bundled MiniLM, the default), or
    ``openai:MODEL`` (an OpenAI-compatible endpoint: ``OPENAI_BASE_URL`` and
    ``OPENAI_API_KEY``, as the openai SDK reads them)."""
    from foreman.embeddings.local import LocalEmbedder
    from foreman.embeddings.remote import OpenAIEmbedder

    name = name or DEFAULT_EMBEDDER
    if name == "local":
        return LocalEmbedder()
    if name.startswith("openai:") and name.removeprefix("openai:"):
        return OpenAIEmbedder(name.removeprefix("openai:"))
    raise ConfigError(
        f"Unknown embedder {name!r}: use 'local' (the bundled model) or 'openai:MODEL'."
    )

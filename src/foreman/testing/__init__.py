"""Public test helpers: doubles for the model interface, and a conformance suite for stores.

``ScriptedModel`` tests orchestrations without a provider; ``WordsEmbedder`` gives the
embedding router and memory deterministic vectors without a model. The store conformance suite
(``foreman.testing.store_conformance``) checks a ``Store`` you wrote yourself; it needs
pytest, which foreman does not depend on, so it is imported only where you ask for it.
"""

from foreman.testing.embeddings import WordsEmbedder
from foreman.testing.scripted import Script, ScriptedModel, ScriptEntry

__all__ = ["Script", "ScriptEntry", "ScriptedModel", "WordsEmbedder"]

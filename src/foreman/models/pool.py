"""One model instance per name, shared by every worker that names it.

Sharing matters most for the local model, whose weights must be loaded once per process,
and for HTTP clients, whose connection pools are worth reusing.
"""

from __future__ import annotations

from collections.abc import Mapping

from foreman.models import aload_model, default_model_name, load_model
from foreman.models.base import Model


class ModelPool:
    """Resolves model names to instances, lazily; ``None`` means the pool's default."""

    def __init__(
        self, default: Model | str | None = None, known: Mapping[str, Model] | None = None
    ) -> None:
        self._models: dict[str, Model] = dict(known or {})
        if isinstance(default, Model):
            self._models.setdefault(default.name, default)
            self._default_name = default.name
        else:
            self._default_name = default or default_model_name()

    @property
    def default_name(self) -> str:
        return self._default_name

    @property
    def default(self) -> Model:
        return self.get(None)

    def get(self, name: str | None) -> Model:
        """The model ``name`` refers to, built on first use. Building imports its SDK
        (blocking): ``Orchestrator`` builds every model a run needs at construction, and
        async code naming a new one uses ``aget``."""
        name = name or self._default_name
        if name not in self._models:
            self._models[name] = load_model(name)
        return self._models[name]

    async def aget(self, name: str | None) -> Model:
        """``get`` that builds a new model in a worker thread, off the event loop."""
        name = name or self._default_name
        if name not in self._models:
            model = await aload_model(name)
            if name in self._models:  # built meanwhile by another task: keep one
                await model.aclose()
            else:
                self._models[name] = model
        return self._models[name]

    def known(self) -> dict[str, Model]:
        """The instances built so far, by name: a nested run's team shares them."""
        return dict(self._models)

    async def aclose(self) -> None:
        for model in self._models.values():
            await model.aclose()

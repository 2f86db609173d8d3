"""Model adapters behind one interface, and how a model name becomes a model.

Names: ``anthropic:<model>``, ``openai:<model>``, ``local`` (the bundled SmolLM2) or
``local:<path.gguf>``. Adapters are imported lazily so that, say, a user of the local model
never pays for importing the network SDKs.
"""

from __future__ import annotations

import asyncio
import os

from foreman.errors import ConfigError
from foreman.models.base import (
    Message,
    Model,
    ModelRequest,
    ModelResponse,
    StopReason,
    ToolCall,
    ToolChoice,
    ToolResult,
    ToolSpec,
    Usage,
)
from foreman.models.defaults import (
    DEFAULT_ANTHROPIC_MODEL,
    DEFAULT_CALL_TIMEOUT,
    DEFAULT_LOCAL_MODEL,
    DEFAULT_OPENAI_MODEL,
)

__all__ = [
    "DEFAULT_ANTHROPIC_MODEL",
    "DEFAULT_CALL_TIMEOUT",
    "DEFAULT_LOCAL_MODEL",
    "DEFAULT_OPENAI_MODEL",
    "Message",
    "Model",
    "ModelRequest",
    "ModelResponse",
    "StopReason",
    "ToolCall",
    "ToolChoice",
    "ToolResult",
    "ToolSpec",
    "Usage",
    "aload_model",
    "default_model_name",
    "load_model",
]


def default_model_name() -> str:
    """``FOREMAN_MODEL``, else Anthropic or OpenAI when their key is set, else the local model."""
    if name := os.environ.get("FOREMAN_MODEL"):
        return name
    if os.environ.get("ANTHROPIC_API_KEY"):
        return DEFAULT_ANTHROPIC_MODEL
    if os.environ.get("OPENAI_API_KEY"):
        return DEFAULT_OPENAI_MODEL
    return DEFAULT_LOCAL_MODEL


def load_model(name: str | None = None) -> Model:
    """Build the model a name refers to (``None`` means the default resolution)."""
    name = name or default_model_name()
    provider, _, rest = name.partition(":")
    if provider == "anthropic":
        from foreman.models.anthropic import AnthropicModel

        return AnthropicModel(_require(rest, name))
    if provider == "openai":
        from foreman.models.openai import OpenAIModel

        return OpenAIModel(_require(rest, name))
    if provider == "local":
        from foreman.models.local import LocalModel

        return LocalModel(rest or None)
    raise ConfigError(
        f"Unknown model {name!r}. Use 'anthropic:<model>', 'openai:<model>', 'local' "
        "or 'local:<path.gguf>'."
    )


async def aload_model(name: str | None = None) -> Model:
    """``load_model`` in a worker thread, for async code: importing a provider SDK takes
    about a second, which would freeze the event loop (and every live view and run on it)."""
    return await asyncio.to_thread(load_model, name)


def _require(model_id: str, name: str) -> str:
    if not model_id:
        raise ConfigError(f"Model {name!r} names no model id; write e.g. {DEFAULT_OPENAI_MODEL!r}.")
    return model_id

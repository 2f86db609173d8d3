"""Which model ids the installed provider SDKs mark as deprecated, and telling the user.

The SDKs know first when a model is being switched off, but say it quietly: ``anthropic``
keeps a ``DEPRECATED_MODELS`` table and warns with a ``DeprecationWarning`` (hidden by
default) at call time; ``openai`` only lists shutdown dates in the docstring of its
``ChatModel`` type. Foreman reads both and warns with a ``UserWarning`` subclass, which
Python shows by default, when such a model is built.
"""

from __future__ import annotations

import re
import sys
import warnings
from functools import cache
from pathlib import Path
from typing import Any


class ModelDeprecationWarning(UserWarning):
    """The chosen model is deprecated by its provider and will stop working."""


@cache
def anthropic_deprecations() -> dict[str, str]:
    """Model id -> end-of-life date, from the installed ``anthropic`` SDK."""
    try:
        from anthropic._data import DEPRECATED_MODELS
    except ImportError:  # an SDK without the table: nothing known to be deprecated
        return {}
    return dict(DEPRECATED_MODELS)


_ITEM = re.compile(r"^- (.*?)(?=^- |\Z)", re.MULTILINE | re.DOTALL)
_ID = re.compile(r'"([^"]+)"')


@cache
def openai_deprecations() -> dict[str, str]:
    """Model id -> the SDK's note ("Announced shutdown date: ..."), from ``ChatModel``'s
    docstring in the installed ``openai`` SDK (it has no table to import)."""
    try:
        from openai.types.shared import chat_model
    except ImportError:
        return {}
    source = Path(chat_model.__file__).read_text(encoding="utf-8")
    _, found, listing = source.partition("Deprecated values:")
    if not found:
        return {}
    listing = listing.split('"""', 1)[0]
    deprecated: dict[str, str] = {}
    for item in _ITEM.findall(listing):
        ids, _, note = item.partition(":")
        note = " ".join(note.split()).split(" See ", 1)[0].rstrip(".")
        deprecated.update(dict.fromkeys(_ID.findall(ids), note))
    return deprecated


def deprecation_notice(name: str) -> str | None:
    """Why ``name`` (``anthropic:<id>`` / ``openai:<id>``) is deprecated, or None if it is not."""
    provider, _, model_id = name.partition(":")
    if provider == "anthropic":
        when = anthropic_deprecations().get(model_id)
        return f"end of life on {when}" if when else None
    if provider == "openai":
        return openai_deprecations().get(model_id)
    return None


def warn_if_deprecated(name: str) -> None:
    """Warn (``ModelDeprecationWarning``) when the installed SDK marks ``name`` deprecated."""
    if notice := deprecation_notice(name):
        warnings.warn(
            f"{name} is deprecated by its provider ({notice}); pick a current model.",
            ModelDeprecationWarning,
            stacklevel=3,
        )


def show_warnings_as_lines() -> None:
    """Print foreman's warnings as one ``Warning: ...`` line on stderr (for the CLI), not
    Python's two-line ``file:line: Category: message`` form; other warnings are untouched."""
    original = warnings.showwarning

    def show(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        if issubclass(category, ModelDeprecationWarning):
            print(f"Warning: {message}", file=sys.stderr)
        else:
            original(message, category, *args, **kwargs)

    warnings.showwarning = show

"""Turning an official SDK's exception into the foreman error that tells the engine
whether to retry. The ``anthropic`` and ``openai`` SDKs share one exception family
(``APITimeoutError`` < ``APIConnectionError``, ``APIStatusError``, ``RateLimitError``), so
one translation serves both; each adapter passes its own module and wording.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

from foreman.errors import ModelError, ModelTimeoutError, ProviderServerError, RateLimitError

_COMMON_HINTS = {
    403: "The API key may not have access to this model; check its permissions.",
}
_DEFAULT_HINT = "The request was rejected; check the model name and request settings."


def translate(
    exc: Any,
    sdk: ModuleType,
    *,
    name: str,
    provider: str,
    provider_message: Callable[[Any], str],
    connection_hint: str,
    hints: dict[int, str],
) -> ModelError:
    """``exc`` (an ``sdk.APIError``) as a foreman error whose message says what to do.

    ``provider_message(exc)`` extracts the provider's own explanation from a status error.
    """
    # APITimeoutError subclasses APIConnectionError, so it must be checked first.
    if isinstance(exc, sdk.APITimeoutError):
        return ModelTimeoutError(f"{name}: the {provider} did not answer in time. Retry later.")
    if isinstance(exc, sdk.APIConnectionError):
        return ProviderServerError(
            f"{name}: could not reach the {provider} ({exc.message}). {connection_hint}"
        )
    if not isinstance(exc, sdk.APIStatusError):
        return ModelError(f"{name}: unexpected {provider} response: {exc.message}")
    status = exc.status_code
    detail = f"{name}: {provider} answered {status}: {provider_message(exc)}."
    if isinstance(exc, sdk.RateLimitError):
        return RateLimitError(f"{detail} Slow down: lower concurrency or wait before retrying.")
    if status >= 500:
        return ProviderServerError(f"{detail} A provider-side failure; retrying usually helps.")
    hint = {**_COMMON_HINTS, **hints}.get(status, _DEFAULT_HINT)
    return ModelError(f"{detail} {hint}")

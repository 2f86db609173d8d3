"""Turning an official SDK's exception into the foreman error that tells the engine
whether to retry. The ``anthropic`` and ``openai`` SDKs share one exception family
(``APITimeoutError`` < ``APIConnectionError``, ``APIStatusError``, ``RateLimitError``), so
one translation serves both; each adapter passes its own module and wording.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime
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
    wait = retry_after(exc.response.headers)
    if isinstance(exc, sdk.RateLimitError):
        return RateLimitError(
            f"{detail} Slow down: lower concurrency or wait before retrying.", retry_after=wait
        )
    if status >= 500:
        return ProviderServerError(
            f"{detail} A provider-side failure; retrying usually helps.", retry_after=wait
        )
    hint = {**_COMMON_HINTS, **hints}.get(status, _DEFAULT_HINT)
    return ModelError(f"{detail} {hint}")


def retry_after(
    headers: Mapping[str, str], *, now: Callable[[], float] = time.time
) -> float | None:
    """Seconds a 429/503 asked us to wait: ``retry-after-ms``, else ``retry-after`` in
    seconds or as an HTTP date; None when absent or unreadable."""
    if (millis := _seconds(headers.get("retry-after-ms"))) is not None:
        return millis / 1000
    value = headers.get("retry-after")
    if (seconds := _seconds(value)) is not None:
        return seconds
    try:
        when = parsedate_to_datetime(value) if value else None
    except (TypeError, ValueError):
        return None
    if when is None or when.tzinfo is None:  # an HTTP date is always in GMT
        return None
    return max(0.0, when.timestamp() - now())


def _seconds(value: str | None) -> float | None:
    try:
        seconds = float(value) if value else None
    except ValueError:
        return None
    return seconds if seconds is not None and math.isfinite(seconds) and seconds >= 0 else None

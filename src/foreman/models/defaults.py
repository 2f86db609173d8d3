"""Every default model and call timeout, in one place.

The model ids are current entries of the installed SDKs' own model lists, and
``tests/test_defaults.py`` fails as soon as an installed SDK marks one as deprecated, so a
stale default is caught before a provider switches it off.
"""

from __future__ import annotations

#: Used when ANTHROPIC_API_KEY is set (and FOREMAN_MODEL is not).
DEFAULT_ANTHROPIC_MODEL = "anthropic:claude-sonnet-5-5"
#: Used when only OPENAI_API_KEY is set.
DEFAULT_OPENAI_MODEL = "openai:gpt-5.4-mini"
#: Used when no provider key is set: the bundled SmolLM2, offline.
DEFAULT_LOCAL_MODEL = "local"

#: Seconds a remote model call may take before it counts as timed out (and is retried).
DEFAULT_CALL_TIMEOUT = 120.0
#: Seconds a local model call may compute; queueing for the model is not counted.
LOCAL_CALL_TIMEOUT = 600.0

"""Default models come from the installed SDKs' current model lists, never deprecated ones,
and a deprecated model the user picks is announced, not hidden."""

from __future__ import annotations

import os
import subprocess
import sys
import typing
from typing import Any

import anthropic.types
import openai.types.shared
import pytest

from foreman.models import default_model_name
from foreman.models.defaults import DEFAULT_ANTHROPIC_MODEL, DEFAULT_OPENAI_MODEL
from foreman.models.deprecation import (
    ModelDeprecationWarning,
    anthropic_deprecations,
    deprecation_notice,
    openai_deprecations,
)

DEFAULTS = [DEFAULT_ANTHROPIC_MODEL, DEFAULT_OPENAI_MODEL]


def _literals(alias: Any) -> set[str]:
    """Every string literal inside an SDK's model type (a Literal, or Union[Literal, str])."""
    found: set[str] = set()
    for arg in typing.get_args(alias):
        found |= (
            _literals(arg) if typing.get_args(arg) else {arg} if isinstance(arg, str) else set()
        )
    return found


SDK_MODELS = {
    "anthropic": _literals(anthropic.types.Model),
    "openai": _literals(openai.types.shared.ChatModel),
}


def test_the_installed_sdks_deprecation_lists_are_read() -> None:
    # Without this, the tests below could pass by reading nothing.
    assert "gpt-4o-mini" in openai_deprecations()
    assert deprecation_notice("openai:gpt-4o-mini") == "Announced shutdown date: 2027-01-14"
    deprecated_claude = next(iter(anthropic_deprecations()))
    assert deprecation_notice(f"anthropic:{deprecated_claude}").startswith("end of life on ")
    assert deprecation_notice("local") is None


@pytest.mark.parametrize("name", DEFAULTS)
def test_no_default_model_is_deprecated_by_the_installed_sdk(name: str) -> None:
    assert deprecation_notice(name) is None, f"{name}: {deprecation_notice(name)}"


@pytest.mark.parametrize("name", DEFAULTS)
def test_each_default_model_is_in_its_sdks_model_list(name: str) -> None:
    provider, _, model_id = name.partition(":")
    assert model_id in SDK_MODELS[provider]


def test_default_model_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FOREMAN_MODEL", "ANTHROPIC_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    assert default_model_name() == "local"
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    assert default_model_name() == DEFAULT_OPENAI_MODEL
    monkeypatch.setenv("ANTHROPIC_API_KEY", "k")
    assert default_model_name() == DEFAULT_ANTHROPIC_MODEL
    monkeypatch.setenv("FOREMAN_MODEL", "openai:chosen")
    assert default_model_name() == "openai:chosen"


def test_building_a_deprecated_model_warns() -> None:
    from foreman.models.openai import OpenAIModel

    with pytest.warns(ModelDeprecationWarning, match=r"openai:gpt-4o-mini .*2027-01-14"):
        OpenAIModel("gpt-4o-mini", api_key="k")


def test_building_a_deprecated_claude_warns() -> None:
    from foreman.models.anthropic import AnthropicModel

    deprecated = next(iter(anthropic_deprecations()))
    with pytest.warns(ModelDeprecationWarning, match=f"anthropic:{deprecated} "):
        AnthropicModel(deprecated, api_key="k")


def _python(code: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    env["OPENAI_API_KEY"] = "k"
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )


def test_the_deprecation_warning_is_shown_without_pythonwarnings() -> None:
    shown = _python("from foreman.models import load_model; load_model('openai:gpt-4o-mini')")

    assert shown.returncode == 0, shown.stderr
    assert "ModelDeprecationWarning" in shown.stderr
    assert "openai:gpt-4o-mini is deprecated" in shown.stderr


def test_the_cli_shows_a_deprecation_as_one_line() -> None:
    shown = _python(
        "from foreman.models.deprecation import show_warnings_as_lines\n"
        "show_warnings_as_lines()\n"
        "from foreman.models import load_model; load_model('openai:gpt-4o-mini')"
    )

    assert shown.returncode == 0, shown.stderr
    assert shown.stderr.splitlines() == [
        "Warning: openai:gpt-4o-mini is deprecated by its provider (Announced shutdown date: "
        "2027-01-14); pick a current model."
    ]

"""The worker registry, the default team, and team files (YAML and TOML)."""

from __future__ import annotations

from pathlib import Path

import pytest

from foreman import Orchestrator, RetryPolicy, load_team
from foreman.errors import ConfigError, UnknownWorkerError
from foreman.testing import ScriptedModel
from foreman.workers import DEFAULT_WORKERS, Registry, Worker
from helpers import worker

DEFAULT_NAMES = ["researcher", "analyst", "writer", "coder", "summariser", "fact_checker"]


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_default_team() -> None:
    registry = Registry.default()

    assert registry.names() == DEFAULT_NAMES
    assert len(registry) == 6
    for member in registry:
        assert member.description
        assert "`inputs`" in member.system_prompt  # every worker knows what it receives
        assert member.model is None  # the orchestrator's default model
    assert [w.name for w in DEFAULT_WORKERS] == DEFAULT_NAMES


def test_the_default_orchestrator_uses_the_default_team() -> None:
    orchestrator = Orchestrator(model=ScriptedModel([]))

    assert orchestrator.registry.names() == DEFAULT_NAMES


def test_registry_lookup_and_replacement() -> None:
    registry = Registry([worker("a"), worker("b")])
    registry.add(worker("a", description="replaced"))

    assert registry.names() == ["a", "b"]
    assert registry.get("a").description == "replaced"
    assert "b" in registry
    assert "c" not in registry
    with pytest.raises(UnknownWorkerError, match=r"No worker named 'c'\. Known workers: a, b\."):
        registry.get("c")


def test_yaml_team(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "team.yaml",
        """
workers:
  - name: translator
    description: Translates text.
    system_prompt: You are a translator.
    model: openai:gpt-4o-mini
    fallback_model: local
    timeout: 30
    retry: {max_attempts: 5, initial_delay: 0.1}
    on_failure: abort
    missing_inputs: skip
    max_concurrency: 2
  - name: editor
    description: Edits text.
    system_prompt: You are an editor.
    fallback: translator
""",
    )

    registry = load_team(path)

    assert registry.names() == ["translator", "editor"]
    translator = registry.get("translator")
    assert translator.model == "openai:gpt-4o-mini"
    assert translator.fallback_model == "local"
    assert translator.timeout == 30
    assert translator.retry == RetryPolicy(max_attempts=5, initial_delay=0.1)
    assert (translator.on_failure, translator.missing_inputs) == ("abort", "skip")
    assert translator.max_concurrency == 2
    assert registry.get("editor").fallback == "translator"


def test_yml_suffix_is_yaml_too(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "team.yml",
        "workers:\n  - {name: solo, description: d, system_prompt: p}\n",
    )

    assert load_team(path).names() == ["solo"]


def test_toml_team(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "team.toml",
        """
[[workers]]
name = "translator"
description = "Translates text."
system_prompt = "You are a translator."
temperature = 0.2

[workers.retry]
max_attempts = 4
""",
    )

    registry = load_team(path)

    assert registry.names() == ["translator"]
    assert registry.get("translator").temperature == 0.2
    assert registry.get("translator").retry.max_attempts == 4


def test_include_defaults_adds_and_overrides(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "team.yaml",
        """
include_defaults: true
workers:
  - name: writer
    description: Writes poems only.
    system_prompt: You are a poet.
  - name: translator
    description: Translates text.
    system_prompt: You are a translator.
""",
    )

    registry = load_team(path)

    assert registry.names() == [*DEFAULT_NAMES, "translator"]
    assert registry.get("writer").system_prompt == "You are a poet."
    assert registry.get("coder") == Registry.default().get("coder")


def test_include_defaults_alone_is_a_team(tmp_path: Path) -> None:
    path = write(tmp_path, "team.toml", "include_defaults = true\n")

    assert load_team(path).names() == DEFAULT_NAMES


def test_a_bad_worker_entry_names_its_index_and_field(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "team.yaml",
        """
workers:
  - {name: good, description: d, system_prompt: p}
  - {name: bad, description: d, system_prompt: p, timeout: -1}
""",
    )

    with pytest.raises(ConfigError) as caught:
        load_team(path)

    text = str(caught.value)
    assert "worker #2" in text
    assert "timeout" in text
    assert str(path) in text


def test_a_missing_field_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, "team.yaml", "workers:\n  - {name: x, description: d}\n")

    with pytest.raises(ConfigError, match=r"worker #1 \('x'\): system_prompt: Field required"):
        load_team(path)


def test_an_unknown_policy_value_is_named(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "team.toml",
        '[[workers]]\nname = "x"\ndescription = "d"\nsystem_prompt = "p"\non_failure = "retry"\n',
    )

    with pytest.raises(ConfigError, match=r"worker #1 \('x'\): on_failure"):
        load_team(path)


def test_an_unknown_fallback_worker_is_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "team.yaml",
        "workers:\n  - {name: x, description: d, system_prompt: p, fallback: ghost}\n",
    )

    with pytest.raises(UnknownWorkerError, match=r"'x' falls back to unknown worker 'ghost'"):
        load_team(path)


def test_an_unknown_fallback_is_refused_by_the_orchestrator_too() -> None:
    with pytest.raises(UnknownWorkerError, match="ghost"):
        Orchestrator([worker("x", fallback="ghost")], model=ScriptedModel([]))


def test_unknown_fallback_error_is_a_config_error() -> None:
    assert issubclass(UnknownWorkerError, ConfigError)


@pytest.mark.parametrize("name", ["team.json", "team.txt", "team"])
def test_a_wrong_suffix_is_refused(tmp_path: Path, name: str) -> None:
    path = write(tmp_path, name, '{"workers": []}')

    with pytest.raises(ConfigError, match=r"must end in \.yaml, \.yml or \.toml"):
        load_team(path)


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="Cannot read team file"):
        load_team(tmp_path / "nowhere.yaml")


def test_a_directory_is_a_config_error(tmp_path: Path) -> None:
    folder = tmp_path / "team.yaml"
    folder.mkdir()

    with pytest.raises(ConfigError, match="Cannot read team file"):
        load_team(folder)


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("team.yaml", "workers: [unclosed"),
        ("team.toml", "workers = [[["),
    ],
)
def test_invalid_syntax_is_a_config_error(tmp_path: Path, name: str, text: str) -> None:
    with pytest.raises(ConfigError, match="is not valid"):
        load_team(write(tmp_path, name, text))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "must be a mapping with a 'workers' list"),
        ("- just a list", "must be a mapping with a 'workers' list"),
        ("workers: {name: x}", "'workers' must be a list of workers"),
        ("workers: []", "defines no workers"),
    ],
)
def test_a_badly_shaped_file_is_a_config_error(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_team(write(tmp_path, "team.yaml", text))


def test_an_unknown_validator_is_refused() -> None:
    with pytest.raises(UnknownWorkerError, match=r"No worker named 'nope'"):
        Orchestrator(validator="nope", model=ScriptedModel([]))


def test_worker_names_and_schemas_are_checked() -> None:
    with pytest.raises(ValueError, match="name"):
        Worker(name="has space", description="d", system_prompt="p")
    with pytest.raises(ValueError, match="output_schema"):
        Worker(name="x", description="d", system_prompt="p", output_schema=dict)  # type: ignore[arg-type]


# --- strictness: a typo is an error, never a silent default ---------------------------------

POET = "  - name: poet\n    description: Writes poems.\n    system_prompt: You are a poet.\n"
TOML_POET = "[[workers]]\nname = 'poet'\ndescription = 'Poems.'\nsystem_prompt = 'A poet.'\n"


def test_a_misspelt_worker_key_is_an_error_naming_it_and_the_nearest_key(tmp_path) -> None:
    path = write(tmp_path, "team.yaml", "workers:\n" + POET + "    rsik: high\n")

    with pytest.raises(ConfigError) as caught:
        load_team(path)

    message = str(caught.value)
    assert "worker #1 ('poet')" in message
    assert "unknown key 'rsik' (did you mean 'risk'?)" in message


def test_a_misspelt_retry_key_is_an_error(tmp_path) -> None:
    path = write(tmp_path, "team.toml", TOML_POET + "retry = { max_attempt = 5 }\n")

    with pytest.raises(ConfigError, match=r"'retry.max_attempt' \(did you mean 'retry.max_att"):
        load_team(path)


def test_a_top_level_typo_is_an_error_not_the_default_team(tmp_path) -> None:
    path = write(tmp_path, "team.yaml", "include_defaults: true\nworker:\n" + POET)

    with pytest.raises(ConfigError, match=r"unknown key 'worker' \(did you mean 'workers'\?\)"):
        load_team(path)


def test_a_worker_name_used_twice_in_a_file_is_an_error(tmp_path) -> None:
    path = write(tmp_path, "team.yaml", "workers:\n" + POET + POET)

    with pytest.raises(ConfigError, match=r"worker #2 is named 'poet', like worker #1"):
        load_team(path)


def test_a_team_file_may_still_override_a_default_worker(tmp_path) -> None:
    text = POET.replace("poet", "writer", 1)
    path = write(tmp_path, "team.yaml", "include_defaults: true\nworkers:\n" + text)

    assert load_team(path).get("writer").description == "Writes poems."


def test_include_defaults_must_be_a_boolean(tmp_path) -> None:
    path = write(tmp_path, "team.yaml", "include_defaults: 'no'\nworkers:\n" + POET)

    with pytest.raises(ConfigError, match="'include_defaults' must be true or false"):
        load_team(path)


def test_a_binary_team_file_is_a_clear_error(tmp_path) -> None:
    path = tmp_path / "team.yaml"
    path.write_bytes(b"workers:\n  - name: \xff\xfe\x00\x01\n")

    with pytest.raises(ConfigError, match=r"is not UTF-8 text \(byte 0xff at offset 19\)"):
        load_team(path)


@pytest.mark.parametrize(
    "text",
    [
        "workers:\n  - name: w\n    description: d\n    system_prompt: s\n    risk: high\n"
        "    risk: low\n",
        "workers: []\nworkers:\n  - {name: w, description: d, system_prompt: s}\n",
        "budget: {max_calls: 1, max_calls: 2}\n",
    ],
)
def test_a_key_given_twice_in_a_yaml_team_file_is_refused(tmp_path: Path, text: str) -> None:
    """PyYAML keeps the last of two equal keys: a second `risk: low` loaded a low-risk
    worker, with no approval asked. TOML refuses it; so does YAML now."""
    with pytest.raises(ConfigError, match=r"is given twice \(line \d+, column \d+\)$"):
        load_team(write(tmp_path, "team.yaml", text))


def test_yaml_anchors_still_merge_and_override(tmp_path: Path) -> None:
    text = (
        "workers:\n  - &base\n    name: w\n    description: d\n    system_prompt: s\n"
        "    risk: high\n  - <<: *base\n    name: w2\n    risk: low\n"
    )
    team = load_team(write(tmp_path, "team.yaml", text))
    assert [(w.name, w.risk.value) for w in team] == [("w", "high"), ("w2", "low")]


def test_unknown_worker_keyword_arguments_are_errors_with_a_suggestion() -> None:
    with pytest.raises(ValueError, match=r"unknown key 'rsik' \(did you mean 'risk'\?\)"):
        Worker(name="w", description="d", system_prompt="s", rsik="high")
    with pytest.raises(ValueError, match=r"unknown key 'colour'"):
        Worker(name="w", description="d", system_prompt="s", colour="blue")


@pytest.mark.parametrize("text", ["workers: [\n", "workers:\n  - name: a\n   bad: [", "a: b: c"])
def test_invalid_yaml_is_one_line_naming_where(tmp_path: Path, text: str) -> None:
    """PyYAML's message spans lines (a quoted snippet and a caret); the CLI prints one."""
    with pytest.raises(
        ConfigError, match=r"is not valid yaml: .+ \(line \d+, column \d+\)$"
    ) as err:
        load_team(write(tmp_path, "team.yaml", text))
    assert "\n" not in str(err.value)

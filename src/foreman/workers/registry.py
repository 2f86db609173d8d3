"""The registry the planner routes from, and team files (YAML or TOML) that fill it.

A team file lists workers with the same fields as ``Worker`` (schemas excepted: those are
Python types). ``include_defaults: true`` adds the built-in team, so a file can just add or
override a worker:

    include_defaults: true
    workers:
      - name: translator
        description: Translates text into the language the instructions name.
        system_prompt: You are a professional translator...
        model: openai:gpt-5.4-mini
        retry: {max_attempts: 5}
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from foreman.errors import ConfigError, UnknownWorkerError
from foreman.workers.default_team import DEFAULT_WORKERS
from foreman.workers.spec import Worker


class Registry:
    """Workers by name. Later additions with the same name replace earlier ones."""

    def __init__(self, workers: Iterable[Worker] = ()) -> None:
        self._workers: dict[str, Worker] = {}
        for worker in workers:
            self.add(worker)

    @classmethod
    def default(cls) -> Registry:
        """The built-in team: researcher, analyst, writer, coder, summariser, fact_checker."""
        return cls(DEFAULT_WORKERS)

    def add(self, worker: Worker) -> None:
        self._workers[worker.name] = worker

    def get(self, name: str) -> Worker:
        try:
            return self._workers[name]
        except KeyError:
            raise UnknownWorkerError(
                f"No worker named {name!r}. Known workers: {', '.join(self.names())}."
            ) from None

    def names(self) -> list[str]:
        return list(self._workers)

    def check_references(self) -> None:
        """Fail early when a worker's fallback names a worker that does not exist."""
        for worker in self:
            if worker.fallback is not None and worker.fallback not in self._workers:
                raise UnknownWorkerError(
                    f"Worker {worker.name!r} falls back to unknown worker {worker.fallback!r}. "
                    f"Known workers: {', '.join(self.names())}."
                )

    def __contains__(self, name: object) -> bool:
        return name in self._workers

    def __iter__(self) -> Iterator[Worker]:
        return iter(self._workers.values())

    def __len__(self) -> int:
        return len(self._workers)


def load_team(path: str | Path) -> Registry:
    """Read a YAML (``.yaml``/``.yml``) or TOML (``.toml``) team file into a registry."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"Cannot read team file {path}: {exc.strerror or exc}") from exc
    data = _parse(path, text)
    if not isinstance(data, dict) or not isinstance(data.get("workers", []), list):
        raise ConfigError(f"Team file {path} must be a mapping with a 'workers' list.")
    registry = Registry.default() if data.get("include_defaults") else Registry()
    for index, entry in enumerate(data.get("workers", [])):
        try:
            registry.add(Worker.model_validate(entry))
        except ValidationError as exc:
            raise ConfigError(f"Team file {path}, worker #{index + 1}: {_brief(exc)}") from exc
    if not len(registry):
        raise ConfigError(f"Team file {path} defines no workers.")
    registry.check_references()
    return registry


def _parse(path: Path, text: str) -> Any:
    try:
        if path.suffix == ".toml":
            return tomllib.loads(text)
        if path.suffix in {".yaml", ".yml"}:
            return yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"Team file {path} is not valid {path.suffix[1:]}: {exc}") from exc
    raise ConfigError(f"Team file {path} must end in .yaml, .yml or .toml.")


def _brief(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'entry'}: {err['msg']}" for err in exc.errors()
    )

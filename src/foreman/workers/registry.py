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

A ``budget:`` section limits each run of the team (see ``foreman.Budget``):

    budget: {max_cost_usd: 0.50, max_seconds: 600, on_limit: cancel}

A ``replan:`` section says when the orchestrator revises the plan (docs/replanning.md):

    replan: {policy: on-hint, max_replans: 3}

A ``patterns:`` section names pipelines, fan-outs and generator-evaluators built from the
file's workers (``foreman.workers.patterns``; ``foreman run --pattern NAME`` runs one).

A ``tools:`` section declares the tools workers may name in their ``tools:`` lists:
built-in tools, MCP servers and Python functions (``foreman.workers.team_tools``).

A ``router:`` section has a router choose each task's worker instead of the planner
(docs/routing.md); ``memory:`` turns on memory across runs (docs/memory.md); ``embedder:``
names the embedder both use (``local``, the default, or ``openai:MODEL``):

    router: {kind: embedding, fallback: researcher, min_score: 0.2}
    memory: {enabled: true, limit: 500, top_k: 3}

``mode: delegate`` has the team's runs driven by a tool-calling orchestrator instead of
a plan written up front (``mode: plan``, the default); see docs/delegation.md.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from foreman.errors import ConfigError, UnknownWorkerError
from foreman.ledger.budget import Budget, budget_from
from foreman.tools.toolbox import Toolbox
from foreman.workers.default_team import DEFAULT_TOOLS, DEFAULT_WORKERS
from foreman.workers.nested import check_no_cycle, worker_of
from foreman.workers.patterns import PatternSpec
from foreman.workers.spec import Worker, unknown_keys
from foreman.workers.team_tools import team_toolbox

SectionT = TypeVar("SectionT", bound=BaseModel)

#: How a run is driven: a plan written up front, or a tool-calling orchestrator.
RunMode = Literal["plan", "delegate"]
RUN_MODES: tuple[str, ...] = get_args(RunMode)


class TeamReplan(BaseModel):
    """A team file's ``replan:`` section: the orchestrator's defaults for its runs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    policy: Literal["never", "on-hint", "always"] = "never"
    max_replans: int | None = Field(None, ge=0)


class TeamRouter(BaseModel):
    """A team file's ``router:`` section: who picks each task's worker (docs/routing.md)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["planner", "llm", "embedding"] = "planner"
    fallback: str | None = None
    min_score: float | None = Field(None, ge=-1, le=1)


class TeamMemory(BaseModel):
    """A team file's ``memory:`` section: workers' outputs kept and recalled (docs/memory.md)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True
    limit: int | None = Field(None, ge=1)
    top_k: int | None = Field(None, ge=0)


class Registry:
    """Workers by name. Later additions with the same name replace earlier ones.

    ``budget`` is the team's budget (a team file's ``budget:``): an ``Orchestrator``
    given this registry and no budget of its own applies it to every run; so is ``mode``
    (a team file's ``mode:``) when the orchestrator is given none.
    """

    def __init__(
        self,
        workers: Iterable[Worker] = (),
        *,
        budget: Budget | None = None,
        mode: RunMode | None = None,
        tools: Toolbox | None = None,
    ) -> None:
        self.budget = budget
        #: The tools workers may call, each within its own allow-list (``Worker.tools``).
        self.tools = tools if tools is not None else Toolbox()
        #: The team file's ``replan:`` section, if any (the orchestrator's defaults).
        self.replan: TeamReplan | None = None
        self.mode = mode
        #: The team file's ``router:``, ``memory:`` and ``embedder:``, if any.
        self.router: TeamRouter | None = None
        self.memory: TeamMemory | None = None
        self.embedder: str | None = None
        #: The team's patterns by name (a team file's ``patterns:``).
        self.patterns: dict[str, PatternSpec] = {}
        self._workers: dict[str, Worker] = {}
        for worker in workers:
            self.add(worker)

    @classmethod
    def default(cls, *, tools: Toolbox | None = None) -> Registry:
        """The built-in team: researcher, analyst, writer, coder, summariser, fact_checker.

        The researcher may call ``read_file``, ``list_files`` and ``fetch``, the coder those
        and ``write_file`` and ``shell``, when ``tools`` has them (``builtin_tools``); with
        no tools, each worker is one model call."""
        registry = cls(DEFAULT_WORKERS, tools=tools)
        registry.equip_default_workers()
        return registry

    def equip_default_workers(self) -> None:
        """Give the built-in researcher and coder (as shipped, not a team file's workers
        of the same name) the built-in tools of ``DEFAULT_TOOLS`` this toolbox has."""
        for shipped in DEFAULT_WORKERS:
            if self._workers.get(shipped.name) != shipped:
                continue
            usable = tuple(
                name for name in DEFAULT_TOOLS.get(shipped.name, ()) if name in self.tools
            )
            if usable:
                self._workers[shipped.name] = shipped.model_copy(update={"tools": usable})

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

    def concurrency_limits(self) -> dict[str, int]:
        """Each worker's ``max_concurrency``, for the workers that set one."""
        return {w.name: w.max_concurrency for w in self if w.max_concurrency}

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


#: The keys a team file may have at its top level.
TEAM_KEYS = (
    "include_defaults",
    "workers",
    "budget",
    "patterns",
    "replan",
    "mode",
    "tools",
    "router",
    "memory",
    "embedder",
)


def load_team(path: str | Path, *, _within: tuple[Path, ...] = ()) -> Registry:
    """Read a YAML (``.yaml``/``.yml``) or TOML (``.toml``) team file into a registry.

    Strict on purpose: an unknown or misspelt key, at the top or in a worker, is an error
    that names it (a typo like ``rsik: high`` must never quietly load a low-risk worker),
    and so is a worker name used twice in the file.

    A worker with ``team: other.yaml`` (relative to this file) is that whole team as one
    worker: its tasks run as nested runs (``foreman.workers.nested``). Files that name
    each other in a cycle are an error.
    """
    path = Path(path)
    _within = check_no_cycle(path, _within)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"Cannot read team file {path}: {exc.strerror or exc}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"Team file {path} is not UTF-8 text (byte {raw[exc.start]:#04x} at offset "
            f"{exc.start}); a team file is YAML or TOML."
        ) from None
    data = _parse(path, text)
    if not isinstance(data, dict):
        raise ConfigError(f"Team file {path} must be a mapping with a 'workers' list.")
    if problems := unknown_keys(data, TEAM_KEYS):
        raise ConfigError(f"Team file {path}: {'; '.join(problems)}.")
    entries = data.get("workers", [])
    if not isinstance(entries, list):
        raise ConfigError(f"Team file {path}: 'workers' must be a list of workers.")
    include_defaults = data.get("include_defaults", False)
    if not isinstance(include_defaults, bool):
        raise ConfigError(f"Team file {path}: 'include_defaults' must be true or false.")
    registry = Registry.default() if include_defaults else Registry()
    if (budget := data.get("budget")) is not None:
        if not isinstance(budget, dict):
            raise ConfigError(f"Team file {path}: 'budget' must be a mapping of limits.")
        registry.budget = budget_from(budget, f"Team file {path}, budget")
    if (replan := data.get("replan")) is not None:
        registry.replan = _section(path, "replan", TeamReplan, replan)
    if (mode := data.get("mode")) is not None:
        if mode not in RUN_MODES:
            raise ConfigError(
                f"Team file {path}: 'mode' must be 'plan' or 'delegate', not {mode!r}."
            )
        registry.mode = mode
    _load_routing(path, data, registry)
    if (tools := data.get("tools")) is not None:
        registry.tools = team_toolbox(tools, path)
    defined: dict[str, int] = {}
    for index, entry in enumerate(entries, start=1):
        try:
            worker = worker_of(entry, path, _within, load_team)
        except ValidationError as exc:
            name = f" ({entry['name']!r})" if isinstance(entry, dict) and "name" in entry else ""
            raise ConfigError(f"Team file {path}, worker #{index}{name}: {_brief(exc)}") from exc
        if worker.name in defined:
            raise ConfigError(
                f"Team file {path}: worker #{index} is named {worker.name!r}, like worker "
                f"#{defined[worker.name]}; each worker needs its own name."
            )
        defined[worker.name] = index
        registry.add(worker)
    if not len(registry):
        raise ConfigError(f"Team file {path} defines no workers.")
    registry.check_references()
    if registry.router and registry.router.fallback and registry.router.fallback not in registry:
        raise UnknownWorkerError(
            f"Team file {path}: the router's fallback {registry.router.fallback!r} is not a "
            f"worker. Known workers: {', '.join(registry.names())}."
        )
    registry.equip_default_workers()
    _load_patterns(path, data.get("patterns", []), registry)
    return registry


def _section(path: Path, key: str, model: type[SectionT], value: Any) -> SectionT:
    """A top-level section of the file as ``model``; one line naming the problem if not."""
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise ConfigError(f"Team file {path}, {key}: {_brief(exc)}") from None


def _load_routing(path: Path, data: dict[str, Any], registry: Registry) -> None:
    """The file's ``router:`` (a mapping, or just the kind), ``memory:`` (a mapping, or
    true/false) and ``embedder:`` (a name)."""
    router = data.get("router")
    if isinstance(router, str):
        router = {"kind": router}
    if router is not None:
        registry.router = _section(path, "router", TeamRouter, router)
    memory = data.get("memory")
    if isinstance(memory, bool):
        memory = {"enabled": memory}
    if memory is not None:
        registry.memory = _section(path, "memory", TeamMemory, memory)
    embedder = data.get("embedder")
    if embedder is not None and not (isinstance(embedder, str) and embedder.strip()):
        raise ConfigError(f"Team file {path}: 'embedder' must be a name ('local', 'openai:M').")
    registry.embedder = embedder


_PATTERN_ADAPTER: TypeAdapter[PatternSpec] = TypeAdapter(PatternSpec)


def _load_patterns(path: Path, entries: Any, registry: Registry) -> None:
    """The file's ``patterns:``, each naming only workers of the team, names unique among
    patterns and workers (a parent run may route to a pattern like to a worker)."""
    if not isinstance(entries, list):
        raise ConfigError(f"Team file {path}: 'patterns' must be a list of patterns.")
    for index, entry in enumerate(entries, start=1):
        try:
            spec = _PATTERN_ADAPTER.validate_python(entry)
        except ValidationError as exc:
            name = f" ({entry['name']!r})" if isinstance(entry, dict) and "name" in entry else ""
            raise ConfigError(f"Team file {path}, pattern #{index}{name}: {_brief(exc)}") from exc
        if spec.name in registry.patterns or spec.name in registry:
            raise ConfigError(
                f"Team file {path}: pattern #{index} is named {spec.name!r}, like another "
                "pattern or a worker; each needs its own name."
            )
        for name in spec.worker_names():
            if name not in registry:
                raise UnknownWorkerError(
                    f"Team file {path}: pattern {spec.name!r} uses unknown worker {name!r}. "
                    f"Known workers: {', '.join(registry.names())}."
                )
        registry.patterns[spec.name] = spec


def _parse(path: Path, text: str) -> Any:
    try:
        if path.suffix == ".toml":
            return tomllib.loads(text)
        if path.suffix in {".yaml", ".yml"}:
            return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"Team file {path} is not valid toml: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"Team file {path} is not valid yaml: {_yaml_problem(exc)}") from exc
    raise ConfigError(f"Team file {path} must end in .yaml, .yml or .toml.")


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping, as TOML does: PyYAML
    keeps the last silently, so a second ``risk: low`` under ``risk: high`` loaded a
    low-risk worker. Keys merged in from an anchor (``<<: *base``) may be overridden."""


def _unique_keys(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node)
        try:
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} is given twice", key_node.start_mark
                )
            seen.add(key)
        except TypeError:  # an unhashable key: construct_mapping says so
            pass
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_keys)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error on one line: what is wrong and where (PyYAML's own text spans several
    lines, quoting the source with a caret)."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        what = exc.problem or exc.context or "syntax error"
        if mark is not None:
            return f"{what} (line {mark.line + 1}, column {mark.column + 1})"
        return what
    return " ".join(str(exc).split())


def _brief(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'entry'}: {err['msg']}".removeprefix(
            "entry: Value error, "
        )
        for err in exc.errors()
    )

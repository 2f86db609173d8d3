"""Python functions as tools: the signature is the schema, the docstring the description.

    @tool(risk="high")
    def send_email(to: str, subject: str, body: str) -> str:
        '''Send an email to one recipient.'''

Arguments are validated by pydantic against the annotations (a single parameter typed as
a pydantic model takes the model's fields as the arguments); a wrong argument goes back to
the model as a tool error it can correct. A parameter annotated ``ToolContext`` is not an
argument: it receives the call's context (run, task, idempotency key). Sync functions run
in a daemon thread of their own so a slow one never stalls the event loop, and one still
running after its timeout never holds the process's exit (an executor's threads are
joined at exit, however long they take). The return value is validated
against the return annotation, then given to the model as text (JSON for anything that
is not a string).
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import json
import re
import threading
from collections.abc import Callable
from typing import Any, get_type_hints

from pydantic import (
    BaseModel,
    ConfigDict,
    PydanticUserError,
    TypeAdapter,
    ValidationError,
    create_model,
)

from foreman.errors import ConfigError, ToolError
from foreman.threads import hand_back
from foreman.tools.base import RiskLevel, Tool, ToolContext

#: What model providers accept as a tool's name.
_TOOL_NAME = re.compile(r"[A-Za-z0-9_\-]{1,64}")


class FunctionTool(Tool):
    """A tool that calls a Python function (sync or async)."""

    def __init__(
        self,
        function: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        risk: RiskLevel | str = RiskLevel.low,
        idempotent: bool = False,
    ) -> None:
        self.function = function
        self.name = name or function.__name__
        self.description = description or inspect.getdoc(function) or ""
        try:
            self.risk = RiskLevel(risk)
        except ValueError:
            raise ConfigError(
                f"Tool {self.name!r}: risk must be low, medium or high, not {risk!r}."
            ) from None
        self.idempotent = idempotent
        try:  # annotations that name nothing, or types no JSON schema can describe
            self._arguments, self._context_param, self._model_param = _arguments_model(function)
            self.parameters = self._arguments.model_json_schema()
            hints = get_type_hints(function)
        except (NameError, TypeError, PydanticUserError) as exc:
            why = " ".join(str(exc).split("\n", 1)[0].split())
            raise ConfigError(f"Tool {self.name!r}: its signature is not a schema: {why}") from None
        self.parameters.pop("title", None)
        if not isinstance(self.name, str) or not _TOOL_NAME.fullmatch(self.name):
            raise ConfigError(
                f"Tool name {self.name!r}: a tool's name is letters, digits, '_' and '-' "
                "(at most 64), as model providers accept it."
            )
        returns = hints.get("return")
        self._returns = TypeAdapter(returns) if returns not in (None, type(None)) else None

    async def call(self, arguments: dict[str, Any], context: ToolContext) -> str:
        try:
            parsed = self._arguments.model_validate(arguments)
        except ValidationError as exc:
            raise ToolError(f"invalid arguments for {self.name}: {_brief(exc)}") from None
        if self._model_param is not None:
            kwargs: dict[str, Any] = {self._model_param: parsed}
        else:
            kwargs = {field: getattr(parsed, field) for field in type(parsed).model_fields}
        if self._context_param is not None:
            kwargs[self._context_param] = context
        if inspect.iscoroutinefunction(self.function):
            result = await self.function(**kwargs)
        else:
            result = await _in_own_thread(self.function, kwargs)
        if self._returns is not None:
            try:
                result = self._returns.validate_python(result)
            except ValidationError as exc:
                raise ToolError(f"{self.name} returned a bad result: {_brief(exc)}") from None
        return as_text(result)


async def _in_own_thread(function: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    """``function(**kwargs)`` on a new daemon thread, in a copy of this context (as
    ``asyncio.to_thread``); left to finish on its own if the awaiting call is cancelled."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()
    context = contextvars.copy_context()

    def work() -> None:
        try:
            result, error = context.run(function, **kwargs), None
        except BaseException as exc:  # handed to the awaiting call, as to_thread does
            result, error = None, exc
        hand_back(loop, future, result, error)

    threading.Thread(target=work, name="foreman-tool", daemon=True).start()
    return await future


def tool(
    function: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    risk: RiskLevel | str = RiskLevel.low,
    idempotent: bool = False,
) -> Any:
    """Make a function a tool: ``@tool`` or ``@tool(risk="high", idempotent=True)``."""

    def wrap(fn: Callable[..., Any]) -> FunctionTool:
        return FunctionTool(
            fn, name=name, description=description, risk=risk, idempotent=idempotent
        )

    return wrap(function) if function is not None else wrap


def as_text(result: Any) -> str:
    """What the model is shown of a tool's result."""
    if isinstance(result, str):
        return result
    if isinstance(result, BaseModel):
        return result.model_dump_json()
    return json.dumps(result, default=str, ensure_ascii=False)


def _arguments_model(
    function: Callable[..., Any],
) -> tuple[type[BaseModel], str | None, str | None]:
    """(the arguments' model, the ToolContext parameter, the parameter that takes the
    whole model when the function has a single pydantic-model parameter)."""
    hints = get_type_hints(function, include_extras=True)
    fields: dict[str, Any] = {}
    context_param = None
    for param in inspect.signature(function).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise ConfigError(f"Tool {function.__name__!r}: *args and **kwargs cannot be tools.")
        annotation = hints.get(param.name, Any)
        if annotation is ToolContext:
            context_param = param.name
            continue
        name = param.name
        if name.startswith("_") or (name.startswith("model_") and hasattr(BaseModel, name)):
            # never an argument: pydantic drops the first, the second is its own member
            raise ConfigError(
                f"Tool {function.__name__!r}: a parameter cannot be named {name!r} "
                "(a leading underscore, or a name pydantic models use); rename it."
            )
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (annotation, default)
    if len(fields) == 1:
        ((only, (annotation, _)),) = fields.items()
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return annotation, context_param, only
    model = create_model(
        f"{function.__name__}_arguments",
        __config__=ConfigDict(extra="forbid"),
        **fields,
    )
    return model, context_param, None


def _brief(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or 'arguments'}: {error['msg']}"
        for error in exc.errors()
    )

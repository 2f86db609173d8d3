"""Every error foreman raises, in one readable hierarchy.

Each message says what went wrong and what to do about it, so a CLI user never needs a
traceback to act. Catch ``ForemanError`` to catch them all.
"""

from __future__ import annotations

from typing import Any


class ForemanError(Exception):
    """Base class of every foreman error."""


class ConfigError(ForemanError):
    """A setting, team file or model name is wrong; fix the input and run again."""


# --- models -----------------------------------------------------------------------------


class ModelError(ForemanError):
    """A model call failed and retrying the same call will not help (bad request, auth...).

    ``answered`` is the provider's answer (a ``ModelResponse``) when there was one that
    could not be used (no forced tool call, no choices): the provider billed it, so the
    call ledger counts its tokens.
    """

    answered: Any = None


class TransientModelError(ModelError):
    """A model call failed in a way that may succeed on retry (rate limit, timeout, 5xx).

    ``retry_after`` is how long the provider asked us to wait (its ``Retry-After``), if it did.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimitError(TransientModelError):
    """The provider answered 429: too many requests."""


class ModelTimeoutError(TransientModelError):
    """The model did not answer within the call's timeout."""


class ProviderServerError(TransientModelError):
    """The provider answered with a 5xx status or dropped the connection."""


class OutputValidationError(TransientModelError):
    """The model answered, but not in the required structure (no JSON, wrong fields).

    Transient because asking again usually helps: models are not deterministic.
    """


# --- plans ------------------------------------------------------------------------------


class PlanError(ForemanError):
    """The planner could not produce a valid plan, even after being shown its errors."""

    def __init__(self, message: str, *, errors: list[str], raw: str | None = None) -> None:
        detail = "\n".join(f"  - {e}" for e in errors)
        text = f"{message}\n{detail}"
        if raw is not None:
            text += f"\nLast plan the model wrote:\n{raw[:2000]}"
        super().__init__(text)
        self.errors = errors
        self.raw = raw


class UnknownWorkerError(ConfigError):
    """A plan, a fallback or a validator names a worker that is not in the registry."""


# --- runs -------------------------------------------------------------------------------


class RunAbortedError(ForemanError):
    """A task failed under an ``abort`` policy, so the whole run stopped."""

    def __init__(self, task_id: str, reason: str, *, result: Any = None) -> None:
        super().__init__(
            f"Run aborted: task {task_id!r} failed and its worker's policy is 'abort'. "
            f"Cause: {reason}"
        )
        self.task_id = task_id
        self.reason = reason
        #: The failed task's ``TaskResult``, so the run's record keeps it.
        self.result = result


# --- durable runs -----------------------------------------------------------------------


class StoreError(ForemanError):
    """The run store cannot be read or written (corrupt file, full disk, locked...)."""


class StoreNotFoundError(StoreError):
    """A command that only reads found no run store file (it never creates one)."""


class CorruptedRunError(StoreError):
    """A stored row of one run cannot be read back (bad JSON, unknown status...)."""

    def __init__(self, message: str, *, run_id: str) -> None:
        super().__init__(message)
        self.run_id = run_id


class UnknownRunError(StoreError):
    """No run with that id in the store."""


class AmbiguousRunError(UnknownRunError):
    """A run id prefix matches more than one run."""


class RunLockedError(StoreError):
    """Another live process is executing this run right now."""


class RunFinishedError(StoreError):
    """The run already finished; there is nothing to resume."""


class ApprovalError(ForemanError):
    """An approval or rejection that cannot apply (no such request, already decided...)."""


class BudgetExceededError(ForemanError):
    """A limit of the run's budget is reached: no new model call may start.

    ``limit`` names the field (``max_tokens``, ``max_cost_usd``, ``max_seconds`` or
    ``max_calls``); ``used`` is what the run had spent of it, ``allowed`` the limit.
    """

    def __init__(self, message: str, *, limit: str, used: float, allowed: float) -> None:
        super().__init__(message)
        self.limit = limit
        self.used = used
        self.allowed = allowed


# --- tools ------------------------------------------------------------------------------


class ToolError(ForemanError):
    """A tool call failed in a way the model should hear about (bad arguments, a file that
    does not exist, a refused command): the message goes back to the model as the call's
    error result, and the worker's loop goes on. Anything else a tool raises is reported
    the same way, with its type; only cancellation stops the loop."""

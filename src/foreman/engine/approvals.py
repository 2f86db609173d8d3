"""Human-in-the-loop: risky tasks wait for a person's decision before they run.

Low risk runs on its own. Medium risk shows what will be done (the worker's exact input)
and asks, unless the orchestrator auto-approves medium. High risk always needs an explicit
decision. A decision is stored *before* the task executes, so a crash between approval and
execution never asks twice, and a rejection is kept with its reason. An approval covers one
execution: its start is stored before the worker is called, so if the process dies during
it, resume asks again, saying the task may have run (unless the worker is idempotent).

Where nobody can answer now (no callback, or the callback defers by returning ``None``),
the task is parked as ``waiting``: the run goes on with every branch that does not depend
on it, then pauses, and ``foreman approve`` / ``reject`` + ``foreman resume`` continue it
from any process.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from foreman.errors import ConfigError
from foreman.events import ApprovalDecided, ApprovalRequested
from foreman.plan.schema import Task
from foreman.store.base import Approval, ApprovalStatus, Store
from foreman.tools.base import Tool
from foreman.workers.spec import RiskLevel, Worker

#: Called with the pending approval; returns True (approve), False (reject), or None (decide
#: later, from another shell). May be sync or async; may set ``approval.note``.
ApprovalCallback = Callable[[Approval], "bool | Awaitable[bool | None] | None"]


@dataclass
class Decision:
    verdict: Literal["run", "reject", "wait"]
    reason: str | None = None


def auto_approve_level(value: RiskLevel | str | None) -> RiskLevel | None:
    """The validated ``auto_approve`` setting; ``ConfigError`` for 'high' or an unknown level."""
    if not value:
        return None
    try:
        level = RiskLevel(value)
    except ValueError:
        raise ConfigError(f"auto_approve must be 'low' or 'medium', not {value!r}.") from None
    if level is RiskLevel.high:
        raise ConfigError(
            "High-risk tasks always need an explicit approval; auto_approve can be "
            "'medium' (or 'low', which changes nothing) but not 'high'."
        )
    return level


class ApprovalGate:
    """Decides, per task, whether it may run now; records every request and decision."""

    def __init__(
        self,
        store: Store,
        emit: Callable[[object], None],
        callback: ApprovalCallback | None = None,
        auto_approve: RiskLevel | None = None,
        admit: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.emit = emit
        self.callback = callback
        self.auto_approve = auto_approve_level(auto_approve)
        #: The run's budget check (``BudgetMeter.admit``), made before an approved task
        #: is recorded as started: a task whose model call the budget would refuse (the
        #: time ran out while a person decided, say) never starts, so its approval is not
        #: used up and it is not asked again as one that "may have run".
        self.admit = admit

    def needs_approval(self, worker: Worker) -> bool:
        return self.needs(worker.risk)

    def needs(self, risk: RiskLevel) -> bool:
        """Whether something of ``risk`` (a worker, a tool) waits for a person."""
        if risk is RiskLevel.low:
            return False
        return not (risk is RiskLevel.medium and self.auto_approve is RiskLevel.medium)

    async def check(self, run_id: str, task: Task, worker: Worker, inputs: str) -> Decision:
        if not self.needs_approval(worker):
            return Decision("run")
        approval = Approval(
            run_id=run_id,
            task_id=task.id,
            worker=worker.name,
            risk=worker.risk,
            instructions=task.instructions,
            inputs=inputs,
        )
        return await self._decide(approval, idempotent=worker.idempotent, budgeted=True)

    async def check_tool(
        self,
        run_id: str,
        key: str,
        worker: Worker,
        tool: Tool,
        arguments: dict[str, Any],
        *,
        may_have_run: bool = False,
    ) -> Decision:
        """One tool call: its exact name and arguments shown, the approval covering only
        them, stored under the call's ``key`` (``<task>#<n>``). ``may_have_run``: the call
        started before and never finished; a tool not declared idempotent then asks a
        person whatever its risk."""
        if not self.needs(tool.risk) and not (may_have_run and not tool.idempotent):
            return Decision("run")
        shown = json.dumps(arguments, ensure_ascii=False, sort_keys=True)
        approval = Approval(
            run_id=run_id,
            task_id=key,
            worker=worker.name,
            risk=tool.risk,
            instructions=f"call the tool {tool.name}",
            inputs=shown,
            tool=tool.name,
            arguments=arguments,
            may_have_run=may_have_run,
        )
        return await self._decide(approval, idempotent=tool.idempotent)

    async def _decide(
        self, request: Approval, *, idempotent: bool, budgeted: bool = False
    ) -> Decision:
        run_id, key = request.run_id, request.task_id
        approval = await self.store.request_approval(request)
        if approval.status is ApprovalStatus.approved:
            approval = await self._start(approval, idempotent, budgeted)
        if approval.status is ApprovalStatus.pending:
            self.emit(
                ApprovalRequested(
                    run_id=run_id,
                    task_id=key,
                    worker=approval.worker,
                    risk=approval.risk.value,
                    inputs=approval.inputs,
                    may_have_run=approval.may_have_run,
                    tool=approval.tool,
                    arguments=approval.arguments,
                )
            )
            verdict = await self._ask(approval)
            if verdict is None:
                return Decision("wait")
            approval = await self.store.decide(run_id, key, approved=verdict, note=approval.note)
            self.emit(
                ApprovalDecided(run_id=run_id, task_id=key, approved=verdict, note=approval.note)
            )
            if approval.status is ApprovalStatus.approved:
                approval = await self._start(approval, idempotent, budgeted)
        if approval.status is ApprovalStatus.approved:
            return Decision("run")
        reason = f"rejected by the approver: {approval.note or 'no reason given'}"
        return Decision("reject", reason)

    async def _start(self, approval: Approval, idempotent: bool, budgeted: bool) -> Approval:
        """Record that the approved execution starts, before the worker (or tool) is
        called; an approval whose execution started before comes back pending (it may
        have run). An idempotent worker or tool may simply run again. A task's execution
        is first checked against the budget (``admit``)."""
        if budgeted and self.admit is not None:
            self.admit()
        if idempotent:
            return approval
        return await self.store.start_approved(approval.run_id, approval.task_id)

    async def _ask(self, approval: Approval) -> bool | None:
        if self.callback is None:
            return None
        answer = self.callback(approval)
        if inspect.isawaitable(answer):
            answer = await answer
        return answer

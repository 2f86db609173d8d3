"""What the dashboard's JSON API answers: plain dicts read from any ``Store``.

No web framework here: these are the API's answers as data, so a test (or a script) can
call them on a store directly, and the routes in ``foreman.web.api`` stay thin. Field names
follow the CLI's ``--json`` output where the CLI has one (``runs --json``, ``stats --json``,
``approvals --json``): add, never rename.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from foreman.errors import ApprovalError, UnknownRunError
from foreman.ledger.books import Books, priced_now
from foreman.ledger.records import CallRecord, CallStatus
from foreman.ledger.stats import GroupBy, group_calls, summarise
from foreman.plan.foreach import find_task, item_ids_of
from foreman.results import RunStatus, TaskResult
from foreman.store.base import Approval, ApprovalStatus, RunRecord, RunSummary, Store
from foreman.tools.records import ToolCallRecord

#: Runs read to filter and search (``list_runs`` is newest first): the newest this many.
SEARCHED_RUNS = 2000


async def runs_view(
    store: Store,
    *,
    status: str | None = None,
    search: str | None = None,
    nested: bool = False,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Runs newest first: top-level ones only unless ``nested``; ``status`` keeps one
    status, ``search`` keeps runs whose request (or id) contains it, case-insensitively."""
    wanted = RunStatus(status) if status else None
    needle = (search or "").strip().casefold()
    found = []
    for run in await store.list_runs(SEARCHED_RUNS if (wanted or needle) else limit):
        if run.parent_run_id is not None and not nested:
            continue
        if wanted is not None and run.status is not wanted:
            continue
        if needle and needle not in run.request.casefold() and needle not in run.run_id:
            continue
        found.append(run.as_json())
        if len(found) >= limit:
            break
    return found


async def run_view(store: Store, ref: str) -> dict[str, Any]:
    """A run whole: its record, every plan version, each task with its live status, its
    nested runs and where it sits among them, and its approvals."""
    run = await store.get_run(await store.resolve_run(ref))
    plans = await store.list_plans(run.run_id)
    results = await store.load_tasks(run.run_id)
    calls = await store.list_calls(run_id=run.run_id, descendants=True)  # its nested runs' too
    approvals = [a for a in await store.list_approvals(None) if a.run_id == run.run_id]
    children = await store.child_runs(run.run_id)
    return {
        "run": run_record_json(run),
        "path": await lineage(store, run.run_id),
        "plans": [version.model_dump(mode="json") for version in plans],
        "tasks": task_states(run, results, calls, approvals, children),
        "children": [child.as_json() for child in children],
        "approvals": [approval_json(a) for a in approvals],
    }


def _carrier(run_id: str, carried: dict[str, str | None]) -> str | None:
    """The task of the viewed run that the nested run ``run_id`` (or the one it is nested
    in) carries out: its ids extend the viewed run's, the longest match wins (a task id
    may hold dots)."""
    while run_id not in carried and "." in run_id:
        run_id = run_id.rpartition(".")[0]
    return carried.get(run_id)


def run_record_json(run: RunRecord) -> dict[str, Any]:
    shown = run.model_dump(mode="json", exclude={"plan", "settings"})
    shown["status"] = run.status.value
    return shown


def task_states(
    run: RunRecord,
    results: dict[str, TaskResult],
    calls: Sequence[CallRecord],
    approvals: Sequence[Approval],
    children: Sequence[RunSummary] = (),
) -> list[dict[str, Any]]:
    """Every task of the latest plan (and every for-each item that ran) with where it
    stands now: a settled status, ``running`` while a call of it is in flight,
    ``waiting`` for a pending approval, else ``pending``; and its books (a task carried
    out by a nested run, those of that run and the runs in it: ``calls`` has theirs, and
    ``children`` says whose task each is). Linear in tasks and calls: a live page asks
    for this after every change of a run with maybe thousands of tasks."""
    live = run.status is RunStatus.running
    in_flight = {
        c.task_id
        for c in calls
        if c.status is CallStatus.started and live and c.run_id == run.run_id
    }
    # a tool call's approval is named <task>#<n>: its task waits
    pending = {a.task_id.split("#")[0] for a in approvals if a.status is ApprovalStatus.pending}
    carried = {child.run_id: child.parent_task_id for child in children}
    own: dict[str | None, list[CallRecord]] = {}
    for call in calls:
        task_id = call.task_id if call.run_id == run.run_id else _carrier(call.run_id, carried)
        own.setdefault(task_id, []).append(call)
    plan_ids = [task.id for task in run.plan.tasks] if run.plan else []
    items = items_by_task(plan_ids, results)
    states = []
    for task_id, item_of in [(i, None) for i in plan_ids] + [
        (item, head) for head in plan_ids for item in items.get(head, [])
    ]:
        task = find_task(run.plan, task_id) if run.plan else None
        result = results.get(task_id)
        if result is not None:
            status = result.status.value
        elif task_id in in_flight or any(i in in_flight for i in items.get(task_id, [])):
            status = "running"
        elif task_id in pending:
            status = "waiting"
        else:
            status = "pending"
        books = Books.of(own.get(task_id, []))
        states.append(
            {
                "task_id": task_id,
                "worker": task.worker if task else (result.worker if result else None),
                "depends_on": list(task.depends_on) if task else [],
                "item_of": item_of,
                "status": status,
                "error": result.error if result else None,
                "latency_s": result.latency if result and result.attempts else None,
                "input_tokens": books.usage.input_tokens,
                "output_tokens": books.usage.output_tokens,
                "cost_usd": books.cost_usd,
                "calls": books.calls,
            }
        )
    return states


def items_by_task(plan_ids: Sequence[str], results: dict[str, TaskResult]) -> dict[str, list]:
    """The item ids (``t2.1``, ``t2.2``...) of each for-each task among ``results``, in
    item order, in one pass over the results."""
    tasks = set(plan_ids)
    found: dict[str, list[tuple[int, str]]] = {}
    for task_id in results:
        head, dot, number = task_id.rpartition(".")
        if dot and head in tasks and number.isdigit() and not number.startswith("0"):
            found.setdefault(head, []).append((int(number), task_id))
    return {head: [task_id for _, task_id in sorted(ids)] for head, ids in found.items()}


async def calls_view(
    store: Store, ref: str, *, descendants: bool = False, prompts: bool = False
) -> dict[str, list[dict[str, Any]]]:
    """What the timeline draws: the run's model calls (its ledger) and its tool calls,
    each oldest first."""
    run_id = await store.resolve_run(ref)
    calls = priced_now(
        await store.list_calls(run_id=run_id, descendants=descendants, with_prompts=prompts)
    )
    tools = await store.list_tool_calls(run_id)
    return {
        "calls": [call_json(call) for call in calls],
        "tool_calls": [tool_call_json(call) for call in tools],
    }


def tool_call_json(call: ToolCallRecord) -> dict[str, Any]:
    """A tool call as ``foreman show RUN --calls --json`` prints it: its ``key`` (what
    an approval of it is named by, ``t3#2``) and the record."""
    return {"key": call.key, **call.model_dump(mode="json")}


def call_json(call: CallRecord) -> dict[str, Any]:
    shown = call.model_dump(mode="json", exclude_none=False)
    shown["failed"] = call.failed
    return shown


async def task_view(store: Store, ref: str, task_id: str) -> dict[str, Any]:
    """One task: its plan entry, its result (input, output, error), every model call
    with its prompt and output, its tool calls, its books, its approvals (the task's
    own and its tool calls'), and the nested run carrying it out."""
    run = await store.get_run(await store.resolve_run(ref))
    task = find_task(run.plan, task_id) if run.plan else None
    results = await store.load_tasks(run.run_id)
    result = results.get(task_id)
    if task is None and result is None:
        raise UnknownRunError(f"Run {run.run_id} has no task {task_id!r}.")
    calls = priced_now(
        await store.list_calls(run_id=run.run_id, task_id=task_id, with_prompts=True)
    )
    tools = await store.list_tool_calls(run.run_id, task_id)
    approvals = [
        a
        for a in await store.list_approvals(None)
        if a.run_id == run.run_id and a.task_id.split("#")[0] == task_id
    ]
    nested = [c for c in await store.child_runs(run.run_id) if c.parent_task_id == task_id]
    books = Books.of(calls)
    if nested and not calls:  # carried out by a nested run: its books, as `show` gives
        books = Books.of(await store.list_calls(run_id=nested[0].run_id, descendants=True))
    return {
        "run_id": run.run_id,
        "run_status": run.status.value,
        "task": task.model_dump(mode="json") if task else None,
        "result": result.model_dump(mode="json") if result else None,
        "items": item_ids_of(task_id, results),
        "calls": [call_json(call) for call in calls],
        "books": {
            "input_tokens": books.usage.input_tokens,
            "output_tokens": books.usage.output_tokens,
            "cost_usd": books.cost_usd,
            "calls": books.calls,
            "latency_s": sum(c.latency for c in calls if c.timed),
        },
        "approvals": [approval_json(a) for a in approvals],
        "tool_calls": [tool_call_json(call) for call in tools],
        "nested_runs": [child.as_json() for child in nested],
    }


async def stats_view(
    store: Store,
    by: GroupBy,
    *,
    since: float | None = None,
    until: float | None = None,
    ref: str | None = None,
) -> dict[str, Any]:
    """``foreman stats --json``'s groups, the totals, and, as ``stats`` says below its
    table, the most expensive worker (by cost; by tokens when no cost is known, said in
    ``most_expensive_by``) and the slowest (by p50, then p95)."""
    run_id = await store.resolve_run(ref) if ref else None
    records = await store.list_calls(
        run_id=run_id, since=since, until=until, descendants=run_id is not None
    )
    groups = group_calls(records, by)
    workers = group_calls(records, GroupBy.worker)
    total = summarise(records)
    ranked_by = "cost" if total.cost_usd else "tokens"
    spent = (
        (lambda g: g.cost_usd or 0.0)
        if ranked_by == "cost"
        else (lambda g: g.input_tokens + g.output_tokens)
    )
    expensive = max(workers, key=spent) if workers else None
    timed = [g for g in workers if g.latency_p50_s is not None]
    slowest = max(timed, key=lambda g: (g.latency_p50_s, g.latency_p95_s)) if timed else None
    return {
        "by": by.value,
        "groups": [group.as_json() for group in groups],
        "total": total.as_json(),
        "most_expensive_worker": expensive.key if expensive else None,
        "most_expensive_by": ranked_by,
        "slowest_worker": slowest.key if slowest else None,
    }


def approval_json(approval: Approval, path: list[str] | None = None) -> dict[str, Any]:
    """An approval as ``foreman approvals --json`` prints it, with ``inputs_sha256``: the
    browser sends it back with its decision, so a decision covers only the inputs shown."""
    shown = approval.model_dump(mode="json")
    shown["run_path"] = path or [approval.run_id]
    shown["inputs_sha256"] = inputs_digest(approval.inputs)
    return shown


def inputs_digest(inputs: str) -> str:
    return hashlib.sha256(inputs.encode("utf-8", "surrogatepass")).hexdigest()


async def approvals_view(store: Store, *, every: bool = False) -> list[dict[str, Any]]:
    status = None if every else ApprovalStatus.pending
    return [
        approval_json(a, await lineage(store, a.run_id)) for a in await store.list_approvals(status)
    ]


async def lineage(store: Store, run_id: str) -> list[str]:
    """The runs from the top-level one down to ``run_id`` (as ``foreman approvals``
    names them); a parent deleted meanwhile ends the climb."""
    path = [run_id]
    while len(path) < 64:  # a store that loops its links must not hang a request
        try:
            record = await store.get_run(path[0])
        except UnknownRunError:
            break
        if record.parent_run_id is None:
            break
        path.insert(0, record.parent_run_id)
    return path


async def decide_view(
    store: Store,
    ref: str,
    task_id: str,
    *,
    approved: bool,
    note: str | None,
    inputs_sha256: str,
) -> dict[str, Any]:
    """Approve or reject, exactly as ``foreman approve`` / ``reject`` do (``Store.decide``),
    but only if the pending request still has the inputs the person saw: a dependency that
    ran again since replaces the request with other inputs, which nobody has seen yet."""
    run_id = await store.resolve_run(ref)
    current = await store.get_approval(run_id, task_id)
    if current is not None and current.status is ApprovalStatus.pending:
        if inputs_digest(current.inputs) != inputs_sha256:
            raise ApprovalError(
                f"The input of task {task_id} changed since it was shown: look at it again "
                "before deciding."
            )
    decided = await store.decide(run_id, task_id, approved=approved, note=note)
    path = await lineage(store, run_id)
    within = f" (nested in run {path[0]})" if len(path) > 1 else ""
    return {
        "approval": approval_json(decided, path),
        "message": f"Task {decided.task_id} of run {decided.run_id} {decided.status.value}. "
        f"Continue it with: foreman resume {path[0]}{within}",
    }

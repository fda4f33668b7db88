"""Escalation: the steps a policy takes once a clock is breached, and the call to the grid
leader after too many refusals.

Each step of a policy's chain is an SLA timer of its own (armed with the clock, `after_s` past
its due time, with its place in the chain and its action fixed then: a later change of policy
or priority does not change a step already armed), so it fires exactly once like every timer: the
sweeper marks it fired in the transaction that acts, with FOR UPDATE SKIP LOCKED between
sweepers. A step whose clock was met (the worker arrived, the case was resolved) or stopped is
cancelled with the clock and never fires. Every step taken is a CaseEscalated event in the case's
sealed history and on the feed, naming the action and whom it notifies:

- `reoffer`: the worker who has not arrived loses the case (task cancelled), and it is offered
  to the next candidate, that worker left out;
- `notify_grid_leader` (网格长): the responsible party of the case's unit grid (else its
  community's); `notify_street_office`: its street's; `notify_department`: the department that
  owns the category;
- `raise_priority`: the case's priority goes up one level (1 is the highest).
"""

from __future__ import annotations

import logging

from sqlalchemy import func, select

from app.cases.events import EventType, append_case_event
from app.cases.states import REFUSED, REOFFERABLE, CaseStatus, TaskStatus, TimerKind
from app.models import Case, Category, Department, SlaTimer, Task
from app.platform.uow import UnitOfWork
from app.policies.document import policy_for
from dispatch import timers
from dispatch.assignment import end_task, offer_case
from dispatch.context import DispatchContext
from geo import GridLevel

log = logging.getLogger(__name__)
ACTOR = "system:sla"
NOTIFY_LEVELS = {
    "notify_grid_leader": (GridLevel.UNIT, GridLevel.COMMUNITY),
    "notify_street_office": (GridLevel.STREET,),
}


async def recipient(uow: UnitOfWork, ctx: DispatchContext, case: Case, action: str) -> str:
    """Whom a notifying step reaches: a grid's or department's responsible party (its name or
    code when none is recorded)."""
    if action == "notify_department":
        category = await uow.session.get(Category, case.category)
        code = case.department or (category.department if category else None)
        department = await uow.session.get(Department, code) if code else None
        if department is None:
            return code or "operations centre"
        return department.responsible or department.name
    index = ctx.grids.index
    home, _ = ctx.place(case.grid_code, case.grid_set_version, case.lon, case.lat)
    path = list(reversed(index.path(home))) if index is not None else []
    levels = NOTIFY_LEVELS.get(action, ())
    for grid in path:
        if grid.level in levels and grid.responsible:
            return grid.responsible
    named = [g for g in path if g.level in levels]
    return named[0].name if named else home


async def raise_level(
    uow: UnitOfWork,
    ctx: DispatchContext,
    case: Case,
    event: EventType,
    data: dict[str, object],
) -> None:
    """Raise the case's escalation level and record why (a breach, an escalation step), with
    the new level in the event."""
    case.escalation_level += 1
    append_case_event(
        uow,
        case,
        event,
        actor=ACTOR,
        now=ctx.clock.now(),
        data={**data, "escalation_level": case.escalation_level},
    )


async def _record(
    uow: UnitOfWork, ctx: DispatchContext, case: Case, data: dict[str, object]
) -> None:
    await raise_level(uow, ctx, case, EventType.CASE_ESCALATED, {**data, "priority": case.priority})


async def step(uow: UnitOfWork, ctx: DispatchContext, case: Case, timer: SlaTimer) -> None:
    """Take the escalation step `timer` stands for (its clock is breached and still open)."""
    action = timer.action or ""
    data: dict[str, object] = {
        "clock": timer.kind.clock.value,
        "step": timer.step,
        "action": action,
    }
    if action == "raise_priority":
        data["priority_from"] = case.priority
        case.priority = max(1, case.priority - 1)
        await _record(uow, ctx, case, data)
    elif action == "reoffer":
        await _reoffer(uow, ctx, case, data)
    elif action in ("notify_grid_leader", "notify_street_office", "notify_department"):
        data["to"] = await recipient(uow, ctx, case, action)
        await _record(uow, ctx, case, data)
    else:
        log.warning("case %s: unknown escalation action %r", case.id, action)


async def _reoffer(
    uow: UnitOfWork, ctx: DispatchContext, case: Case, data: dict[str, object]
) -> None:
    now = ctx.clock.now()
    task = await uow.session.scalar(
        select(Task).where(
            Task.case_id == case.id,
            Task.status.in_(REOFFERABLE),
        )
    )
    if task is not None:
        await end_task(uow, task, TaskStatus.CANCELLED, now, note="re-offered on escalation")
        await timers.cancel(
            uow, case_id=case.id, now=now, kinds=[TimerKind.ACCEPT], task_id=task.id
        )
        data["from_worker_id"] = task.worker_id
    await _record(uow, ctx, case, data)
    case.status = CaseStatus.REPORTED
    case.assignee_worker_id = None
    await offer_case(uow, ctx, case, actor=ACTOR)


async def after_refusal(uow: UnitOfWork, ctx: DispatchContext, case: Case) -> None:
    """Call the grid leader (a department case: its department) once, when the case has been
    declined or let expire `max_refusals` times."""
    policy = await policy_for(uow, case.category, case.priority)
    if policy is None:
        return
    refusals = await uow.session.scalar(
        select(func.count())
        .select_from(Task)
        .where(
            Task.case_id == case.id,
            Task.status.in_(REFUSED),
        )
    )
    if refusals != policy.max_refusals:
        return  # below the limit, or the call was made at the limit already
    action = "notify_department" if case.department else "notify_grid_leader"
    await _record(
        uow,
        ctx,
        case,
        {
            "reason": "refusals",
            "refusals": refusals,
            "action": action,
            "to": await recipient(uow, ctx, case, action),
        },
    )

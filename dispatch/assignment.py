"""Offering a case to a worker, one case at a time (worker actions, the SLA clock, and a
single consumed report); the batched path is dispatch/batch.py. Who is chosen is decided by
dispatch/ranking.py. A worker's slot is taken with a conditional UPDATE (`take_slot`) when the
offer is made and given back when the task ends (`end_task`), so two dispatchers never fill the
same last slot: the second finds it taken and moves on to the next candidate.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select

from app.cases.events import EventType, append_case_event
from app.cases.states import (
    AWAITING_OFFER,
    HANDED_BACK,
    CaseStatus,
    TaskStatus,
    TimerKind,
    TimerState,
)
from app.models import Case, SlaTimer, Task, Worker
from app.platform.uow import UnitOfWork
from app.policies.document import policy_for, policy_set
from dispatch import ranking, timers
from dispatch.context import DispatchContext
from dispatch.workers import give_back_slot, take_slot

DEFAULT_ACCEPT_S = 600  # an offer's window when the case's category has no policy


async def candidates(
    uow: UnitOfWork, ctx: DispatchContext, case: Case, exclude: set[str]
) -> list[Worker]:
    """On-duty workers with room for another task, best first (dispatch/ranking.py): those of
    the first tier that has any, loaded in one query for all the case's tiers."""
    skill = (await policy_set(uow)).skill(case.category)
    search = ranking.search_for(ctx, case, skill)
    rows = await uow.session.scalars(
        select(Worker).where(
            Worker.on_duty.is_(True),
            Worker.open_tasks < Worker.capacity,
            or_(*(tier.where() for tier in search.tiers)),
        )
    )
    now = ctx.clock.now()
    return ranking.pick(
        search,
        case,
        ranking.Roster(rows),
        exclude=exclude,
        fresh_since=ranking.fresh_after(ctx, now),
    )


async def previous_refusers(uow: UnitOfWork, case_id: str) -> set[str]:
    rows = await uow.session.scalars(
        select(Task.worker_id).where(
            Task.case_id == case_id,
            Task.status.in_(HANDED_BACK),
        )
    )
    return set(rows)


async def offer_case(
    uow: UnitOfWork,
    ctx: DispatchContext,
    case: Case,
    *,
    actor: str,
    fresh_start: bool = False,
    prefer: str | None = None,
) -> Task | None:
    """Offer `case` to the best candidate (`prefer`, when that worker is a candidate: rework
    goes back to whoever did the work), arming the acceptance deadline.

    With nobody available the case waits (status unchanged), a DispatchFailed event is appended
    and a retry timer armed; the retry starts fresh, so earlier refusers are asked again.
    """
    now = ctx.clock.now()
    exclude = set() if fresh_start else await previous_refusers(uow, case.id)
    pool = await candidates(uow, ctx, case, exclude)
    if not pool:
        await _nobody(uow, ctx, case, actor=actor)
        return None
    if prefer is not None and all(w.id != prefer for w in pool):
        preferred = await uow.session.get(Worker, prefer)
        if preferred is not None and ranking.may_take(case, preferred, preferred.open_tasks):
            pool.insert(0, preferred)
    ordered = sorted(pool, key=lambda w: w.id != prefer)  # stable: the rest keep their rank
    for worker in ordered:
        if await take_slot(uow, worker.id):
            break
    else:  # every candidate's last slot was taken by another dispatcher meanwhile
        await _nobody(uow, ctx, case, actor=actor)
        return None
    policy = await policy_for(uow, case.category, case.priority)
    task_row, timer_row, data = offer(
        case, worker, policy.accept_s if policy else DEFAULT_ACCEPT_S, now
    )
    task = Task(**task_row)
    uow.session.add(task)
    await uow.session.flush()
    uow.session.add(SlaTimer(**timer_row))
    append_case_event(uow, case, EventType.TASK_OFFERED, actor=actor, now=now, data=data)
    return task


async def _nobody(uow: UnitOfWork, ctx: DispatchContext, case: Case, *, actor: str) -> None:
    """Nobody can be offered the case: it waits (DispatchFailed) with one retry timer armed."""
    now = ctx.clock.now()
    case.assignee_worker_id = None
    if case.status not in AWAITING_OFFER:
        case.status = CaseStatus.REPORTED
    append_case_event(
        uow, case, EventType.DISPATCH_FAILED, actor=actor, now=now, data=nobody_data(ctx)
    )
    pending = await uow.session.scalar(
        select(func.count())
        .select_from(SlaTimer)
        .where(
            SlaTimer.case_id == case.id,
            SlaTimer.kind == TimerKind.REDISPATCH,
            SlaTimer.state == TimerState.ARMED,
        )
    )
    if not pending:
        timers.arm_after(
            uow,
            case_id=case.id,
            kind=TimerKind.REDISPATCH,
            seconds=ctx.sla.redispatch_retry_s,
            now=now,
        )


def offer(
    case: Case, worker: Worker, accept_s: int, now: datetime
) -> tuple[dict[str, Any], timers.TimerRow, dict[str, Any]]:
    """Make `worker` the case's assignee with a new offer (a slot already taken): the task's
    and its acceptance timer's column values, and the TaskOffered event's data."""
    task_id = str(uuid.uuid4())
    accept_due_at = now + timedelta(seconds=accept_s)
    task = {
        "id": task_id,
        "case_id": case.id,
        "worker_id": worker.id,
        "status": TaskStatus.OFFERED,
        "offered_at": now,
        "accept_due_at": accept_due_at,
        "accepted_at": None,
        "arrived_at": None,
        "resolved_at": None,
        "ended_at": None,
        "note": None,
    }
    case.status = CaseStatus.DISPATCHED
    case.assignee_worker_id = worker.id
    timer = timers.timer(
        case_id=case.id,
        task_id=task_id,
        kind=TimerKind.ACCEPT,
        due_at=accept_due_at,
        now=now,
        goal_s=accept_s,
    )
    data = {
        "task_id": task_id,
        "worker_id": worker.id,
        "worker_name": worker.name,
        "worker_grid": worker.grid_code,
        "department": worker.department,
        "accept_due_at": accept_due_at.isoformat(),
    }
    return task, timer, data


def nobody_data(ctx: DispatchContext) -> dict[str, Any]:
    """DispatchFailed: nobody could be offered the case; a retry timer asks again."""
    return {"reason": "no_available_worker", "retry_in_s": ctx.sla.redispatch_retry_s}


async def end_task(
    uow: UnitOfWork, task: Task, status: TaskStatus, now: datetime, note: str | None = None
) -> None:
    """The task ends (declined, expired, returned, taken away or resolved): its worker's slot
    is given back."""
    task.status = status
    if status is TaskStatus.RESOLVED:
        task.resolved_at = now
    else:
        task.ended_at = now
    if note is not None:
        task.note = note
    await give_back_slot(uow, task.worker_id)

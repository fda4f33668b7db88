"""The SLA clock: fire due timers, each exactly once.

A sweep takes one due timer at a time in its own transaction (FOR UPDATE SKIP LOCKED on
PostgreSQL, so several sweepers share the work; SQLite has one writer), locks its case without
waiting (a case another transaction holds is left to the next sweep: everything else locks the
case before its timers, and waiting here would close a deadlock), marks the timer fired and acts:
an unanswered offer expires and moves on (and after the policy's `max_refusals` the grid leader
is called); a clock past `warn_at` of its goal appends SlaWarning; a missed on-site, close or
verify deadline appends SlaBreached and raises the escalation level; each step of the policy's
escalation chain is a timer of its own (dispatch/escalation.py); a passed feedback window closes
the case; a retry re-dispatches.
A timer whose condition no longer holds (the worker arrived in time) fires silently.
"""

from __future__ import annotations

import logging

from sqlalchemy import select, update

from app.cases.events import EventType, append_case_event
from app.cases.states import (
    ACTIVE_TASK,
    AWAITING_OFFER,
    CLOCK_FAMILY,
    CaseStatus,
    TaskStatus,
    TimerKind,
    TimerState,
    clock_running,
)
from app.models import Case, SlaTimer, Task
from app.platform import logs
from app.platform.db import Database, lost_race, unreachable
from app.platform.uow import UnitOfWork
from app.policies.document import policy_for
from dispatch import escalation
from dispatch.assignment import end_task, offer_case
from dispatch.cases import close_case
from dispatch.context import DispatchContext
from dispatch.escalation import after_refusal

log = logging.getLogger(__name__)
ACTOR = "system:sla"


async def sweep(db: Database, ctx: DispatchContext, *, limit: int = 500) -> int:
    """Fire timers due at the clock's now. Returns how many fired."""
    fired = 0
    busy: set[int] = set()  # timers whose case another transaction holds: the next sweep's
    while fired < limit:
        now = ctx.clock.now()
        timer_id: int | None = None
        case_id: str | None = None
        try:
            async with db.transaction() as uow:
                due = (
                    select(SlaTimer)
                    .where(SlaTimer.state == TimerState.ARMED, SlaTimer.due_at <= now)
                    .order_by(SlaTimer.due_at, SlaTimer.id)
                    .limit(1)
                    .with_for_update(skip_locked=True)
                )
                if busy:
                    due = due.where(SlaTimer.id.not_in(busy))
                timer = await uow.session.scalar(due)
                if timer is None:
                    return fired
                timer_id, case_id = timer.id, timer.case_id
                case, held = await _case_unless_busy(uow, timer.case_id)
                if held:
                    busy.add(timer.id)
                    continue
                timer.state = TimerState.FIRED
                timer.fired_at = now
                await fire(uow, ctx, timer, case)
        except Exception as exc:
            if timer_id is None:
                raise
            if unreachable(exc) or lost_race(exc):
                # Nothing was written: the timer stays armed and the next sweep fires it.
                with logs.bind(case_id=case_id):
                    log.warning("SLA timer %s left for the next sweep: %s", timer_id, exc)
                return fired
            # A timer that cannot be handled must not stall the clock for every other case.
            with logs.bind(case_id=case_id):
                log.exception("SLA timer %s failed; marking it failed", timer_id)
            async with db.transaction() as uow:
                await uow.session.execute(
                    update(SlaTimer).where(SlaTimer.id == timer_id).values(state=TimerState.FAILED)
                )
        fired += 1
    return fired


async def _case_unless_busy(uow: UnitOfWork, case_id: str) -> tuple[Case | None, bool]:
    """The timer's case, locked, and whether another transaction holds it instead.

    Everything else locks a case and then its timers; the sweeper holds a timer already, so it
    never waits for the case (that wait is half of a deadlock): it leaves the timer to the next
    sweep instead. (None, False) when the case is gone."""
    case = await uow.session.scalar(
        select(Case).where(Case.id == case_id).with_for_update(skip_locked=True)
    )
    if case is not None:
        return case, False
    exists = await uow.session.scalar(select(Case.id).where(Case.id == case_id))
    return None, exists is not None


async def fire(uow: UnitOfWork, ctx: DispatchContext, timer: SlaTimer, case: Case | None) -> None:
    if case is None:
        return
    kind = TimerKind(timer.kind)
    now = ctx.clock.now()
    if kind is TimerKind.ACCEPT:
        task = await uow.session.get(Task, timer.task_id) if timer.task_id else None
        if task is None or task.status != TaskStatus.OFFERED:
            return
        await end_task(uow, task, TaskStatus.EXPIRED, now)
        append_case_event(
            uow,
            case,
            EventType.TASK_EXPIRED,
            actor=ACTOR,
            now=now,
            data={"task_id": task.id, "worker_id": task.worker_id},
        )
        await after_refusal(uow, ctx, case)
        await offer_case(uow, ctx, case, actor=ACTOR)
    elif kind.clock in CLOCK_FAMILY:
        if not clock_running(kind.clock, case.status):
            return
        if kind in CLOCK_FAMILY:
            await _breach(uow, ctx, case, timer)
        elif kind is CLOCK_FAMILY[kind.clock][0]:
            await _warn(uow, ctx, case, timer)
        else:
            await escalation.step(uow, ctx, case, timer)
    elif kind is TimerKind.FEEDBACK and case.status == CaseStatus.RESOLVED:
        await close_case(uow, ctx, case, actor=ACTOR, reason="feedback_window_elapsed")
    elif kind is TimerKind.REDISPATCH and case.status in AWAITING_OFFER:
        active = await uow.session.scalar(
            select(Task.id).where(Task.case_id == case.id, Task.status.in_(ACTIVE_TASK))
        )
        if active is None:
            await offer_case(uow, ctx, case, actor=ACTOR, fresh_start=True)


async def _warn(uow: UnitOfWork, ctx: DispatchContext, case: Case, timer: SlaTimer) -> None:
    clock = TimerKind(timer.kind).clock
    policy = await policy_for(uow, case.category, case.priority)
    warn_at = ctx.warn_at(policy)
    due = await uow.session.scalar(
        select(SlaTimer.due_at).where(
            SlaTimer.case_id == case.id,
            SlaTimer.kind == clock,
            SlaTimer.state == TimerState.ARMED,
        )
    )
    if due is None:
        return  # the clock itself has stopped
    append_case_event(
        uow,
        case,
        EventType.SLA_WARNING,
        actor=ACTOR,
        now=ctx.clock.now(),
        data={
            "clock": clock.value,
            "due_at": due.isoformat(),
            "percent": round(warn_at * 100),
            "assignee": case.assignee_worker_id,
            "status": case.status,
        },
    )


async def _breach(uow: UnitOfWork, ctx: DispatchContext, case: Case, timer: SlaTimer) -> None:
    await escalation.raise_level(
        uow,
        ctx,
        case,
        EventType.SLA_BREACHED,
        {
            "clock": timer.kind,
            "due_at": timer.due_at.isoformat(),
            "assignee": case.assignee_worker_id,
            "status": case.status,
        },
    )

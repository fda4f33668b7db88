"""SLA timers are rows: armed with a due time, fired once by the sweeper, or cancelled."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.models import SlaPolicy, SlaTimer
from app.core.states import CLOCK_FAMILY, LIVE_TIMER, TimerKind, TimerState
from dispatch.context import DispatchContext


def arm(
    session: AsyncSession,
    *,
    case_id: str,
    kind: TimerKind,
    due_at: datetime,
    now: datetime,
    task_id: str | None = None,
    goal_s: int | None = None,
) -> SlaTimer:
    timer = SlaTimer(
        case_id=case_id,
        task_id=task_id,
        kind=kind,
        due_at=due_at,
        state=TimerState.ARMED,
        created_at=now,
        goal_s=goal_s,
    )
    session.add(timer)
    return timer


def arm_after(
    session: AsyncSession,
    *,
    case_id: str,
    kind: TimerKind,
    seconds: int,
    now: datetime,
    task_id: str | None = None,
) -> SlaTimer:
    return arm(
        session,
        case_id=case_id,
        kind=kind,
        due_at=now + timedelta(seconds=seconds),
        now=now,
        task_id=task_id,
    )


async def cancel(
    session: AsyncSession,
    *,
    case_id: str,
    kinds: Iterable[TimerKind],
    now: datetime,
    task_id: str | None = None,
) -> None:
    """Cancel the armed timers of these kinds on a case (and task, when given): the clock was
    met or no longer applies. `fired_at` records when it stopped."""
    stmt = (
        update(SlaTimer)
        .where(
            SlaTimer.case_id == case_id,
            SlaTimer.state.in_(LIVE_TIMER),
            SlaTimer.kind.in_(list(kinds)),
        )
        .values(state=TimerState.CANCELLED, fired_at=now)
    )
    if task_id is not None:
        stmt = stmt.where(SlaTimer.task_id == task_id)
    await session.execute(stmt)


def arm_clocks(
    session: AsyncSession,
    ctx: DispatchContext,
    policy: SlaPolicy,
    *,
    case_id: str,
    start: datetime,
    clocks: Iterable[TimerKind] = (TimerKind.ON_SITE, TimerKind.CLOSE),
) -> dict[TimerKind, datetime]:
    """Arm a case's clocks from `start` in the policy's calendar, each with its warning at
    `warn_at` of the way and its escalation steps (each `after_s` past its due time). Returns
    each clock's due time."""
    calendar, now = ctx.calendar(policy.calendar), ctx.clock.now()
    warn_at = ctx.warn_at(policy)
    goals = {
        TimerKind.ON_SITE: policy.on_site_s,
        TimerKind.CLOSE: policy.close_s,
        TimerKind.VERIFY: policy.verify_s,
    }
    dues = {}
    for clock in clocks:
        goal = goals[clock]
        if goal is None:
            continue
        warning, escalation = CLOCK_FAMILY[clock]
        due = calendar.add(start, goal)
        arm(session, case_id=case_id, kind=clock, due_at=due, now=now, goal_s=goal)
        if 0 < warn_at < 1:
            arm(
                session,
                case_id=case_id,
                kind=warning,
                due_at=calendar.add(start, goal * warn_at),
                now=now,
            )
        for i, step in enumerate(policy.escalation):
            if step.get("clock") == clock.value:
                timer = arm(
                    session,
                    case_id=case_id,
                    kind=escalation,
                    due_at=calendar.add(due, float(step.get("after_s", 0))),
                    now=now,
                )
                timer.step, timer.action = i, str(step.get("action"))
        dues[clock] = due
    return dues

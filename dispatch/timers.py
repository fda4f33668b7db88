"""SLA timers are rows: armed with a due time, fired once by the sweeper, or cancelled."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.models import SlaPolicy, SlaTimer
from dispatch.context import DispatchContext
from dispatch.states import TimerKind, TimerState


def arm(
    session: AsyncSession,
    *,
    case_id: str,
    kind: TimerKind,
    due_at: datetime,
    now: datetime,
    task_id: str | None = None,
) -> SlaTimer:
    timer = SlaTimer(
        case_id=case_id,
        task_id=task_id,
        kind=kind.value,
        due_at=due_at,
        state=TimerState.ARMED.value,
        created_at=now,
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
            SlaTimer.state.in_([TimerState.ARMED.value, TimerState.PAUSED.value]),
            SlaTimer.kind.in_([k.value for k in kinds]),
        )
        .values(state=TimerState.CANCELLED.value, fired_at=now)
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
) -> tuple[datetime, datetime]:
    """Arm a case's on-site and close clocks from `start` in the policy's calendar, each with
    its warning at `sla.warn_at` of the way. Returns the two due times."""
    calendar, warn_at, now = ctx.calendar(policy.calendar), ctx.sla.warn_at, ctx.clock.now()
    dues = []
    for kind, warning, goal in (
        (TimerKind.ON_SITE, TimerKind.ON_SITE_WARNING, policy.on_site_s),
        (TimerKind.CLOSE, TimerKind.CLOSE_WARNING, policy.close_s),
    ):
        due = calendar.add(start, goal)
        arm(session, case_id=case_id, kind=kind, due_at=due, now=now)
        if 0 < warn_at < 1:
            warn = calendar.add(start, goal * warn_at)
            arm(session, case_id=case_id, kind=warning, due_at=warn, now=now)
        dues.append(due)
    return dues[0], dues[1]

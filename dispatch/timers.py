"""SLA timers are rows: armed with a due time, fired once by the sweeper, or cancelled."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.models import SlaTimer
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
    session: AsyncSession, *, case_id: str, kinds: Iterable[TimerKind], task_id: str | None = None
) -> None:
    """Cancel the armed timers of these kinds on a case (and task, when given)."""
    stmt = (
        update(SlaTimer)
        .where(
            SlaTimer.case_id == case_id,
            SlaTimer.state == TimerState.ARMED.value,
            SlaTimer.kind.in_([k.value for k in kinds]),
        )
        .values(state=TimerState.CANCELLED.value)
    )
    if task_id is not None:
        stmt = stmt.where(SlaTimer.task_id == task_id)
    await session.execute(stmt)

"""SLA timers are rows: armed with a due time, fired once by the sweeper, or cancelled."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update

from app.cases.states import CLOCK_FAMILY, LIVE_TIMER, TimerKind, TimerState
from app.models import SlaPolicy, SlaTimer
from app.platform.uow import UnitOfWork
from dispatch.context import DispatchContext

TimerRow = dict[str, Any]  # an sla_timers row's columns, id left out


def timer(
    *,
    case_id: str,
    kind: TimerKind,
    due_at: datetime,
    now: datetime,
    task_id: str | None = None,
    goal_s: int | None = None,
    step: int | None = None,
    action: str | None = None,
) -> TimerRow:
    """A new armed timer's column values (every column but its id: the batched engine writes
    them with a plain INSERT, the one-case path as `SlaTimer(**row)`)."""
    return {
        "case_id": case_id,
        "task_id": task_id,
        "kind": kind,
        "due_at": due_at,
        "state": TimerState.ARMED,
        "created_at": now,
        "fired_at": None,
        "paused_remaining_s": None,
        "goal_s": goal_s,
        "step": step,
        "action": action,
    }


def arm(
    uow: UnitOfWork,
    *,
    case_id: str,
    kind: TimerKind,
    due_at: datetime,
    now: datetime,
    task_id: str | None = None,
    goal_s: int | None = None,
) -> SlaTimer:
    row = SlaTimer(
        **timer(case_id=case_id, kind=kind, due_at=due_at, now=now, task_id=task_id, goal_s=goal_s)
    )
    uow.session.add(row)
    return row


def arm_after(
    uow: UnitOfWork,
    *,
    case_id: str,
    kind: TimerKind,
    seconds: int,
    now: datetime,
    task_id: str | None = None,
) -> SlaTimer:
    return arm(
        uow,
        case_id=case_id,
        kind=kind,
        due_at=now + timedelta(seconds=seconds),
        now=now,
        task_id=task_id,
    )


async def cancel(
    uow: UnitOfWork,
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
    await uow.session.execute(stmt)


def clock_timers(
    ctx: DispatchContext,
    policy: SlaPolicy,
    *,
    case_id: str,
    start: datetime,
    clocks: Iterable[TimerKind] = (TimerKind.ON_SITE, TimerKind.CLOSE),
) -> tuple[list[TimerRow], dict[TimerKind, datetime]]:
    """A case's clocks from `start` in the policy's calendar, each with its warning at
    `warn_at` of the way and its escalation steps (each `after_s` past its due time, with its
    place in the chain and its action fixed now), as new rows; and each clock's due time."""
    calendar, now = ctx.calendar(policy.calendar), ctx.clock.now()
    warn_at = ctx.warn_at(policy)
    goals = {
        TimerKind.ON_SITE: policy.on_site_s,
        TimerKind.CLOSE: policy.close_s,
        TimerKind.VERIFY: policy.verify_s,
    }
    rows: list[TimerRow] = []
    dues = {}
    for clock in clocks:
        goal = goals[clock]
        if goal is None:
            continue
        warning, escalation = CLOCK_FAMILY[clock]
        due = calendar.add(start, goal)
        rows.append(timer(case_id=case_id, kind=clock, due_at=due, now=now, goal_s=goal))
        if 0 < warn_at < 1:
            warn_due = calendar.add(start, goal * warn_at)
            rows.append(timer(case_id=case_id, kind=warning, due_at=warn_due, now=now))
        for i, step in enumerate(policy.escalation):
            if step.get("clock") == clock.value:
                step_due = calendar.add(due, float(step.get("after_s", 0)))
                rows.append(
                    timer(
                        case_id=case_id,
                        kind=escalation,
                        due_at=step_due,
                        now=now,
                        step=i,
                        action=str(step.get("action")),
                    )
                )
        dues[clock] = due
    return rows, dues


def arm_clocks(
    uow: UnitOfWork,
    ctx: DispatchContext,
    policy: SlaPolicy,
    *,
    case_id: str,
    start: datetime,
    clocks: Iterable[TimerKind] = (TimerKind.ON_SITE, TimerKind.CLOSE),
) -> dict[TimerKind, datetime]:
    """Arm a case's clocks (`clock_timers`); returns each clock's due time."""
    rows, dues = clock_timers(ctx, policy, case_id=case_id, start=start, clocks=clocks)
    uow.session.add_all(SlaTimer(**row) for row in rows)
    return dues

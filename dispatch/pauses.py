"""Stopping and restarting a case's SLA clocks.

While a case waits for the resident (a question asked, access to a courtyard) or runs on an
approved extension (延期, with its reason and approver), its on-site, close and verify clocks
with their warnings and escalation steps stop: each running timer keeps the calendar time it
had left and leaves the sweeper's view. Resuming re-arms each from that moment with exactly the
time it had left, in its policy's calendar, so the pause is accounted to the second and a pause
over a night or weekend costs a working-hours clock nothing extra. Both steps are
case events, in the case's sealed history.
"""

from __future__ import annotations

from sqlalchemy import select

from app.cases.events import EventType, append_case_event
from app.cases.states import PAUSABLE, PauseKind, TimerKind, TimerState, family
from app.models import Case, SlaTimer
from app.platform.errors import CaseNotFound, InvalidTransition
from app.platform.uow import UnitOfWork
from app.policies.document import policy_for
from dispatch.context import DispatchContext

CLOCKS = family(TimerKind.ON_SITE, TimerKind.CLOSE, TimerKind.VERIFY)


async def _load(uow: UnitOfWork, case_id: str) -> Case:
    case = await uow.session.get(Case, case_id, with_for_update=True)
    if case is None:
        raise CaseNotFound(f"case {case_id} does not exist")
    return case


async def _clocks(uow: UnitOfWork, case: Case, state: TimerState) -> list[SlaTimer]:
    rows = await uow.session.scalars(
        select(SlaTimer).where(
            SlaTimer.case_id == case.id,
            SlaTimer.state == state,
            SlaTimer.kind.in_(CLOCKS),
        )
    )
    return list(rows)


async def pause(
    uow: UnitOfWork,
    ctx: DispatchContext,
    case_id: str,
    *,
    kind: PauseKind,
    reason: str,
    actor: str,
) -> Case:
    case = await _load(uow, case_id)
    if case.paused_at is not None:
        raise InvalidTransition("the case's clocks are already stopped", state="paused")
    if case.status not in PAUSABLE:
        raise InvalidTransition(f"a {case.status} case has no running clock", state=case.status)
    now = ctx.clock.now()
    policy = await policy_for(uow, case.category, case.priority)
    calendar = ctx.calendar(policy.calendar if policy else "24x7")
    for timer in await _clocks(uow, case, TimerState.ARMED):
        timer.paused_remaining_s = max(0.0, calendar.elapsed(now, timer.due_at))
        timer.state = TimerState.PAUSED
    case.paused_at, case.pause_kind = now, kind
    append_case_event(
        uow,
        case,
        EventType.SLA_PAUSED,
        actor=actor,
        now=now,
        data={"kind": kind.value, "reason": reason, "approver": actor},
    )
    return case


async def resume(uow: UnitOfWork, ctx: DispatchContext, case_id: str, *, actor: str) -> Case:
    case = await _load(uow, case_id)
    if case.paused_at is None:
        raise InvalidTransition("the case's clocks are running", state=case.status)
    await _end(uow, ctx, case, actor=actor, ended_by=None)
    return case


async def end_with_the_work(
    uow: UnitOfWork, ctx: DispatchContext, case: Case, *, actor: str, ended_by: str
) -> None:
    """Work done on a case whose clocks are stopped (resolved, verified, closed) ends the pause
    too: SlaResumed with `ended_by`, and the stopped clocks stay stopped (the caller meets or
    cancels them)."""
    if case.paused_at is not None:
        await _end(uow, ctx, case, actor=actor, ended_by=ended_by)


async def _end(
    uow: UnitOfWork,
    ctx: DispatchContext,
    case: Case,
    *,
    actor: str,
    ended_by: str | None,
) -> None:
    assert case.paused_at is not None
    now = ctx.clock.now()
    policy = await policy_for(uow, case.category, case.priority)
    calendar = ctx.calendar(policy.calendar if policy else "24x7")
    if ended_by is None:
        for timer in await _clocks(uow, case, TimerState.PAUSED):
            timer.due_at = calendar.add(now, timer.paused_remaining_s or 0.0)
            timer.state = TimerState.ARMED
            timer.paused_remaining_s = None
    paused_s = calendar.elapsed(case.paused_at, now)
    data: dict[str, object] = {"kind": case.pause_kind, "paused_s": round(paused_s, 3)}
    if ended_by is not None:
        data["ended_by"] = ended_by
    case.paused_at, case.pause_kind = None, None
    append_case_event(uow, case, EventType.SLA_RESUMED, actor=actor, now=now, data=data)

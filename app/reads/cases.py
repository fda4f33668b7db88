"""Cases as operators see them: one case whole, a page of summaries, and each clock's state."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.scopes import Scope
from app.cases import queries
from app.cases.states import ACTIVE_TASK, CaseStatus
from app.models import Case, Report, SlaTimer, Task
from app.policies.document import find_policy
from app.reads.common import deadlines, timeline, timers_of
from app.reads.schemas import CasePage, CaseRead, CaseSummary, ClockState, TaskBrief, TimerRead
from dispatch.context import DispatchContext
from dispatch.sla_state import clock_readings


async def sla_state(
    session: AsyncSession,
    ctx: DispatchContext,
    case: Case,
    timers: list[SlaTimer] | None = None,
) -> list[ClockState]:
    """The case's clocks (dispatch/sla_state.py), from its timers when the caller has them."""
    if timers is None:
        timers = (await timers_of(session, [case.id]))[case.id]
    policy = await find_policy(session, case.category, case.priority)
    return [
        ClockState.model_validate(r, from_attributes=True)
        for r in clock_readings(ctx, policy, timers)
    ]


async def sla_states(
    session: AsyncSession, ctx: DispatchContext, case_ids: Collection[str]
) -> dict[str, list[ClockState]]:
    """The clocks of many cases in three queries (cases, timers, their policies); a case that
    does not exist has no clocks."""
    ids = sorted(set(case_ids))
    if not ids:
        return {}
    cases = list(await session.scalars(select(Case).where(Case.id.in_(ids))))
    timers = await timers_of(session, [c.id for c in cases])
    policies = {}
    for key in {(c.category, c.priority) for c in cases}:
        policies[key] = await find_policy(session, *key)
    states: dict[str, list[ClockState]] = {case_id: [] for case_id in ids}
    for case in cases:
        states[case.id] = [
            ClockState.model_validate(r, from_attributes=True)
            for r in clock_readings(ctx, policies[(case.category, case.priority)], timers[case.id])
        ]
    return states


async def active_task(session: AsyncSession, case_id: str) -> Task | None:
    return await session.scalar(
        select(Task)
        .where(Task.case_id == case_id, Task.status.in_(ACTIVE_TASK))
        .order_by(Task.offered_at.desc())
        .limit(1)
    )


def case_summary(case: Case) -> CaseSummary:
    return CaseSummary(
        id=case.id,
        status=case.status,
        category=case.category,
        grid=case.grid_code,
        priority=case.priority,
        escalation_level=case.escalation_level,
        assignee_worker_id=case.assignee_worker_id,
        department=case.department,
        created_at=case.created_at,
        updated_at=case.updated_at,
        closed_at=case.closed_at,
        location={"lat": case.lat, "lon": case.lon},
    )


async def case_view(session: AsyncSession, ctx: DispatchContext, case: Case) -> CaseRead:
    """One case whole: its task, reports, deadlines, clocks, timers and timeline."""
    task = await active_task(session, case.id)
    report_ids = list(
        await session.scalars(
            select(Report.id).where(Report.case_id == case.id).order_by(Report.created_at)
        )
    )
    timers = (await timers_of(session, [case.id]))[case.id]
    return CaseRead(
        **case_summary(case).model_dump(),
        grid_set_version=case.grid_set_version,
        resolved_at=case.resolved_at,
        report_ids=report_ids,
        task=TaskBrief(
            id=task.id,
            worker_id=task.worker_id,
            status=task.status,
            offered_at=task.offered_at,
            accept_due_at=task.accept_due_at,
        )
        if task
        else None,
        deadlines=deadlines(timers),
        sla=await sla_state(session, ctx, case, timers),
        timers=[
            TimerRead(kind=t.kind, due_at=t.due_at, state=t.state, fired_at=t.fired_at)
            for t in timers
        ],
        timeline=await timeline(session, case.id, for_resident=False),
    )


async def case_page(
    session: AsyncSession,
    *,
    now: datetime,
    status: CaseStatus | None,
    grid: str | None,
    category: str | None,
    overdue: bool | None,
    limit: int,
    offset: int,
    department: str | None = None,
    scope: Scope | None = None,
) -> CasePage:
    """Cases newest first, in two queries. Overdue: open, with an on-site, close or verify
    deadline passed. `department`: that department's queue. `scope`: only the cases inside
    it, whatever the other filters."""
    stmt = select(Case)
    if scope is not None:
        stmt = stmt.where(scope.cases())
    if department:
        stmt = stmt.where(Case.department == department)
    if status:
        stmt = stmt.where(Case.status == status)
    if grid:
        stmt = stmt.where(Case.grid_code.startswith(grid, autoescape=True))
    if category:
        stmt = stmt.where(Case.category == category)
    if overdue is not None:
        is_late = queries.overdue(now)
        stmt = stmt.where(is_late if overdue else ~is_late)
    total = await session.scalar(select(func.count()).select_from(stmt.subquery()))
    rows = await session.scalars(
        stmt.order_by(Case.created_at.desc(), Case.id).limit(limit).offset(offset)
    )
    return CasePage(
        items=[case_summary(c) for c in rows], total=int(total or 0), limit=limit, offset=offset
    )

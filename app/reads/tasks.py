"""Tasks as their workers see them, and the cases waiting for an inspector."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.cases.states import ACTIVE_TASK, CaseStatus, TaskStatus, TimerKind, TimerState
from app.models import Case, Photo, Report, SlaTimer, Task, Worker
from app.reads.common import deadlines, timers_of
from app.reads.schemas import PendingVerification, TaskRead
from geo import haversine_m


async def task_views(session: AsyncSession, tasks: Sequence[Task]) -> list[TaskRead]:
    """The tasks with their cases, first reports, residents' photos and deadlines, in four
    queries however many tasks there are."""
    if not tasks:
        return []
    case_ids = sorted({t.case_id for t in tasks})
    cases = {c.id: c for c in await session.scalars(select(Case).where(Case.id.in_(case_ids)))}
    reports = await session.scalars(
        select(Report).where(Report.case_id.in_(case_ids)).order_by(Report.created_at, Report.id)
    )
    first: dict[str, Report] = {}
    report_case: dict[str, str] = {}
    for row in reports:
        assert row.case_id is not None
        first.setdefault(row.case_id, row)
        report_case[row.id] = row.case_id
    photos: dict[str, list[str]] = {c: [] for c in case_ids}
    if report_case:
        rows = await session.execute(
            select(Photo.id, Photo.report_id)
            .where(Photo.report_id.in_(sorted(report_case)))
            .order_by(Photo.created_at, Photo.id)
        )
        for photo_id, report_id in rows:
            assert report_id is not None
            photos[report_case[report_id]].append(f"/v1/photos/{photo_id}")
    timers = await timers_of(session, case_ids)
    out = []
    for task in tasks:
        case = cases[task.case_id]
        report = first.get(case.id)
        out.append(
            TaskRead(
                id=task.id,
                case_id=case.id,
                status=task.status,
                category=case.category,
                grid=case.grid_code,
                location={"lat": case.lat, "lon": case.lon},
                description=report.description if report else "",
                address=report.address if report else None,
                offered_at=task.offered_at,
                accept_due_at=task.accept_due_at,
                accepted_at=task.accepted_at,
                arrived_at=task.arrived_at,
                resolved_at=task.resolved_at,
                deadlines=deadlines(timers[case.id]),
                escalation_level=case.escalation_level,
                photo_urls=photos[case.id],
            )
        )
    return out


async def task_view(session: AsyncSession, task: Task) -> TaskRead:
    [view] = await task_views(session, [task])
    return view


async def worker_tasks(session: AsyncSession, worker_id: str) -> list[TaskRead]:
    """A worker's active tasks, oldest offer first, in five queries."""
    rows = await session.scalars(
        select(Task)
        .where(Task.worker_id == worker_id, Task.status.in_(ACTIVE_TASK))
        .order_by(Task.offered_at)
    )
    return await task_views(session, list(rows))


async def pending_verifications(
    session: AsyncSession, inspector: Worker, limit: int = 50
) -> list[PendingVerification]:
    """Cases waiting for 核查, nearest to the inspector first (soonest due when the location is
    unknown); never the inspector's own work."""
    own = select(Task.case_id).where(
        Task.worker_id == inspector.id, Task.status == TaskStatus.RESOLVED
    )
    rows = await session.execute(
        select(Case, SlaTimer.due_at)
        .outerjoin(
            SlaTimer,
            (SlaTimer.case_id == Case.id)
            & (SlaTimer.kind == TimerKind.VERIFY)
            & (SlaTimer.state != TimerState.CANCELLED),
        )
        .where(Case.status == CaseStatus.VERIFYING, Case.id.not_in(own))
        .limit(2000)
    )
    out = []
    for case, due in rows:
        distance = None
        if inspector.lon is not None and inspector.lat is not None:
            distance = round(haversine_m(inspector.lon, inspector.lat, case.lon, case.lat), 1)
        out.append(
            PendingVerification(
                case_id=case.id,
                category=case.category,
                grid=case.grid_code,
                location={"lat": case.lat, "lon": case.lon},
                resolved_at=case.resolved_at,
                verify_due_at=due,
                distance_m=distance,
            )
        )
    far, never = float("inf"), datetime.max.replace(tzinfo=UTC)
    out.sort(
        key=lambda p: (
            p.distance_m if p.distance_m is not None else far,
            p.verify_due_at or never,
            p.case_id,
        )
    )
    return out[:limit]

"""Read models: the queries behind GET answers, shaped into response schemas."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import ColumnElement, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.auth import Principal, Role
from app.core.models import (
    Case,
    CaseEvent,
    Category,
    Feedback,
    Photo,
    Report,
    SlaPolicy,
    SlaTimer,
    Task,
    Worker,
)
from app.core.policies import find_policy
from app.core.states import (
    ACTIVE_TASK,
    DEADLINES,
    OPEN,
    SHOWN_CLOCKS,
    UNMET_TIMER,
    CaseStatus,
    TaskStatus,
    TimerKind,
    TimerState,
)
from app.http.schemas import (
    Assignee,
    CasePage,
    CaseRead,
    CaseSummary,
    CategoryRead,
    ClockState,
    Deadlines,
    GridPathItem,
    GridRead,
    PendingVerification,
    ReportRead,
    TaskBrief,
    TaskRead,
    TimelineEntry,
    TimerRead,
    WorkerProfileRead,
)
from dispatch.context import DispatchContext
from geo import GridIndex, haversine_m

# What a resident may see of an event's data: progress, never other people's identifiers.
RESIDENT_FIELDS = frozenset(
    {
        "worker_name",
        "note",
        "clock",
        "due_at",
        "escalation_level",
        "satisfied",
        "score",
        "reason",
        "on_site_due_at",
        "close_due_at",
        "category",
        "grid",
        "accept_due_at",
    }
)


# How a stopped timer shows its clock: met when cancelled, breached when fired, else running.
CLOCK_SHOWN_AS = {
    TimerState.CANCELLED: "met",
    TimerState.FIRED: "breached",
    TimerState.PAUSED: "paused",
}


def resident_safe(data: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in data.items() if k in RESIDENT_FIELDS}


def grid_read(index: GridIndex | None, code: str) -> GridRead:
    if index is None:
        return GridRead(code=code, name=code, path=[])
    grid = index.get(code)
    return GridRead(
        code=code,
        name=grid.name if grid else code,
        path=[
            GridPathItem(code=g.code, name=g.name, level=g.level.value) for g in index.path(code)
        ],
    )


async def photo_urls(session: AsyncSession, which: ColumnElement[bool]) -> list[str]:
    ids = await session.scalars(select(Photo.id).where(which).order_by(Photo.created_at, Photo.id))
    return [f"/v1/photos/{i}" for i in ids]


async def may_see_photo(session: AsyncSession, photo: Photo, who: Principal) -> bool:
    """Residents their own reports' photos and the resolution photos of their cases; workers
    the photos of cases they hold or held a task for; operators and admins all."""
    if who.role in (Role.OPERATOR, Role.ADMIN):
        return True
    if photo.report_id is not None:
        report = await session.get(Report, photo.report_id)
        case_id = report.case_id if report else None
        if who.role is Role.RESIDENT:
            return report is not None and report.reporter_id == who.subject
    else:
        task = await session.get(Task, photo.task_id) if photo.task_id else None
        case_id = task.case_id if task else None
        if who.role is Role.RESIDENT:
            mine = await session.scalar(
                select(Report.id).where(
                    Report.case_id == case_id, Report.reporter_id == who.subject
                )
            )
            return case_id is not None and mine is not None
    if who.role is Role.WORKER and case_id is not None:
        held = await session.scalar(
            select(Task.id).where(Task.case_id == case_id, Task.worker_id == who.subject)
        )
        return held is not None
    return False


def public_actor(actor: str) -> str:
    """Who acted, as the live feed shows it: staff and devices by id, residents only as
    "resident" (the wall screen needs the role, not the person)."""
    return "resident" if actor.startswith("resident:") else actor


def report_links(report_id: str) -> dict[str, str]:
    base = f"/v1/reports/{report_id}"
    return {"self": base, "events": f"{base}/events", "feedback": f"{base}/feedback"}


async def deadlines(session: AsyncSession, case_id: str) -> Deadlines:
    """The latest due time of each clock (a reopened case has new ones); the acceptance
    deadline only while an offer is open."""
    rows = await session.scalars(
        select(SlaTimer).where(SlaTimer.case_id == case_id).order_by(SlaTimer.id)
    )
    out = Deadlines()
    for t in rows:
        if t.kind is TimerKind.ACCEPT and t.state is TimerState.ARMED:
            out.accept_due_at = t.due_at
        elif t.kind is TimerKind.ON_SITE:
            out.on_site_due_at = t.due_at
        elif t.kind is TimerKind.CLOSE:
            out.close_due_at = t.due_at
    return out


async def sla_state(session: AsyncSession, ctx: DispatchContext, case: Case) -> list[ClockState]:
    """Each clock's goal, due time, time counted and left in its calendar, and whether it is
    running, met or breached (the newest run of each clock: a reopened case starts again)."""
    policy = await find_policy(session, case.category, case.priority)
    if policy is None:
        return []
    rows = await session.scalars(
        select(SlaTimer)
        .where(SlaTimer.case_id == case.id, SlaTimer.kind.in_(SHOWN_CLOCKS))
        .order_by(SlaTimer.id)
    )
    newest = {t.kind: t for t in rows}
    now = ctx.clock.now()
    out = []
    for kind in SHOWN_CLOCKS:
        timer = newest.get(kind)
        if timer is None or (kind is TimerKind.ACCEPT and timer.state is not TimerState.ARMED):
            continue  # the accept clock is shown while an offer is open
        calendar_name = "24x7" if kind is TimerKind.ACCEPT else policy.calendar
        calendar = ctx.calendar(calendar_name)
        goal = timer.goal_s  # as armed; older rows: the policy's
        if goal is None:
            goal = {
                TimerKind.ACCEPT: policy.accept_s,
                TimerKind.ON_SITE: policy.on_site_s,
                TimerKind.CLOSE: policy.close_s,
                TimerKind.VERIFY: policy.verify_s or 0,
            }[kind]
        state = CLOCK_SHOWN_AS.get(timer.state, "running")
        at = (timer.fired_at or now) if state == "met" else now
        due = timer.due_at
        if state == "paused":
            remaining = timer.paused_remaining_s or 0.0
        else:
            remaining = calendar.elapsed(at, due) if at <= due else -calendar.elapsed(due, at)
        out.append(
            ClockState(
                clock=kind.value,
                calendar=calendar_name,
                goal_s=goal,
                due_at=due,
                elapsed_s=round(goal - remaining, 3),
                remaining_s=round(remaining, 3),
                state=state,
                paused=state == "paused",
                breached=state == "breached" or remaining < 0,
            )
        )
    return out


async def timeline(
    session: AsyncSession, case_id: str, *, for_resident: bool
) -> list[TimelineEntry]:
    rows = await session.scalars(
        select(CaseEvent).where(CaseEvent.case_id == case_id).order_by(CaseEvent.seq)
    )
    return [
        TimelineEntry(
            cursor=r.id,
            type=r.type,
            occurred_at=r.occurred_at,
            data=resident_safe(r.data) if for_resident else r.data,
        )
        for r in rows
    ]


async def active_task(session: AsyncSession, case_id: str) -> Task | None:
    return await session.scalar(
        select(Task)
        .where(Task.case_id == case_id, Task.status.in_(ACTIVE_TASK))
        .order_by(Task.offered_at.desc())
        .limit(1)
    )


async def report_view(
    session: AsyncSession,
    ctx: DispatchContext,
    index: GridIndex | None,
    report: Report,
    *,
    for_resident: bool,
) -> ReportRead:
    case = await session.get(Case, report.case_id) if report.case_id else None
    assignee = None
    dl = Deadlines()
    events: list[TimelineEntry] = []
    clocks: list[ClockState] = []
    if case is not None:
        clocks = await sla_state(session, ctx, case)
        if case.assignee_worker_id:
            worker = await session.get(Worker, case.assignee_worker_id)
            if worker is not None:
                assignee = Assignee(display_name=worker.name)
        dl = await deadlines(session, case.id)
        events = await timeline(session, case.id, for_resident=for_resident)
    photos = await photo_urls(session, Photo.report_id == report.id)
    feedback = await session.scalar(select(Feedback.id).where(Feedback.report_id == report.id))
    return ReportRead(
        id=report.id,
        status=case.status if case else "received",
        category=report.category,
        description=report.description,
        address=report.address,
        grid=grid_read(index, report.grid_code),
        created_at=report.created_at,
        case_id=report.case_id,
        escalation_level=case.escalation_level if case else 0,
        assignee=assignee,
        deadlines=dl,
        sla=clocks,
        photos=len(photos),
        photo_urls=photos,
        feedback_given=feedback is not None,
        timeline=events,
        links=report_links(report.id),
    )


async def task_view(session: AsyncSession, task: Task) -> TaskRead:
    case = await session.get(Case, task.case_id)
    assert case is not None
    first = await session.scalar(
        select(Report).where(Report.case_id == case.id).order_by(Report.created_at).limit(1)
    )
    photos = await photo_urls(
        session, Photo.report_id.in_(select(Report.id).where(Report.case_id == case.id))
    )
    return TaskRead(
        id=task.id,
        case_id=case.id,
        status=task.status,
        category=case.category,
        grid=case.grid_code,
        location={"lat": case.lat, "lon": case.lon},
        description=first.description if first else "",
        address=first.address if first else None,
        offered_at=task.offered_at,
        accept_due_at=task.accept_due_at,
        accepted_at=task.accepted_at,
        arrived_at=task.arrived_at,
        resolved_at=task.resolved_at,
        deadlines=await deadlines(session, case.id),
        escalation_level=case.escalation_level,
        photo_urls=photos,
    )


async def worker_tasks(session: AsyncSession, worker_id: str) -> list[TaskRead]:
    rows = await session.scalars(
        select(Task)
        .where(Task.worker_id == worker_id, Task.status.in_(ACTIVE_TASK))
        .order_by(Task.offered_at)
    )
    return [await task_view(session, t) for t in rows]


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
    task = await active_task(session, case.id)
    report_ids = list(
        await session.scalars(
            select(Report.id).where(Report.case_id == case.id).order_by(Report.created_at)
        )
    )
    timers = await session.scalars(
        select(SlaTimer).where(SlaTimer.case_id == case.id).order_by(SlaTimer.id)
    )
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
        deadlines=await deadlines(session, case.id),
        sla=await sla_state(session, ctx, case),
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
) -> CasePage:
    """Cases newest first. Overdue: not closed, with an on-site, close or verify deadline
    passed. `department`: that department's queue."""
    stmt = select(Case)
    if department:
        stmt = stmt.where(Case.department == department)
    if status:
        stmt = stmt.where(Case.status == status)
    if grid:
        stmt = stmt.where(Case.grid_code.startswith(grid, autoescape=True))
    if category:
        stmt = stmt.where(Case.category == category)
    if overdue is not None:
        late = exists().where(
            SlaTimer.case_id == Case.id,
            SlaTimer.kind.in_(DEADLINES),
            SlaTimer.state.in_(UNMET_TIMER),
            SlaTimer.due_at <= now,
        )
        is_late = late & Case.status.in_(OPEN)
        stmt = stmt.where(is_late if overdue else ~is_late)
    total = await session.scalar(select(func.count()).select_from(stmt.subquery()))
    rows = await session.scalars(
        stmt.order_by(Case.created_at.desc(), Case.id).limit(limit).offset(offset)
    )
    return CasePage(
        items=[case_summary(c) for c in rows], total=int(total or 0), limit=limit, offset=offset
    )


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


async def categories(session: AsyncSession) -> list[CategoryRead]:
    rows = await session.execute(
        select(Category, SlaPolicy)
        .join(SlaPolicy, SlaPolicy.category_code == Category.code)
        .where(SlaPolicy.priority == 0)
        .order_by(Category.priority, Category.code)
    )
    return [
        CategoryRead(
            code=c.code,
            name_zh=c.name_zh,
            name_en=c.name_en,
            priority=c.priority,
            accept_s=p.accept_s,
            on_site_s=p.on_site_s,
            close_s=p.close_s,
            calendar=p.calendar,
            verify_s=p.verify_s,
            department=c.department,
            skill=c.skill,
        )
        for c, p in rows
    ]


async def worker_profile(session: AsyncSession, worker: Worker) -> WorkerProfileRead:
    return WorkerProfileRead(
        id=worker.id,
        name=worker.name,
        grid=worker.grid_code,
        department=worker.department,
        skills=list(worker.skills or []),
        capacity=worker.capacity,
        on_duty=worker.on_duty,
        open_tasks=worker.open_tasks,
    )


async def worker_profiles(
    session: AsyncSession, *, grid: str | None, department: str | None, limit: int, offset: int
) -> list[WorkerProfileRead]:
    """Workers by id; `grid` a code or prefix, `department` a department's workers."""
    stmt = select(Worker)
    if grid:
        stmt = stmt.where(Worker.grid_code.startswith(grid, autoescape=True))
    if department:
        stmt = stmt.where(Worker.department == department)
    rows = await session.scalars(stmt.order_by(Worker.id).limit(limit).offset(offset))
    return [await worker_profile(session, w) for w in rows]

"""A report as its resident (or an operator) follows it."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Case, Feedback, Photo, Report, Worker
from app.reads.cases import sla_state
from app.reads.common import deadlines, grid_read, photo_urls, report_links, timeline, timers_of
from app.reads.schemas import Assignee, ClockState, Deadlines, ReportRead, TimelineEntry
from dispatch.context import DispatchContext
from geo import GridIndex


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
        timers = (await timers_of(session, [case.id]))[case.id]
        clocks = await sla_state(session, ctx, case, timers)
        if case.assignee_worker_id:
            worker = await session.get(Worker, case.assignee_worker_id)
            if worker is not None:
                assignee = Assignee(display_name=worker.name)
        dl = deadlines(timers)
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

"""Who may see what, where it is not already in the query: photos."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.tokens import Principal, Role
from app.models import Photo, Report, Task


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

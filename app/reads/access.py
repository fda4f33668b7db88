"""Who may see what, where it is not already in the query: photos, and the scope of one case,
report or worker (the rules themselves are app/auth/scopes.py)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.scopes import OutsideScope, Scope
from app.auth.tokens import STAFF, Principal, Role
from app.models import Case, Photo, Report, Task, Worker
from app.platform.errors import CaseNotFound


async def case_in_scope(session: AsyncSession, scope: Scope, case_id: str | None) -> bool:
    """Whether the case exists and lies inside `scope`. Reads two columns, never the ORM
    object: a command that locks the case afterwards must load it fresh."""
    if case_id is None:
        return False
    row = (
        await session.execute(select(Case.grid_code, Case.department).where(Case.id == case_id))
    ).first()
    return row is not None and scope.covers(row.grid_code, row.department)


async def check_case(session: AsyncSession, who: Principal, case_id: str) -> None:
    """CaseNotFound for a case outside the caller's scope, as for one that does not exist: a
    scoped operator learns nothing of other areas' cases, not even that an id is taken. An
    unscoped caller is not checked here (the command finds a missing case itself)."""
    if who.scope is not None and not await case_in_scope(session, who.scope, case_id):
        raise CaseNotFound(f"case {case_id} does not exist")


async def report_in_scope(session: AsyncSession, scope: Scope, report: Report) -> bool:
    """A report is where its case is; before its case opens, where it was located (and in no
    department's queue yet)."""
    if report.case_id is not None:
        return await case_in_scope(session, scope, report.case_id)
    return scope.covers(report.grid_code, None)


async def check_worker(
    session: AsyncSession,
    who: Principal,
    worker_id: str,
    *,
    grid_code: str,
    department: str | None,
) -> None:
    """OutsideScope unless a scoped admin may save this worker as given: the worker as stored
    (if it exists) and as it would become must both be inside the scope, so no worker moves
    into or out of another's reach. The stored row is locked for the rest of the transaction."""
    scope = who.scope
    if scope is None:
        return
    stored = (
        await session.execute(
            select(Worker.grid_code, Worker.department)
            .where(Worker.id == worker_id)
            .with_for_update()
        )
    ).first()
    if stored is not None and not scope.covers_worker(stored.grid_code, stored.department):
        raise OutsideScope(f"worker {worker_id} is outside this token's scope ({scope})")
    if not scope.covers_worker(grid_code, department):
        where = f"department {department}" if department else f"grid {grid_code}"
        raise OutsideScope(f"{where} is outside this token's scope ({scope})")


async def may_see_photo(session: AsyncSession, photo: Photo, who: Principal) -> bool:
    """Residents their own reports' photos and the resolution photos of their cases; workers
    the photos of cases they hold or held a task for; operators and admins all, or those of
    the cases inside their scope."""
    if who.role in STAFF and who.scope is None:
        return True
    if photo.report_id is not None:
        report = await session.get(Report, photo.report_id)
        case_id = report.case_id if report else None
        if who.role is Role.RESIDENT:
            return report is not None and report.reporter_id == who.subject
        if who.scope is not None:
            return report is not None and await report_in_scope(session, who.scope, report)
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
        if who.scope is not None:
            return await case_in_scope(session, who.scope, case_id)
    if who.role is Role.WORKER and case_id is not None:
        held = await session.scalar(
            select(Task.id).where(Task.case_id == case_id, Task.worker_id == who.subject)
        )
        return held is not None
    return False

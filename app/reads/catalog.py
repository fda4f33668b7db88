"""Categories with their default clocks, and workers' profiles."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.scopes import Scope
from app.models import Category, SlaPolicy, Worker
from app.reads.schemas import CategoryRead, WorkerProfileRead


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


def worker_profile(worker: Worker) -> WorkerProfileRead:
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
    session: AsyncSession,
    *,
    grid: str | None,
    department: str | None,
    limit: int,
    offset: int,
    scope: Scope | None = None,
) -> list[WorkerProfileRead]:
    """Workers by id; `grid` a code or prefix, `department` a department's workers; `scope`:
    only the workers inside it."""
    stmt = select(Worker)
    if scope is not None:
        stmt = stmt.where(scope.workers())
    if grid:
        stmt = stmt.where(Worker.grid_code.startswith(grid, autoescape=True))
    if department:
        stmt = stmt.where(Worker.department == department)
    rows = await session.scalars(stmt.order_by(Worker.id).limit(limit).offset(offset))
    return [worker_profile(w) for w in rows]

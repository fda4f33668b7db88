"""Queries about cases shared by intake, the engine, the read models and the metrics."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.cases.states import DEADLINES, JOINABLE_BY_ALERT, OPEN, UNMET_TIMER, CaseStatus
from app.models import Case, SlaTimer


def overdue(now: datetime) -> ColumnElement[bool]:
    """The case is open, with an on-site, close or verify deadline passed and not met."""
    late = exists().where(
        SlaTimer.case_id == Case.id,
        SlaTimer.kind.in_(DEADLINES),
        SlaTimer.state.in_(UNMET_TIMER),
        SlaTimer.due_at <= now,
    )
    return late & Case.status.in_(OPEN)


async def open_cases_by_status(session: AsyncSession) -> dict[CaseStatus, int]:
    """How many cases are open, per state (states with none left out)."""
    rows = await session.execute(
        select(Case.status, func.count()).where(Case.status.in_(OPEN)).group_by(Case.status)
    )
    return {CaseStatus(status): int(n) for status, n in rows}


async def count_overdue(session: AsyncSession, now: datetime) -> int:
    """How many cases are `overdue` at `now`."""
    n = await session.scalar(select(func.count()).select_from(Case).where(overdue(now)))
    return int(n or 0)


async def open_case_for_device(session: AsyncSession, device_id: str, category: str) -> Case | None:
    """The open case that an alert from this device and category joins, if any."""
    return await session.scalar(
        select(Case)
        .where(
            Case.source_device_id == device_id,
            Case.category == category,
            Case.status.in_(JOINABLE_BY_ALERT),
        )
        .order_by(Case.created_at.desc())
        .limit(1)
    )


async def open_cases_for_devices(
    session: AsyncSession, pairs: set[tuple[str, str]], *, lock: bool = False
) -> dict[tuple[str, str], Case]:
    """`open_case_for_device` for many (device, category) pairs in one query; `lock`: the
    cases' rows are locked for the transaction (alerts are about to join them)."""
    stmt = (
        select(Case)
        .where(
            Case.source_device_id.in_(sorted({d for d, _ in pairs})),
            Case.category.in_(sorted({c for _, c in pairs})),
            Case.status.in_(JOINABLE_BY_ALERT),
        )
        .order_by(Case.created_at)
    )
    if lock:
        stmt = stmt.with_for_update()
    found: dict[tuple[str, str], Case] = {}
    for case in await session.scalars(stmt):
        key = (case.source_device_id or "", case.category)
        if key in pairs:
            found[key] = case  # the newest wins, as in open_case_for_device
    return found

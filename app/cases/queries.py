"""Queries about cases shared by intake and the engine."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.cases.states import JOINABLE_BY_ALERT
from app.models import Case


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

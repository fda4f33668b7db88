"""Queries about cases shared by intake and the engine."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.models import Case

# Every state but closed; kept here so intake and the engine agree on what "open" means.
OPEN_STATUSES = ("reported", "dispatched", "accepted", "on_site", "resolved", "reopened")


async def open_case_for_device(session: AsyncSession, device_id: str, category: str) -> Case | None:
    """The open case that an alert from this device and category joins, if any."""
    return await session.scalar(
        select(Case)
        .where(
            Case.source_device_id == device_id,
            Case.category == category,
            Case.status.in_(OPEN_STATUSES),
        )
        .order_by(Case.created_at.desc())
        .limit(1)
    )

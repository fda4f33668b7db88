"""Queries about cases shared by intake and the engine."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.models import Case
from app.core.states import JOINABLE_BY_ALERT


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

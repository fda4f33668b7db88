"""Which events a consumer group has applied: recorded in the transaction that applies them,
so a redelivered message is a no-op."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import cast

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import ProcessedEvent

_TABLE = cast(Table, ProcessedEvent.__table__)


async def record_new(
    session: AsyncSession, group_id: str, event_ids: Sequence[str], now: datetime
) -> set[str]:
    """Record these event ids as applied by `group_id`, in one statement; returns the ones
    that were not recorded before (the others are repeats, to be skipped)."""
    ids = list(dict.fromkeys(event_ids))
    if not ids:
        return set()
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    stmt = (
        dialect.insert(_TABLE)
        .values([{"group_id": group_id, "event_id": i, "processed_at": now} for i in ids])
        .on_conflict_do_nothing()
        .returning(_TABLE.c.event_id)
    )
    return set(await session.scalars(stmt))

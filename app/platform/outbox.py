"""Housekeeping: delete outbox rows and idempotency keys nobody needs any more.

With Kafka, a row is done once the relay has published it (`sent_at`). With the embedded bus
the table is the log, so a row is done once every consumer group of its topic has committed past
it (the live feed has no group and reads only new rows); dead letters have no consumer and are
the only copy, so they stay. Either way a row is kept at least `keep_s` after it was written.
Idempotency keys are kept `keep_s` too: a client retrying later is sending a new request.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import ConsumerOffset, IdempotencyRecord, OutboxMessage
from app.platform import topics
from app.platform.db import Database

CHUNK = 5000


async def prune_outbox(db: Database, *, now: datetime, keep_s: int, embedded: bool) -> int:
    """Delete done rows older than `keep_s`, in chunks. Returns how many were deleted."""
    cutoff = now - timedelta(seconds=keep_s)
    deleted = 0
    if embedded:
        for topic in (topics.INTAKE, topics.CASE_EVENTS):
            async with db.reader() as session:
                groups = await session.scalar(
                    select(func.count())
                    .select_from(ConsumerOffset)
                    .where(ConsumerOffset.topic == topic)
                )
                upto = await session.scalar(
                    select(func.min(ConsumerOffset.position)).where(ConsumerOffset.topic == topic)
                )
            if topic == topics.INTAKE and not groups:
                continue  # the dispatcher has not committed yet: everything is still needed
            conditions: list[ColumnElement[bool]] = [
                OutboxMessage.topic == topic,
                OutboxMessage.created_at < cutoff,
            ]
            if groups:
                conditions.append(OutboxMessage.id <= int(upto or 0))
            deleted += await _delete_in_chunks(db, conditions)
    else:
        deleted += await _delete_in_chunks(
            db, [OutboxMessage.sent_at.is_not(None), OutboxMessage.sent_at < cutoff]
        )
    return deleted


async def _delete_in_chunks(db: Database, conditions: Sequence[ColumnElement[bool]]) -> int:
    total = 0
    while True:
        async with db.transaction() as uow:
            session = uow.session
            ids = list(
                await session.scalars(
                    select(OutboxMessage.id)
                    .where(*conditions)
                    .order_by(OutboxMessage.id)
                    .limit(CHUNK)
                )
            )
            if ids:
                await session.execute(delete(OutboxMessage).where(OutboxMessage.id.in_(ids)))
        total += len(ids)
        if len(ids) < CHUNK:
            return total


async def prune_idempotency_keys(db: Database, *, now: datetime, keep_s: int) -> int:
    cutoff = now - timedelta(seconds=keep_s)
    async with db.transaction() as uow:
        session = uow.session
        result = await session.execute(
            delete(IdempotencyRecord).where(IdempotencyRecord.created_at < cutoff)
        )
    return int(getattr(result, "rowcount", 0) or 0)


async def unsent(session: AsyncSession) -> dict[str, tuple[int, datetime]]:
    """Rows the Kafka relay has not published yet, per topic: how many, and the oldest one's
    time (on the partial index of unsent rows). Meaningless with the embedded bus, whose rows
    are never sent: there the backlog is the consumers' lag."""
    rows = await session.execute(
        select(OutboxMessage.topic, func.count(), func.min(OutboxMessage.created_at))
        .where(OutboxMessage.sent_at.is_(None))
        .group_by(OutboxMessage.topic)
    )
    return {topic: (int(n), oldest) for topic, n, oldest in rows}

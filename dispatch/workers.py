"""Workers' own status: on duty or not, and where they are.

A worker's phone reports its status; the server keeps the location with two times, the one
the phone claims (`device_time`) and the one it was received (the server's clock), since phone
clocks drift and reports arrive late over a flaky network. Freshness for dispatch is judged on
the received time. Going off duty does not touch tasks already accepted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.models import Task, Worker
from dispatch.context import DispatchContext
from dispatch.states import ACTIVE_TASK


@dataclass(frozen=True)
class StatusUpdate:
    on_duty: bool
    lon: float | None = None  # WGS-84
    lat: float | None = None
    device_time: datetime | None = None


async def open_tasks(session: AsyncSession, worker_id: str) -> int:
    count = await session.scalar(
        select(func.count())
        .select_from(Task)
        .where(Task.worker_id == worker_id, Task.status.in_([s.value for s in ACTIVE_TASK]))
    )
    return int(count or 0)


async def set_status(
    session: AsyncSession, ctx: DispatchContext, worker_id: str, update: StatusUpdate
) -> Worker:
    worker = await session.get(Worker, worker_id, with_for_update=True)
    if worker is None:
        raise LookupError(worker_id)
    worker.on_duty = update.on_duty
    if update.lon is not None and update.lat is not None:
        worker.lon, worker.lat = update.lon, update.lat
        worker.location_at = ctx.clock.now()
        device_time = update.device_time
        worker.location_device_at = device_time.astimezone(UTC) if device_time else None
    return worker

"""Workers' profiles (set by admins) and their own status: on duty or not, and where they are.

A profile says where a worker belongs (a unit grid, or a department's queue), what they can do
(`skills`: the categories' skills rank them first; `inspect` makes an inspector) and how many
open tasks they can hold (`capacity`).

A worker's phone reports its status; the server keeps the location with two times, the one
the phone claims (`device_time`) and the one it was received (the server's clock), since phone
clocks drift and reports arrive late over a flaky network. Freshness for dispatch is judged on
the received time. Going off duty does not touch tasks already accepted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import update

from app.models import Department, Worker
from app.platform.errors import ValidationFailed
from app.platform.uow import UnitOfWork
from dispatch.context import DispatchContext
from geo import GridLevel


@dataclass(frozen=True)
class Profile:
    name: str
    grid_code: str  # a unit grid: where a grid worker works, where a department's worker is based
    department: str | None
    skills: tuple[str, ...]
    capacity: int


async def save_profile(
    uow: UnitOfWork, ctx: DispatchContext, worker_id: str, profile: Profile
) -> Worker:
    """Create or update a worker's profile. A new worker is off duty until their phone says
    otherwise. Refused (ValidationFailed) for a grid that is not a unit grid of
    the live set, or an unknown department."""
    index = ctx.grids.index
    grid = index.get(profile.grid_code) if index is not None else None
    if grid is None or grid.level is not GridLevel.UNIT:
        raise ValidationFailed(
            f"{profile.grid_code} is not a unit grid of the live grid set", field="grid"
        )
    if (
        profile.department is not None
        and await uow.session.get(Department, profile.department) is None
    ):
        raise ValidationFailed(f"no department {profile.department}", field="department")
    worker = await uow.session.get(Worker, worker_id, with_for_update=True)
    if worker is None:
        worker = Worker(id=worker_id, on_duty=False, created_at=ctx.clock.now())
        uow.session.add(worker)
    worker.name = profile.name
    worker.grid_code = profile.grid_code
    worker.department = profile.department
    worker.skills = sorted(set(profile.skills))
    worker.capacity = profile.capacity
    await uow.session.flush()
    return worker


@dataclass(frozen=True)
class StatusUpdate:
    on_duty: bool
    lon: float | None = None  # WGS-84
    lat: float | None = None
    device_time: datetime | None = None


async def take_slot(uow: UnitOfWork, worker_id: str) -> bool:
    """Take one of the worker's free slots for a new offer, if one is left. A conditional
    UPDATE: a dispatcher that read the slot as free while another took it waits for the
    other's row lock, finds it full and gets False (PostgreSQL re-checks the condition on the
    newest row; SQLite has one writer)."""
    taken = await uow.session.scalar(
        update(Worker)
        .where(Worker.id == worker_id, Worker.open_tasks < Worker.capacity)
        .values(open_tasks=Worker.open_tasks + 1)
        .returning(Worker.id)
        .execution_options(synchronize_session="fetch")
    )
    return taken is not None


async def give_back_slot(uow: UnitOfWork, worker_id: str) -> None:
    """A task of the worker's ended (declined, expired, returned, taken away, resolved)."""
    await uow.session.execute(
        update(Worker)
        .where(Worker.id == worker_id, Worker.open_tasks > 0)
        .values(open_tasks=Worker.open_tasks - 1)
        .execution_options(synchronize_session="fetch")
    )


async def set_status(
    uow: UnitOfWork, ctx: DispatchContext, worker_id: str, update: StatusUpdate
) -> Worker:
    worker = await uow.session.get(Worker, worker_id, with_for_update=True)
    if worker is None:
        raise LookupError(worker_id)
    worker.on_duty = update.on_duty
    if update.lon is not None and update.lat is not None:
        worker.lon, worker.lat = update.lon, update.lat
        worker.location_at = ctx.clock.now()
        device_time = update.device_time
        worker.location_device_at = device_time.astimezone(UTC) if device_time else None
    return worker

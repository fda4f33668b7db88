"""Grid workers' own status: on duty or not, and where they are (used to rank offers)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from app import reads
from app.http.bodies import read_json
from app.http.deps import CurrentWorker, Reader, RuntimeDep, UowDep, limit
from app.http.docs import errors
from app.http.schemas import WorkerLocation, WorkerStatusRead, WorkerStatusUpdate
from app.models import Worker
from app.platform.errors import Forbidden
from app.reads.schemas import PendingVerification
from dispatch import commands
from dispatch.cases import INSPECT
from dispatch.commands import SetWorkerStatus
from dispatch.workers import StatusUpdate
from geo import to_wgs84

router = APIRouter(prefix="/v1/workers", tags=["workers"])


async def status_body(request: Request, _: CurrentWorker) -> WorkerStatusUpdate:
    return await read_json(request, WorkerStatusUpdate)


async def _view(session: AsyncSession, worker: Worker) -> WorkerStatusRead:
    location = None
    if worker.lon is not None and worker.lat is not None and worker.location_at is not None:
        location = WorkerLocation(
            lat=worker.lat,
            lon=worker.lon,
            received_at=worker.location_at,
            device_time=worker.location_device_at,
        )
    return WorkerStatusRead(
        id=worker.id,
        name=worker.name,
        grid=worker.grid_code,
        on_duty=worker.on_duty,
        location=location,
        open_tasks=worker.open_tasks,
        capacity=worker.capacity,
    )


@router.get(
    "/me/status",
    dependencies=[limit("reads")],
    summary="The worker's own status: on duty, last location, open tasks against capacity",
    responses=errors(401, 403),
)
async def read_status(worker: CurrentWorker, session: Reader) -> WorkerStatusRead:
    return await _view(session, worker)


@router.put(
    "/me/status",
    dependencies=[limit("worker_actions")],
    summary="Report on-duty and location (any CRS); both the phone's and the server's time kept",
    responses=errors(400, 401, 403, 413, 415, 422),
)
async def update_status(
    worker: CurrentWorker,
    body: Annotated[WorkerStatusUpdate, Depends(status_body)],
    uow: UowDep,
    runtime: RuntimeDep,
) -> WorkerStatusRead:
    lon = lat = None
    if body.location is not None:
        lon, lat = to_wgs84(body.location.lon, body.location.lat, body.location.crs)
    update = StatusUpdate(on_duty=body.on_duty, lon=lon, lat=lat, device_time=body.device_time)
    changed = await commands.handle(uow, runtime.ctx, SetWorkerStatus(worker.id, update))
    return await _view(uow.session, changed)


@router.get(
    "/me/verifications",
    dependencies=[limit("reads")],
    summary="Inspectors: cases waiting for verification (核查), nearest first",
    description="Only for workers with the `inspect` skill; never lists the inspector's own "
    "work. Verify with `POST /v1/cases/{case_id}/verify`.",
    responses=errors(401, 403),
)
async def my_verifications(worker: CurrentWorker, session: Reader) -> list[PendingVerification]:
    if INSPECT not in (worker.skills or ()):
        raise Forbidden("only inspectors (workers with the inspect skill) verify cases")
    return await reads.pending_verifications(session, worker)
